"""Age estimation: "How old does this person look?" -> "Age: 34". Scored by absolute error.

Sample: a FaceRecord with `age` (UTKFace, FairFace bin midpoints, SynthFace).
"""

from __future__ import annotations

import random
import re

from facellm import metrics as M
from facellm.schema import FaceRecord, Sample
from facellm.tasks.base import (
    Aggregation,
    Conversation,
    Scored,
    TaskDefaults,
    accuracy,
    parse_rate,
)

PROMPTS = (
    "How old does this person look? Answer with a number of years.",
    "Estimate the age of this person in years.",
)


class AgeTask(TaskDefaults):
    """Age in years; scored by absolute error (`correct`: within 5 years)."""

    name = "age"
    variants = ("years",)
    report_metrics = ("mae", "accuracy", "parse_rate")

    def applies_to(self, sample: Sample) -> bool:
        return isinstance(sample, FaceRecord) and sample.age is not None

    def conversations(self, sample: FaceRecord, rng: random.Random,
                      variants: tuple[str, ...] | None = None) -> list[Conversation]:
        age = int(round(sample.age))
        return [Conversation(sample.id, self.name, "years", rng.choice(PROMPTS), f"Age: {age}", [sample.image],
                             {"label": age})]

    def parse(self, response: str, conversation: Conversation) -> float | None:
        match = re.search(r"\d+(?:\.\d+)?", response)
        return None if match is None else float(match.group())

    def score(self, parsed: float | None, conversation: Conversation) -> Scored:
        label = conversation.extras["label"]
        error = None if parsed is None else abs(parsed - label)
        correct = error is not None and error <= 5
        return Scored(label, parsed, correct, float(correct), {"abs_error": error})

    def aggregations(self) -> dict[str, Aggregation]:
        return {"mae": lambda rs: M.mae([r.label for r in rs], [r.prediction for r in rs]),
                "accuracy": accuracy, "parse_rate": parse_rate}

    def prompt_variant(self, prompt: str) -> str | None:
        return "years" if prompt in PROMPTS else None
