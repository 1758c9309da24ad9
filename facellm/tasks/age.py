"""Age estimation: "How old does this person look?" -> "Age: 34". Scored by absolute error.

Sample: a FaceRecord with `age` (UTKFace, FairFace bin midpoints, SynthFace).
"""

from __future__ import annotations

import random
import re
from typing import Any

from facellm.schema import FaceRecord, Sample
from facellm.tasks.base import Conversation

PROMPTS = (
    "How old does this person look? Answer with a number of years.",
    "Estimate the age of this person in years.",
)


class AgeTask:
    name = "age"
    variants = ("years",)

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

    def score(self, parsed: float | None, conversation: Conversation) -> dict[str, Any]:
        label = conversation.extras["label"]
        error = None if parsed is None else abs(parsed - label)
        return {"label": label, "prediction": parsed, "abs_error": error, "correct": error is not None and error <= 5}
