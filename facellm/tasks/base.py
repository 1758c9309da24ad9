"""What a task is: a labelled face sample -> conversations (prompt, target, images), and a
model response -> a parsed answer and a score against the ground truth.

The same task object builds the instruction data and scores the model in eval, so the prompt
a model is trained on is the prompt it is evaluated on (nanochat `tasks/common.py`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Protocol

from facellm.schema import FacePair, FaceRecord, Sample


@dataclass
class Conversation:
    """One user turn with 1-2 images and the assistant target.

    prompt: the user text (image placeholders are added by the chat layout, not here).
    target: the assistant text a model is trained to produce.
    variant: the prompt variant ("yesno", "images_only", ...).
    extras: what scoring needs beyond the sample (e.g. the attribute asked).
    """

    sample_id: str
    task: str
    variant: str
    prompt: str
    target: str
    images: list[Any]
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.sample_id}#{self.task}#{self.variant}"


class Task(Protocol):
    name: str
    variants: tuple[str, ...]

    def applies_to(self, sample: Sample) -> bool: ...

    def conversations(self, sample: Sample, rng: random.Random, variants: tuple[str, ...] | None = None
                      ) -> list[Conversation]: ...

    def parse(self, response: str, conversation: Conversation) -> Any: ...

    def score(self, parsed: Any, conversation: Conversation) -> dict[str, Any]: ...


def sample_rng(seed: int, sample_id: str, task: str) -> random.Random:
    """A generator that depends only on (seed, sample, task): rows are the same whatever order
    or process builds them, which makes interrupted builds resumable without duplicates."""
    return random.Random(f"{seed}:{sample_id}:{task}")


def images_of(sample: Sample) -> list[Any]:
    if isinstance(sample, FacePair):
        return [sample.first.image, sample.second.image]
    return [sample.image]


def is_record(sample: Sample) -> bool:
    return isinstance(sample, FaceRecord)
