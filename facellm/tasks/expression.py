"""Expression QA: 7-way basic expression with a short reason naming the visual cues.

Sample: a FaceRecord with `expression`. Conversation:
    "What facial expression does this person show? ..." ->
    "Reason: the mouth corners turn up in a smile and the eyes are relaxed.\nExpression: happy"
The reasons are the cues that define each expression (and that SynthFace draws), so a target
never claims something the label does not imply. The reason comes first: a model then names
the expression after describing the cues, conditioned on them (with the label first, the
offline default wrote the right cues after a wrong label; see the README's results).
"""

from __future__ import annotations

import random
import re

from facellm import metrics as M
from facellm.schema import EXPRESSIONS, FaceRecord, Sample
from facellm.tasks.base import (
    Aggregation,
    Conversation,
    Scored,
    TaskDefaults,
    classification,
)

CUES: dict[str, str] = {
    "neutral": "the mouth is a relaxed straight line and the eyebrows are level",
    "happy": "the mouth corners turn up in a smile and the eyes are relaxed",
    "sad": "the mouth corners turn down and the inner eyebrows are raised",
    "surprise": "the mouth is open in a round shape and the eyebrows are raised high",
    "fear": "the mouth is stretched wide open and the eyes are wide with raised eyebrows",
    "disgust": "the upper lip is raised in a wavy line and the nose is wrinkled",
    "anger": "the eyebrows are pulled down toward the centre and the lips are pressed tight",
}
OPTIONS = ", ".join(EXPRESSIONS)
PROMPTS = (
    f"What facial expression does this person show? Give a short reason, then one of: {OPTIONS}.",
    f"Describe the visual cues of this face briefly, then classify its expression as one of {OPTIONS}.",
    f"Which emotion does this face express ({OPTIONS})? Name the visual cues, then the emotion.",
)
_SYNONYMS = {"happiness": "happy", "sadness": "sad", "surprised": "surprise", "fearful": "fear",
             "afraid": "fear", "disgusted": "disgust", "angry": "anger", "calm": "neutral"}


class ExpressionTask(TaskDefaults):
    name = "expression"
    variants = ("reason",)
    report_metrics = ("accuracy", "macro_f1", "uar", "war", "parse_rate")

    def applies_to(self, sample: Sample) -> bool:
        return isinstance(sample, FaceRecord) and sample.expression in EXPRESSIONS

    def conversations(self, sample: FaceRecord, rng: random.Random,
                      variants: tuple[str, ...] | None = None) -> list[Conversation]:
        label = sample.expression
        target = f"Reason: {CUES[label]}.\nExpression: {label}"
        return [Conversation(sample.id, self.name, "reason", rng.choice(PROMPTS), target, [sample.image],
                             {"label": label})]

    def parse(self, response: str, conversation: Conversation) -> str | None:
        return parse_expression(response)

    def score(self, parsed: str | None, conversation: Conversation) -> Scored:
        label = conversation.extras["label"]
        return Scored(label, parsed, parsed == label, float(parsed == label))

    def aggregations(self) -> dict[str, Aggregation]:
        return {**classification(EXPRESSIONS),
                "war": lambda rs: M.war([r.label for r in rs], [r.prediction for r in rs])}

    def prompt_variant(self, prompt: str) -> str | None:
        return "reason" if prompt in PROMPTS else None


def parse_expression(text: str) -> str | None:
    """The expression after "Expression:", else the first expression word in the text."""
    lowered = text.lower()
    match = re.search(r"expression\s*:\s*([a-z]+)", lowered)
    words = [match.group(1)] if match else re.findall(r"[a-z]+", lowered)
    for word in words:
        word = _SYNONYMS.get(word, word)
        if word in EXPRESSIONS:
            return word
    return None
