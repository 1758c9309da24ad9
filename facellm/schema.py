"""The sample schema every dataset parser produces and every task consumes.

A parser turns one labelled image into a `FaceRecord`; verification datasets (LFW pairs,
IJB-C templates, SynthFace pairs) produce `FacePair`s of two records. Labels a dataset does
not have stay `None` / empty, and the tasks that need them skip the record.

Example (CelebA row `000001.jpg -1 1 1 ...` with identity 2880):
    FaceRecord(id="celeba/000001.jpg", source="celeba", split="train",
               image="/data/celeba/img_align_celeba/000001.jpg", identity="2880",
               attributes={"eyeglasses": False, "smiling": True, ...})
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")

# The 7 basic expressions, in the order SynthFace and the tasks use.
EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")


@dataclass
class FaceRecord:
    """One face image and what is known about it.

    id: unique, stable across runs, `<source>/<relative path or index>`.
    image: path of the image file on disk (or a PIL image for in-memory sources).
    identity: identity label as a string, `None` if unknown.
    attributes: canonical attribute key (see `facellm.attributes`) -> bool, or str for the
        categorical ones (`hair_color`, `age_group`).
    expression: one of `EXPRESSIONS`, `None` if unlabelled.
    age: age in years, `None` if unknown.
    meta: anything else worth keeping (landmarks, nuisance values, original label ...).
    """

    id: str
    source: str
    split: Split
    image: Any
    identity: str | None = None
    attributes: dict[str, bool | str] = field(default_factory=dict)
    expression: str | None = None
    age: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def ground_truth(self) -> dict[str, Any]:
        """The labels as a JSON-able dict (no image)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "image"}


@dataclass
class FacePair:
    """Two face records for verification. `same` is H1 (same person), the label lir calls 1.

    fr_score: similarity from a face-recognition model in [0, 1], `None` if not computed.
    """

    id: str
    source: str
    split: Split
    first: FaceRecord
    second: FaceRecord
    same: bool
    fr_score: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def ground_truth(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "split": self.split,
            "same": self.same,
            "fr_score": self.fr_score,
            "first": self.first.ground_truth(),
            "second": self.second.ground_truth(),
            "meta": self.meta,
        }


Sample = FaceRecord | FacePair


def to_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)
