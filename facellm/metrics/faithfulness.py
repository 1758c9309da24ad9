"""Attribute claims in explanation text, checked against ground truth (are explanations hallucinated?).

`parse_claims` reads the attribute claims a text makes, with the vocabulary of
`facellm.attributes.BINARY_ATTRIBUTES` (nouns, synonyms, the `has`/`lacks` target templates and
the describe-target labels such as "wearing hat: yes"). A `Claim(attribute, subject, value)` reads
"<subject> has <attribute>" when value is True and "<subject> lacks <attribute>" when False:

    "The person wears eyeglasses and has brown hair"  (faces=1)
        -> Claim("eyeglasses", "person", True), Claim("brown_hair", "person", True)
    "Only the first face wears a hat. Neither has bangs."  (faces=2)
        -> Claim("wearing_hat", "first", True), Claim("wearing_hat", "second", False),
           Claim("bangs", "neither", True)             # "neither has bangs": both faces lack them

Rules (a reading of plain English, deliberately small; see the tests for the cases covered):
- Text is split into lines, sentences (. ! ? ;) and clauses (at commas and at and, but, while,
  whereas, although, yet; "unlike" starts a clause). Section headers of the verification format
  (`Similarities:`, `Differences:` ...) are recognised; markdown emphasis is ignored.
- Negation: "no", "not", "n't", "never", "without", "lacks", "neither ... nor" negate the
  attributes after them up to the end of the clause or "with". A clause that only continues a
  list ("no beard, mustache, or goatee") keeps the negation; ", and wears a hat" does not.
  "X: no" and "X is absent" negate X; "clean-shaven" means no beard, "mouth closed" no open
  mouth; "long wavy brown hair" names wavy hair and brown hair.
- Clauses that hedge or have no data make no claims: "not annotated", "none observed",
  "unclear", "may", "might", "possibly", "cannot tell" ...
- Subjects (faces=2): "the first (face|image|person)", "face 1", "the former" -> first;
  likewise second; "both (faces)", "they", "each face", "the two faces" -> both; "neither
  (face)", "none of them" -> neither; "only the first" -> first plus the opposite for second;
  "the other" -> the face not named last; "one of them" -> unknown (no claim); "either face"
  counts as both under negation ("no beard on either face"). A subject applies to the
  attributes after it in its clause (before it when it comes last: "glasses in both images").
  A clause without a subject inherits the previous one in its section; in `Similarities:` the
  default is both, elsewhere a subject-less attribute makes no claim.
- Elliptic clauses copy the previous clause's attributes to their subject: "..., while the
  second does not" (False), "..., but the second does" (True), "and the second too" (same
  value), "like the second" (same value), "unlike the second" (opposite value).
- faces=1: every claim's subject is "person".
Exact duplicate claims are dropped; the order is the order in the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from facellm.attributes import BINARY_ATTRIBUTES, HAIR_COLORS

Subject = Literal["first", "second", "both", "neither", "person"]
SUBJECTS: tuple[str, ...] = ("first", "second", "both", "neither", "person")


class Claim(NamedTuple):
    """"<subject> has <attribute>" (value True) or "<subject> lacks <attribute>" (value False)."""

    attribute: str
    subject: Subject
    value: bool


# ---------------------------------------------------------------------------------------------
# Vocabulary

# Phrases that name an attribute with a fixed value, beyond attributes.py's nouns and synonyms.
_EXTRA_PHRASES: dict[str, tuple[str, bool]] = {
    "clean-shaven": ("beard", False), "clean shaven": ("beard", False),
    "mouth slightly open": ("mouth_slightly_open", True), "slightly open mouth": ("mouth_slightly_open", True),
    "mouth closed": ("mouth_slightly_open", False), "closed mouth": ("mouth_slightly_open", False),
    "smiles": ("smiling", True), "non-smiling": ("smiling", False),
}


def _phrases() -> dict[str, tuple[str, bool]]:
    out: dict[str, tuple[str, bool]] = {}
    for key, attr in BINARY_ATTRIBUTES.items():
        noun = re.sub(r"^(?:a|an|the)\s+", "", attr.noun)
        for phrase in (noun, key.replace("_", " "), *attr.synonyms):
            out.setdefault(phrase.lower(), (key, True))
    out.update(_EXTRA_PHRASES)
    return out


PHRASES: dict[str, tuple[str, bool]] = _phrases()


def _alternation(phrases: Sequence[str]) -> str:
    ordered = sorted(phrases, key=len, reverse=True)  # longest first: "heavy makeup" before "makeup"
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in ordered)


_ATTR = _alternation(list(PHRASES))
# optional plural: "hats", "beards"; boundaries exclude hyphenated words ("black-haired" is its own phrase)
_ATTR_RE = re.compile(rf"(?<![\w-])(?P<phrase>{_ATTR})(?:s|es)?(?![\w-])")

_HAIR_WORDS = ("black", "blond", "blonde", "brown", "gray", "grey", "red", "ginger", "white", "wavy", "straight")
_HAIR_FILLERS = ("long", "short", "dark", "light", "curly", "thick", "thin", "medium-length", "shoulder-length")
_HAIR_RUN_RE = re.compile(
    rf"\b((?:(?:{'|'.join(_HAIR_WORDS + _HAIR_FILLERS)})(?:\s*,\s*(?:and\s+|or\s+)?|\s+and\s+|\s+or\s+|\s+))+)hair\b")
_HAIR_WORD_RE = re.compile(rf"\b(?:{'|'.join(_HAIR_WORDS)})\b")


def _expand_hair(text: str) -> str:
    """'long wavy brown hair' -> 'wavy hair or brown hair', so each colour/texture is a phrase."""
    def one(m: re.Match) -> str:
        words = _HAIR_WORD_RE.findall(m.group(1))
        return " or ".join(f"{w} hair" for w in words) if words else m.group(0)
    return _HAIR_RUN_RE.sub(one, text)


# ---------------------------------------------------------------------------------------------
# Subjects, cues and clause boundaries

_SING = r"(?:face|image|photo|picture|person|individual|subject|man|woman|one)"
_PLUR = r"(?:faces|images|photos|pictures|people|persons|individuals|subjects|men|women)"
_VERB = r"(?:has|have|wears|wear|is|are|looks|look|shows|show|sports|features|displays|appears|seems|lacks|does|do)"
_NOUN_LETTER = r"(?:face|image|photo|picture|person)\s+{}(?=\s*[:,)]|\s+" + _VERB + r"\b)"  # "image a has"
_FIRST = (rf"(?:the\s+(?:first|former)(?:\s+{_SING})?|first\s+{_SING}|the\s+left\s+{_SING}"
          rf"|(?:face|image|photo|picture|person)\s+(?:1|one|#1)|{_NOUN_LETTER.format('a')})")
_SECOND = (rf"(?:the\s+(?:second|latter)(?:\s+{_SING})?|second\s+{_SING}|the\s+right\s+{_SING}"
           rf"|(?:face|image|photo|picture|person)\s+(?:2|two|#2)|{_NOUN_LETTER.format('b')})")
_OF_THEM = rf"of\s+(?:them|the\s+(?:two\s+)?{_PLUR})"
_SUBJECT_PATTERNS: tuple[tuple[str, str], ...] = (
    ("only_first", rf"\b(?:only|just)\s+(?:(?:in|on|for|by)\s+)?{_FIRST}\b"),
    ("only_second", rf"\b(?:only|just)\s+(?:(?:in|on|for|by)\s+)?{_SECOND}\b"),
    ("unknown", rf"\b(?:only\s+)?one\s+(?:{_OF_THEM}|(?:face|image|photo|picture|person|individual))\b"),
    ("neither", rf"\b(?:neither\s+(?:{_OF_THEM}|{_SING})|none\s+{_OF_THEM})\b"),
    ("either", rf"\beither\s+(?:{_OF_THEM}|{_SING})\b"),
    ("both", rf"\b(?:both\s+(?:{_OF_THEM}|{_PLUR})|(?:they|them)\s+both|the\s+two\s+{_PLUR}"
             rf"|each\s+(?:{_OF_THEM}|{_SING})|they)\b"),
    ("first", rf"\b{_FIRST}\b"),
    ("second", rf"\b{_SECOND}\b"),
    ("other", rf"\bthe\s+other(?:\s+{_SING})?\b(?!\s+hand)"),
    # bare "both" is a subject unless it coordinates attributes: "wears both glasses and a hat"
    ("both", rf"\bboth\b(?!\s+(?:a\s+|an\s+|the\s+)?(?:{_ATTR}))"),
)
_SUBJECT_RE = re.compile("|".join(f"(?P<s{i}>{p})" for i, (_, p) in enumerate(_SUBJECT_PATTERNS)))
_AUX = r"(?:does|do|did|is|are|was|were|has|have|can)"
# "neither does the second" negates; "neither has bangs" at the start of a clause is a subject
_NEITHER_CUE_RE = re.compile(rf"\bneither\s+{_AUX}\b(?=\s+(?:{_FIRST}|{_SECOND}|the\s+other))")
_BARE_NEITHER_RE = re.compile(r"\bneither\b")
_CUE_RE = re.compile(r"\b(?:no|not|never|without|lacks?|lacking)\b|n't\b")
_RESET_RE = re.compile(r"\bwith\b")
_POST_RE = re.compile(r"\s*(?::\s*(?P<answer>yes|no|true|false|present|absent)\b"
                      r"|(?:is|are)\s+(?P<absent>absent|missing|not\s+present)\b)")
_SKIP_RE = re.compile(r"\b(?:not\s+annotated|none\s+observed|unclear|uncertain|unknown|not\s+clear|possibly|perhaps"
                      r"|maybe|may|might|could|cannot\s+(?:tell|be\s+determined)|can't\s+(?:tell|be\s+determined)"
                      r"|(?:hard|difficult)\s+to\s+(?:tell|say))\b")
_SECTION_RE = re.compile(r"^[\s*_#>-]*(match\s+verdict|similarities|differences|overall\s+reasoning)[\s*_]*:[\s*_]*")
_SENTENCE_SPLIT_RE = re.compile(r"[.!?;]+(?=\s|$)")
# conjunctions are dropped; "unlike" starts a piece and stays in it
_CONJUNCTION_RE = re.compile(r"\s*,?\s*\b(and|but|while|whilst|whereas|although|though|however|yet)\b\s*"
                             r"|\s*,?\s*(?=\bunlike\b)")
_LIST_ITEM_RE = re.compile(rf"\s*(?:(?:or|nor)\s+)?(?:(?:a|an|the)\s+)?(?:{_ATTR})(?:s|es)?(?![\w-])")
_PAIR_RE = re.compile(rf"\bthe\s+first(?:\s+{_SING})?\s+and\s+(?:the\s+)?second(?:\s+(?:{_SING}|{_PLUR}))?\b")
_COPY_RE = re.compile(r"\b(?:too|also|as\s+well|likewise|same)\b|^\s*so\b")
_ELLIPSIS_AUX_RE = re.compile(rf"\b{_AUX}\b")


def _normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[*_`]+", " ", text)  # markdown emphasis
    text = _expand_hair(text)
    return _PAIR_RE.sub("both faces", text)


class _Piece(NamedTuple):
    """A clause: text, the word that joined it to the previous one ("," "and" "but" ... or "")."""

    text: str
    joiner: str


def _pieces(sentence: str) -> list[_Piece]:
    parts = _CONJUNCTION_RE.split(sentence)  # [text, conjunction or None, text, ...]
    out = []
    for i in range(0, len(parts), 2):
        joiner = (parts[i - 1] or "") if i else ""
        for j, text in enumerate(parts[i].split(",")):
            if text.strip(" :"):
                out.append(_Piece(text, "," if j else joiner))
    return out


# ---------------------------------------------------------------------------------------------
# Parser


@dataclass
class _Event:
    start: int
    end: int
    kind: Literal["attr", "subject", "cue", "reset"]
    value: str | tuple[str, bool] = ""


def _events(clause: str, faces: int) -> list[_Event]:
    """Attribute, subject, negation-cue and reset spans of a clause, in order, without overlaps."""
    found: list[_Event] = []
    for m in _ATTR_RE.finditer(clause):
        key, base = PHRASES[re.sub(r"\s+", " ", m.group("phrase"))]
        post = _POST_RE.match(clause, m.end())
        end = m.end()
        if post and post.group("answer"):
            base, end = (base if post.group("answer") in ("yes", "true", "present") else not base), post.end()
        elif post and post.group("absent"):
            base = not base
        found.append(_Event(m.start(), end, "attr", (key, base)))
    if faces == 2:
        for m in _SUBJECT_RE.finditer(clause):
            found.append(_Event(m.start(), m.end(), "subject", _SUBJECT_PATTERNS[int(m.lastgroup[1:])][0]))
        found += [_Event(m.start(), m.end(), "cue") for m in _NEITHER_CUE_RE.finditer(clause)]
    for m in _BARE_NEITHER_RE.finditer(clause):
        as_subject = faces == 2 and not clause[:m.start()].strip(" ,:")
        found.append(_Event(m.start(), m.end(), "subject" if as_subject else "cue", "neither" * as_subject))
    if re.match(r"\s*nor\b", clause):
        found.append(_Event(0, 0, "cue"))
    found += [_Event(m.start(), m.end(), "cue") for m in _CUE_RE.finditer(clause)]
    found += [_Event(m.start(), m.end(), "reset") for m in _RESET_RE.finditer(clause)]
    found.sort(key=lambda e: (e.start, -(e.end - e.start)))
    kept: list[_Event] = []
    covered = -1
    for event in found:
        if event.start >= covered or event.end == event.start:
            kept.append(event)
            covered = max(covered, event.end)
    return kept


@dataclass
class _Parser:
    faces: Literal[1, 2]
    claims: list[Claim] = field(default_factory=list)
    section: str = ""
    subject: str | None = None         # inherited by clauses without one
    last_single: str | None = None     # the last "first"/"second" named, for "the other"
    previous: list[tuple[str, str, bool]] = field(default_factory=list)  # (attribute, subject, value)
    pending: list[tuple[str, bool]] = field(default_factory=list)  # ("unlike"/"like" subject, flip)
    negated: bool = False              # negation at the end of the last clause, for list items
    list_carried: bool = False         # the last clause continued a negated list
    had_attrs: bool = False            # the last clause of this sentence named attributes

    def line(self, line: str) -> None:
        header = _SECTION_RE.match(line)
        if header:
            self.section = re.sub(r"\s+", " ", header.group(1))
            self.subject, self.last_single, self.previous = None, None, []
            line = line[header.end():]
        for sentence in _SENTENCE_SPLIT_RE.split(line):
            self.pending, self.negated, self.list_carried, self.had_attrs = [], False, False, False
            for piece in _pieces(sentence):
                if _SKIP_RE.search(piece.text):
                    self.negated, self.list_carried, self.had_attrs = False, False, False
                else:
                    self.clause(piece)

    def clause(self, piece: _Piece) -> None:
        is_item = bool(_LIST_ITEM_RE.match(piece.text))
        carry = self.negated and is_item and (piece.joiner == "," or (piece.joiner == "and" and self.list_carried))
        negated, attrs, subjects = carry, [], []
        for event in _events(piece.text, self.faces):
            if event.kind == "cue":
                negated = True
            elif event.kind == "reset":
                negated = False
            elif event.kind == "subject":
                subjects.append(self._resolve_other(event.value))
                negated = False
            else:
                key, base = event.value
                attrs.append((key, base != negated, len(subjects) - 1))
        self.negated, self.list_carried = negated, carry
        if self.faces == 1:
            self._emit([(key, "person", value) for key, value, _ in attrs])
        elif attrs:
            self._attributes(attrs, subjects)
        else:
            self._without_attributes(piece.text, subjects)
        self.had_attrs = bool(attrs)

    def _attributes(self, attrs: list[tuple[str, bool, int]], subjects: list[str]) -> None:
        default = self.subject or ("both" if self.section == "similarities" else None)
        resolved = [(key, subjects[i] if i >= 0 else (subjects[0] if subjects else default), value)
                    for key, value, i in attrs]
        if subjects:
            self.subject = subjects[-1]
        self._emit(resolved)
        for subject, flip in self.pending:
            self._emit([(key, subject, value != flip) for key, _, value in resolved], keep_previous=True)
        self.pending = []

    def _resolve_other(self, name: str) -> str:
        if name in ("first", "second"):
            self.last_single = name
        elif name == "other":
            return {"first": "second", "second": "first"}.get(self.last_single or "", "unknown")
        return name

    def _without_attributes(self, text: str, subjects: list[str]) -> None:
        """A subject alone: "unlike the second", "the second does not" copy the previous clause's
        attributes; otherwise it becomes the subject the next clauses inherit."""
        if len(subjects) != 1:
            return
        subject = subjects[0]
        comparison = re.match(r"\s*(un)?like\b", text)
        if comparison:
            flip = comparison.group(1) is not None
            if self.had_attrs:
                self._emit([(key, subject, value != flip) for key, _, value in self.previous], keep_previous=True)
            else:
                self.pending.append((subject, flip))
            return
        if _CUE_RE.search(text) or re.match(r"\s*(?:nor|neither)\b", text):
            make = lambda value: False  # noqa: E731  "the second does not": the elided verb phrase is positive
        elif _COPY_RE.search(text):
            make = lambda value: value  # noqa: E731
        elif _ELLIPSIS_AUX_RE.search(text):
            make = lambda value: True  # noqa: E731
        else:
            self.subject = subject
            return
        self.subject = subject
        self._emit([(key, subject, make(value)) for key, _, value in self.previous])

    def _emit(self, claims: list[tuple[str, str | None, bool]], keep_previous: bool = False) -> None:
        if claims and not keep_previous:
            self.previous = [c for c in claims if c[1] is not None]
        for key, subject, value in claims:
            for claim in _expand_subject(key, subject, value):
                if claim not in self.claims:
                    self.claims.append(claim)


def _expand_subject(key: str, subject: str | None, value: bool) -> list[Claim]:
    if subject in ("first", "second", "both", "neither", "person"):
        return [Claim(key, subject, value)]
    if subject == "only_first":
        return [Claim(key, "first", value), Claim(key, "second", not value)]
    if subject == "only_second":
        return [Claim(key, "second", value), Claim(key, "first", not value)]
    if subject == "either" and not value:
        return [Claim(key, "both", False)]
    return []  # None (no subject), "unknown", "either" without negation: no verifiable reading


def parse_claims(text: str, faces: Literal[1, 2] = 1) -> list[Claim]:
    """The attribute claims of an explanation about one face (faces=1) or a pair (faces=2)."""
    if faces not in (1, 2):
        raise ValueError(f"faces must be 1 or 2; got {faces!r}")
    parser = _Parser(faces)
    for line in _normalise(text).splitlines():
        parser.line(line)
    return parser.claims


# ---------------------------------------------------------------------------------------------
# Scoring against ground truth


@dataclass(frozen=True)
class ClaimCheck:
    """Claims of one explanation, split by what the ground truth says.

    supported: every face the claim covers has the claimed value; hallucinated: at least one
    covered face contradicts it; unverifiable: no contradiction, but a covered face has no
    label for the attribute.
    """

    supported: tuple[Claim, ...] = ()
    hallucinated: tuple[Claim, ...] = ()
    unverifiable: tuple[Claim, ...] = ()

    @property
    def n_claims(self) -> int:
        return len(self.supported) + len(self.hallucinated) + len(self.unverifiable)

    def counts(self) -> ClaimCounts:
        return ClaimCounts(len(self.supported), len(self.hallucinated), len(self.unverifiable))


@dataclass(frozen=True)
class ClaimCounts:
    """How many claims of one explanation are supported, hallucinated, unverifiable: what an
    evaluation record keeps of its ClaimCheck. The rate functions below take either."""

    supported: int = 0
    hallucinated: int = 0
    unverifiable: int = 0

    @property
    def n_claims(self) -> int:
        return self.supported + self.hallucinated + self.unverifiable


def binary_truth(attributes: Mapping[str, object]) -> dict[str, bool]:
    """The binary attributes of a ground-truth dict; a categorical `hair_color` ("brown") also
    sets the `<colour>_hair` keys it implies, unless they are labelled themselves."""
    out = {k: v for k, v in attributes.items() if isinstance(v, bool)}
    colour = attributes.get("hair_color")
    if isinstance(colour, str) and colour in HAIR_COLORS:
        for c in HAIR_COLORS:
            out.setdefault(f"{c}_hair", c == colour)
    return out


def claim_facts(claim: Claim) -> list[tuple[int, bool]]:
    """(face index, value that face must have) for a claim; "person" is the only (first) face."""
    if claim.subject in ("first", "person"):
        return [(0, claim.value)]
    if claim.subject == "second":
        return [(1, claim.value)]
    value = claim.value if claim.subject == "both" else not claim.value
    return [(0, value), (1, value)]


def score_claims(claims: Sequence[Claim], truth_first: Mapping[str, object],
                 truth_second: Mapping[str, object] | None = None) -> ClaimCheck:
    """Check claims against the faces' attributes (`FaceRecord.attributes`); a claim about the
    second face with `truth_second=None` is unverifiable."""
    truths = [binary_truth(truth_first), binary_truth(truth_second or {})]
    groups: dict[str, list[Claim]] = {"supported": [], "hallucinated": [], "unverifiable": []}
    for claim in claims:
        known = [truths[face].get(claim.attribute) for face, _ in claim_facts(claim)]
        expected = [value for _, value in claim_facts(claim)]
        if any(k is not None and k != e for k, e in zip(known, expected)):
            groups["hallucinated"].append(claim)
        elif any(k is None for k in known):
            groups["unverifiable"].append(claim)
        else:
            groups["supported"].append(claim)
    return ClaimCheck(**{k: tuple(v) for k, v in groups.items()})


def _total(checks: Sequence[ClaimCheck | ClaimCounts], name: str) -> int:
    return sum(v if isinstance(v := getattr(c, name), int) else len(v) for c in checks)


def hallucinated_claim_rate(checks: Sequence[ClaimCheck | ClaimCounts]) -> float:
    """Hallucinated / verifiable (supported + hallucinated) claims, pooled over explanations; nan if none."""
    verifiable = _total(checks, "supported") + _total(checks, "hallucinated")
    return _total(checks, "hallucinated") / verifiable if verifiable else math.nan


def supported_claim_rate(checks: Sequence[ClaimCheck | ClaimCounts]) -> float:
    """Supported / verifiable claims (= 1 - hallucinated_claim_rate); nan if none."""
    verifiable = _total(checks, "supported") + _total(checks, "hallucinated")
    return _total(checks, "supported") / verifiable if verifiable else math.nan


def unverifiable_claim_rate(checks: Sequence[ClaimCheck | ClaimCounts]) -> float:
    """Unverifiable / all claims; nan if there are no claims."""
    total = sum(c.n_claims for c in checks)
    return _total(checks, "unverifiable") / total if total else math.nan


def claims_per_explanation(checks: Sequence[ClaimCheck | ClaimCounts]) -> float:
    """Mean number of claims per explanation."""
    if not checks:
        raise ValueError("no explanations")
    return sum(c.n_claims for c in checks) / len(checks)


def hallucinating_explanation_rate(checks: Sequence[ClaimCheck | ClaimCounts]) -> float:
    """Fraction of explanations with at least one hallucinated claim."""
    if not checks:
        raise ValueError("no explanations")
    return sum(bool(c.hallucinated) for c in checks) / len(checks)
