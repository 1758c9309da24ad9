"""Training metrics: an append-only JSONL log that a resumed run can rewind, and the loss curve.

One JSON object per line, e.g.
    {"step": 12, "epoch": 0.75, "loss": 2.31, "lr": 0.0002, "grad_norm": 1.7, "s_per_step": 0.41,
     "samples_per_s": 19.5}
    {"step": 12, "eval": {"accuracy": 0.5}}
A checkpoint stores the log's byte size when it was written (`offset`); resuming from it
truncates the log there, so lines the interrupted run wrote after the checkpoint are rewritten
by the resumed run instead of appearing twice.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure


class MetricsLog:
    """Appends JSON records to `path`; each write is flushed so a killed run loses nothing."""

    def __init__(self, path: str | os.PathLike, resume_offset: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_offset is None:
            self._file = open(self.path, "wb")
        else:
            self._file = open(self.path, "ab")
            self._file.truncate(resume_offset)
            self._file.seek(resume_offset)

    def write(self, record: dict[str, Any]) -> None:
        self._file.write((json.dumps(record) + "\n").encode("utf-8"))
        self._file.flush()

    @property
    def offset(self) -> int:
        """Bytes written so far: where a resume from a checkpoint taken now must cut the log."""
        return self._file.tell()

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a metrics log, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_loss(ax: Axes, records: list[dict[str, Any]]) -> None:
    """Training loss against optimizer step on `ax` (records without a loss are skipped)."""
    points = [(r["step"], r["loss"]) for r in records if "loss" in r]
    if points:
        steps, losses = zip(*points)
        ax.plot(steps, losses, lw=1, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)


def save_loss_curve(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Write the loss curve of `records` as a PNG at `path`.

    A bare Figure renders with Agg and leaves pyplot's global backend alone (training may run
    inside a notebook)."""
    fig = Figure(figsize=(6, 4), layout="tight")
    plot_loss(fig.add_subplot(), records)
    fig.savefig(path, dpi=100)
    return Path(path)
