"""The one place that maps registry keys to datasets, tasks and models.

YAML configs name components by these keys (`dataset: synthface`, `tasks: {expression: ...}`,
`model: qwen2_5_vl_3b`); `get_*` fails with "did you mean ...".
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from facellm.data import sources
from facellm.tasks import AgeGroupTask, AgeTask, AttributeTask, CaptionTask, ExpressionTask, GenderTask, VerificationTask

V = TypeVar("V")

DATASETS: dict[str, Callable[..., sources.DataSource]] = {
    "synthface": sources.synthface_source,
    "celeba": sources.celeba_source,
    "lfw": sources.lfw_source,
    "rafdb": sources.rafdb_source,
    "fer2013": sources.fer2013_source,
    "affectnet": sources.affectnet_source,
    "utkface": sources.utkface_source,
    "fairface": sources.fairface_source,
}

TASKS: dict[str, type] = {
    "attributes": AttributeTask,
    "expression": ExpressionTask,
    "verification": VerificationTask,
    "age": AgeTask,
    "caption": CaptionTask,
    "age_group": AgeGroupTask,
    "gender": GenderTask,
}


def lookup(table: Mapping[str, V], name: str, kind: str) -> V:
    try:
        return table[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Known: {', '.join(sorted(table))}."
        raise KeyError(f"unknown {kind} {name!r}.{hint}") from None


def get_dataset(name: str) -> Callable[..., sources.DataSource]:
    return lookup(DATASETS, name, "dataset")


def get_task(name: str) -> type:
    return lookup(TASKS, name, "task")


def models() -> Mapping[str, Any]:
    from facellm.models.registry import MODELS

    return MODELS


def describe(table: Mapping[str, Any]) -> dict[str, str]:
    """name -> first docstring line, for `facellm ls`."""
    return {k: ((getattr(v, "__doc__", None) or "").strip().splitlines() or [""])[0] for k, v in table.items()}
