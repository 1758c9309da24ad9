"""What a task is: a labelled face sample -> conversations (prompt, target, images); a model
response -> a parsed answer, scored against the ground truth (`Scored`, one per sample); and
the metrics its per-sample records aggregate into, which the task declares (`aggregations`),
the way lm-evaluation-harness splits `process_results` from `aggregation`.

The same task object builds the instruction data and scores the model in eval, so the prompt
a model is trained on is the prompt it is evaluated on (nanochat `tasks/common.py`). Evaluation
(`facellm.evaluation`), training's periodic validation (`quick_eval`), the report and the chat's
answer line iterate over what the tasks declare: a new task is one module plus its registry key.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from facellm import metrics as M
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


@dataclass
class Scored:
    """One response scored by its task (`Task.score`).

    correct: all-or-nothing. score: the share of the answer that is right, in [0, 1] (1.0 / 0.0
    for one-answer tasks; a describe answer's share of attributes right): what training's
    periodic validation averages. values: what else the task's aggregations read per sample
    (JSON-able: `abs_error`, the `attribute` a yes/no row asks, a verification answer's
    `explanation` ...).
    """

    label: Any
    prediction: Any
    correct: bool
    score: float
    values: dict[str, Any] = field(default_factory=dict)


class PairLLRs(NamedTuple):
    """The model-likelihood LLRs (log10) of one verification answer (facellm.evaluation's docstring)."""

    verdict: float
    answer: float
    explanation: float


@dataclass
class SelfCheck:
    """An explanation's claims against the model's own per-image answers (no ground truth needed):
    consistent / contradicted / not_checkable counts; `agreement`, per claim checkable both ways,
    self-contradicted vs hallucinated ("both", "self_only", "truth_only", "neither"); and
    `same_value_differences`, differences that name one value for both faces."""

    consistent: int
    contradicted: int
    not_checkable: int
    agreement: dict[str, int]
    same_value_differences: int


@dataclass
class Record:
    """The per-sample record of one evaluated row: one JSONL line of an evaluation (`to_json`).

    id / task / variant: the row's. reference: the training target. label, prediction, correct,
    score, values: the task's `Scored`. system, split: which evaluation made it. llrs: the
    model-likelihood LLRs (verification, when likelihood scoring ran). self_check: self-consistency
    (verification, when it ran). groups: the row's demographic groups (set from the row each
    time records are read, `facellm.evaluation.row_groups`).
    """

    id: str
    task: str
    variant: str
    reference: str
    response: str
    label: Any
    prediction: Any
    correct: bool
    score: float
    values: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    split: str | None = None
    llrs: PairLLRs | None = None
    self_check: SelfCheck | None = None
    groups: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        if self.llrs is not None:
            out["llrs"] = self.llrs._asdict()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise ValueError(f"record {data.get('id')!r} has fields {unknown} that this facellm does not know "
                             "(records of an older facellm: rerun the evaluation with --overwrite)")
        out = cls(**data)
        if isinstance(out.llrs, Mapping):
            out.llrs = PairLLRs(**out.llrs)
        if isinstance(out.self_check, Mapping):
            out.self_check = SelfCheck(**out.self_check)
        return out


Aggregation = Callable[[Sequence[Record]], Any]
"""A metric over one metric group's records; None = not defined on them (left out)."""


@runtime_checkable
class Task(Protocol):
    name: str
    variants: tuple[str, ...]

    def applies_to(self, sample: Sample) -> bool: ...

    def conversations(self, sample: Sample, rng: random.Random, variants: tuple[str, ...] | None = None
                      ) -> list[Conversation]: ...

    def parse(self, response: str, conversation: Conversation) -> Any: ...

    def score(self, parsed: Any, conversation: Conversation) -> Scored: ...

    def metric_group(self, variant: str) -> str:
        """Where a record of this variant aggregates: "expression", "verification/score" ..."""
        ...

    def aggregations(self) -> dict[str, Aggregation]:
        """Metric name -> aggregation over one metric group's records (`n` is added by evaluation)."""
        ...

    report_metrics: tuple[str, ...]
    """The scalar metrics the report's task table shows, in order."""

    def prompt_variant(self, prompt: str) -> str | None:
        """The variant whose prompt `prompt` is (a chat message that is one of the task's own
        prompts), else None: the chat then shows the parsed answer (`answer_text`)."""
        ...

    def answer_text(self, parsed: Any) -> str:
        """A parsed answer in words, for the chat ("happy", "eyeglasses yes, beard no")."""
        ...


# ---------------------------------------------------------------- aggregations tasks share


def accuracy(rs: Sequence[Record]) -> float:
    return float(np.mean([r.correct for r in rs]))


def parse_rate(rs: Sequence[Record]) -> float:
    return M.parse_rate([r.prediction for r in rs])


def constant_accuracy(rs: Sequence[Record]) -> float:
    """The accuracy of the best constant answer on these rows (the commonest label): what a
    model that answers the same whatever the image scores, the floor an accuracy is read against."""
    counts = Counter(r.label for r in rs)
    return max(counts.values()) / len(rs)


def classification(classes: Sequence[str]) -> dict[str, Aggregation]:
    """Accuracy, UAR, macro-F1, parse rate and the confusion matrix (rows: labels, columns:
    predictions, in `classes` order, which the report plots with `classes`)."""
    def labels(rs: Sequence[Record]) -> list[Any]:
        return [r.label for r in rs]

    def preds(rs: Sequence[Record]) -> list[Any]:
        return [r.prediction for r in rs]

    return {"accuracy": lambda rs: M.accuracy(labels(rs), preds(rs)),
            "uar": lambda rs: M.uar(labels(rs), preds(rs), classes),
            "macro_f1": lambda rs: M.macro_f1(labels(rs), preds(rs), classes),
            "parse_rate": parse_rate, "constant_accuracy": constant_accuracy,
            "confusion": lambda rs: M.confusion_matrix(labels(rs), preds(rs), classes).tolist(),
            "classes": lambda rs: list(classes)}


CLASSIFICATION_REPORT = ("accuracy", "macro_f1", "uar", "parse_rate")


class TaskDefaults:
    """What most tasks share: metrics pooled over variants, no chat answer line."""

    report_metrics: tuple[str, ...] = ("accuracy", "parse_rate")

    def metric_group(self, variant: str) -> str:
        return self.name  # type: ignore[attr-defined]

    def aggregations(self) -> dict[str, Aggregation]:
        return {"accuracy": accuracy, "parse_rate": parse_rate}

    def prompt_variant(self, prompt: str) -> str | None:
        return None

    def answer_text(self, parsed: Any) -> str:
        return "not parseable" if parsed is None else str(parsed)


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
