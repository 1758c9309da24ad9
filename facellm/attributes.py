"""The attribute vocabulary shared by dataset parsers, task prompts and targets, and the
faithfulness claim parser, so that what a model is taught to say is what eval checks.

Keys are CelebA's 40 attribute names in lower case, except `No_Beard`, which is stored with
the opposite sign as `beard`. SynthFace uses a subset plus `red_hair` and the categorical
`age_group`. A value is `True`/`False` (binary) or a string (categorical).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attribute:
    """key: canonical name. noun: what a claim names ("eyeglasses"). question: the yes/no
    prompt. has / lacks: clauses for targets, with {who} for the subject. synonyms: extra
    phrases that name it in free text (the claim parser's vocabulary)."""

    key: str
    noun: str
    question: str
    has: str
    lacks: str
    synonyms: tuple[str, ...] = ()


def _a(key: str, noun: str, question: str, has: str, lacks: str, *synonyms: str) -> Attribute:
    return Attribute(key, noun, question, has, lacks, tuple(synonyms))


BINARY_ATTRIBUTES: dict[str, Attribute] = {a.key: a for a in (
    _a("eyeglasses", "eyeglasses", "Is the person wearing eyeglasses?",
       "{who} wears eyeglasses", "{who} wears no eyeglasses", "glasses", "spectacles"),
    _a("beard", "a beard", "Does the person have a beard?",
       "{who} has a beard", "{who} has no beard", "beard", "bearded"),
    _a("mustache", "a mustache", "Does the person have a mustache?",
       "{who} has a mustache", "{who} has no mustache", "mustache", "moustache"),
    _a("wearing_hat", "a hat", "Is the person wearing a hat?",
       "{who} wears a hat", "{who} wears no hat", "hat", "cap"),
    _a("bangs", "bangs", "Does the person have bangs?",
       "{who} has bangs", "{who} has no bangs", "bangs", "fringe"),
    _a("wearing_earrings", "earrings", "Is the person wearing earrings?",
       "{who} wears earrings", "{who} wears no earrings", "earrings", "earring"),
    _a("wearing_lipstick", "lipstick", "Is the person wearing lipstick?",
       "{who} wears lipstick", "{who} wears no lipstick", "lipstick", "red lips"),
    _a("smiling", "a smile", "Is the person smiling?",
       "{who} is smiling", "{who} is not smiling", "smiling", "smile"),
    _a("bald", "a bald head", "Is the person bald?",
       "{who} is bald", "{who} is not bald", "bald"),
    _a("black_hair", "black hair", "Does the person have black hair?",
       "{who} has black hair", "{who} does not have black hair", "black hair", "black-haired"),
    _a("blond_hair", "blond hair", "Does the person have blond hair?",
       "{who} has blond hair", "{who} does not have blond hair", "blond hair", "blonde hair", "blond"),
    _a("brown_hair", "brown hair", "Does the person have brown hair?",
       "{who} has brown hair", "{who} does not have brown hair", "brown hair", "brown-haired"),
    _a("gray_hair", "gray hair", "Does the person have gray hair?",
       "{who} has gray hair", "{who} does not have gray hair", "gray hair", "grey hair", "white hair"),
    _a("red_hair", "red hair", "Does the person have red hair?",
       "{who} has red hair", "{who} does not have red hair", "red hair", "ginger hair", "red-haired"),
    _a("young", "a young face", "Does the person look young?",
       "{who} looks young", "{who} does not look young", "young"),
    _a("pale_skin", "pale skin", "Does the person have pale skin?",
       "{who} has pale skin", "{who} does not have pale skin", "pale skin", "pale"),
    _a("rosy_cheeks", "rosy cheeks", "Does the person have rosy cheeks?",
       "{who} has rosy cheeks", "{who} has no rosy cheeks", "rosy cheeks", "blush"),
    _a("goatee", "a goatee", "Does the person have a goatee?",
       "{who} has a goatee", "{who} has no goatee", "goatee"),
    _a("wearing_necklace", "a necklace", "Is the person wearing a necklace?",
       "{who} wears a necklace", "{who} wears no necklace", "necklace"),
    _a("wearing_necktie", "a necktie", "Is the person wearing a necktie?",
       "{who} wears a necktie", "{who} wears no necktie", "necktie", "tie"),
    _a("heavy_makeup", "heavy makeup", "Is the person wearing heavy makeup?",
       "{who} wears heavy makeup", "{who} wears no heavy makeup", "heavy makeup", "makeup"),
    _a("wavy_hair", "wavy hair", "Does the person have wavy hair?",
       "{who} has wavy hair", "{who} does not have wavy hair", "wavy hair"),
    _a("straight_hair", "straight hair", "Does the person have straight hair?",
       "{who} has straight hair", "{who} does not have straight hair", "straight hair"),
    _a("mouth_slightly_open", "an open mouth", "Is the person's mouth slightly open?",
       "{who} has the mouth slightly open", "{who} has the mouth closed", "open mouth", "mouth open"),
)}

# CelebA column -> (canonical key, sign). Columns not listed are kept under their lower-case name.
CELEBA_COLUMNS: dict[str, tuple[str, bool]] = {"No_Beard": ("beard", False)}

HAIR_COLORS: tuple[str, ...] = ("black", "blond", "brown", "gray", "red")
AGE_GROUPS: tuple[str, ...] = ("young", "adult", "senior")


def get_attribute(key: str) -> Attribute:
    """The vocabulary entry for `key`; a clear error naming close matches otherwise."""
    try:
        return BINARY_ATTRIBUTES[key]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(key, BINARY_ATTRIBUTES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"unknown attribute {key!r}.{hint}") from None


def celeba_key(column: str) -> tuple[str, bool]:
    """CelebA column name -> (canonical key, True if the column's +1 means the key is True)."""
    return CELEBA_COLUMNS.get(column, (column.lower(), True))
