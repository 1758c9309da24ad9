"""Captioning: the pre-training task of the offline default's base model (not a face task).

The base learns to see SynthFace faces by describing them: attributes, identity traits and the
visible expression cues, but never the expression's name or a verdict, so the instruction
formats of the face tasks are what the LoRA fine-tune teaches (and what "before fine-tuning"
is measured without). Glossary rows are text-only and teach the answer words themselves
(expression names, yes/no, Match/Non-Match and the section names), as a real base LLM knows
them from pre-training; without them those tokens keep random embeddings and output rows.

    single: "Describe this face." -> "A face with a round face shape, light skin tone and brown hair.
             It has bangs and a beard. It wears eyeglasses. The mouth corners turn up ..."
    pair:   "Describe the two faces." -> "Same: face shape, skin tone, hair colour, a beard.
             Different: eye colour, eyeglasses."
    glossary: "Which words name the basic facial expressions?" -> "neutral, happy, sad, ..."
    question: "Does this face show eyeglasses?" -> "Yes, it shows eyeglasses."

Question rows ask one attribute of a single face, as a base VLM answers visual yes/no questions
before any face fine-tune; the answer is drawn first (yes or no, evenly) as in the attribute
task's yes/no rows. Without them the base only ever named the attributes a face has, and a
LoRA on it answered every attribute question with one constant (README, issue 9).
"""

from __future__ import annotations

import random

from facellm.attributes import BINARY_ATTRIBUTES
from facellm.schema import EXPRESSIONS, FacePair, FaceRecord, Sample
from facellm.tasks.base import Conversation, Scored, TaskDefaults
from facellm.tasks.expression import CUES
from facellm.tasks.verification import HAIR_KEYS

QUESTION = "Does this face show {noun}?"
SINGLE_PROMPTS = ("Describe this face.", "Write a caption for this face image.")
PAIR_PROMPTS = ("Describe the two faces.", "Write a caption for each of the two face images.")
GLOSSARY = (
    ("Which words name the basic facial expressions?", ", ".join(EXPRESSIONS) + "."),
    ("How do you answer a question that asks for yes or no?", "Yes or No."),
    ("What verdicts can a face comparison have?", "Match or Non-Match."),
    ("Which sections does a face comparison report have?",
     "Match Verdict, Similarities, Differences and Overall Reasoning."),
    ("What does an FR score measure?", "An FR score is the similarity of two faces from a face recognition model."),
    ("Name the parts of an expression answer.", "Expression and Reason."),
) + tuple((f"What does the word {e} describe?", f"The word {e} names a facial expression.") for e in EXPRESSIONS)


def caption(record: FaceRecord) -> str:
    traits = record.meta.get("traits", {})
    head = ", ".join(f"{v} {k}" for k, v in sorted(traits.items()))
    present = [BINARY_ATTRIBUTES[k].noun for k, v in record.attributes.items()
               if v is True and k in BINARY_ATTRIBUTES and k != "smiling"]
    parts = [f"A face with {head}." if head else "A face."]
    if present:
        parts.append("It has " + ", ".join(present) + ".")
    if record.expression in CUES:
        cue = CUES[record.expression]
        parts.append(cue[0].upper() + cue[1:] + ".")
    return " ".join(parts)


def question_answer(record: FaceRecord, rng: random.Random) -> tuple[str, str] | None:
    """A yes/no question about one of the record's binary attributes and its answer, or None
    when it has none (smiling is left out: the captions never name the expression)."""
    labels = {k: v for k, v in record.attributes.items()
              if isinstance(v, bool) and k in BINARY_ATTRIBUTES and k != "smiling"}
    if not labels:
        return None
    want = rng.random() < 0.5
    key = rng.choice(sorted(k for k, v in labels.items() if v == want) or sorted(labels))
    noun = BINARY_ATTRIBUTES[key].noun
    answer = f"Yes, it shows {noun}." if labels[key] else f"No, it does not show {noun}."
    return QUESTION.format(noun=noun), answer


def pair_caption(pair: FacePair) -> str:
    """What two faces share and where they differ (ground truth, no verdict), by name: comparing
    faces is a skill of its own that verification builds on. The single captions teach the
    values; this stays short so that pair rows cost little more than single ones to train on."""
    a, b = pair.first, pair.second
    same, diff = [], []
    traits_a, traits_b = a.meta.get("traits", {}), b.meta.get("traits", {})
    for name in sorted(set(traits_a) & set(traits_b)):
        (same if traits_a[name] == traits_b[name] else diff).append(name)
    for key, name in (("hair_color", "hair colour"), ("age_group", "age group")):
        if isinstance(a.attributes.get(key), str) and isinstance(b.attributes.get(key), str):
            (same if a.attributes[key] == b.attributes[key] else diff).append(name)
    for key, attribute in BINARY_ATTRIBUTES.items():
        va, vb = a.attributes.get(key), b.attributes.get(key)
        if key in HAIR_KEYS or key == "young" or not isinstance(va, bool) or not isinstance(vb, bool) or not (va or vb):
            continue  # hair colour and age are named above; an attribute neither face has is not news
        (same if va == vb else diff).append(attribute.noun)
    return f"Same: {', '.join(same) or 'nothing'}. Different: {', '.join(diff) or 'nothing'}."


class CaptionTask(TaskDefaults):
    """Scored by exact match with the target (a pre-training task; not asked in the chat)."""

    name = "caption"
    variants = ("single", "pair", "glossary", "question")

    def __init__(self, glossary_rate: float = 0.2, question_rate: float = 0.5):
        self.glossary_rate = glossary_rate
        self.question_rate = question_rate

    def applies_to(self, sample: Sample) -> bool:
        return isinstance(sample, (FaceRecord, FacePair))

    def conversations(self, sample: Sample, rng: random.Random,
                      variants: tuple[str, ...] | None = None) -> list[Conversation]:
        variants = variants or self.variants
        out = []
        if isinstance(sample, FacePair):
            if "pair" in variants:
                text = pair_caption(sample)
                out.append(Conversation(sample.id, self.name, "pair", rng.choice(PAIR_PROMPTS), text,
                                        [sample.first.image, sample.second.image], {}))
            return out
        if "single" in variants:
            out.append(Conversation(sample.id, self.name, "single", rng.choice(SINGLE_PROMPTS), caption(sample),
                                    [sample.image], {}))
        if "glossary" in variants and rng.random() < self.glossary_rate:
            question, answer = rng.choice(GLOSSARY)
            out.append(Conversation(sample.id, self.name, "glossary", question, answer, [], {}))
        if "question" in variants and rng.random() < self.question_rate:
            qa = question_answer(sample, rng)
            if qa is not None:
                out.append(Conversation(sample.id, self.name, "question", qa[0], qa[1], [sample.image], {}))
        return out

    def parse(self, response: str, conversation: Conversation) -> str:
        return response.strip()

    def score(self, parsed: str, conversation: Conversation) -> Scored:
        correct = parsed == conversation.target.strip()
        return Scored(conversation.target.strip(), parsed, correct, float(correct))
