"""Calibrators as an artifact of their own: what `facellm eval` fitted on its calibration split,
per system, prompt variant and LR system, written to <output_dir>/calibrators.json and loaded by
the demo (FaceAssistant). metrics.json is the report; this file is the input other tools read.

    {"format": "facellm-calibrators/1", "dataset": "runs/data/synthface", "split": "validation",
     "systems": {"lora": {"model": "facellm-lora", "merged": true,
        "calibrations": {"images_only": {"answer": {"slope": 0.41, "intercept": -0.02,
                                                    "n": 200, "n_mated": 97, "n_nonmated": 103}, ...}},
        "fusions": {"score": {"answer": {"weight_fr_score": 9.1, "weight_llr": 0.3, "intercept": -6.2,
                                         "n": 200, "n_mated": 97, "n_nonmated": 103}}}}}}

model: the system's adapter ("base" for none): the name the demo's model choice goes by.
Calibration: log10 LR = slope * llr + intercept (the logistic calibrator in raw units).
Fusion: log10 LR = weight_fr_score * FR score + weight_llr * llr + intercept. Both clip their
inputs to +-LLR_CLIP first, as evaluation does (facellm.evaluation's non-finite policy).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "facellm-calibrators/1"
BASE = "base"  # eval's model name for a system without an adapter
LLR_CLIP = 300.0  # facellm.evaluation's clip of +-inf LLRs


def _clip(x: float) -> float:
    return min(max(float(x), -LLR_CLIP), LLR_CLIP)


@dataclass(frozen=True)
class Calibration:
    """log10 LR = slope * llr + intercept. source: where it came from, in words."""

    slope: float
    intercept: float
    source: str

    def apply(self, llr: float) -> float:
        return self.slope * _clip(llr) + self.intercept


@dataclass(frozen=True)
class Fusion:
    """log10 LR = weight_fr_score * FR score + weight_llr * llr + intercept (`LogisticFusion`
    in raw input units). source: where it came from, in words."""

    weight_fr_score: float
    weight_llr: float
    intercept: float
    source: str

    def apply(self, fr_score: float, llr: float) -> float:
        return float(self.weight_fr_score * _clip(fr_score) + self.weight_llr * _clip(llr) + self.intercept)


@dataclass(frozen=True)
class Calibrators:
    """What one calibrators.json holds, keyed (model, variant), for one LR system (`kind`)."""

    calibrations: dict[tuple[str, str], Calibration] = field(default_factory=dict)
    fusions: dict[tuple[str, str], Fusion] = field(default_factory=dict)


def _counts(labels: np.ndarray) -> dict[str, int]:
    labels = np.asarray(labels, int)
    return {"n": int(labels.size), "n_mated": int(labels.sum()), "n_nonmated": int((labels == 0).sum())}


def artifact(metrics: dict[str, Any], dataset: str, split: str) -> dict[str, Any]:
    """calibrators.json's content from an evaluation's in-memory metrics
    ({system: {"adapter", "merged", "lr": {variant: {kind: LRSystem}}, "fusion": {...}}})."""
    systems = {}
    for name, m in metrics.items():
        calibrations = {variant: {kind: {"slope": rep.logistic[0], "intercept": rep.logistic[1],
                                         **_counts(rep.cal_labels)} for kind, rep in kinds.items()}
                        for variant, kinds in m.get("lr", {}).items() if kinds}
        fusions = {}
        for variant, kinds in m.get("fusion", {}).items():
            if kinds:
                counts = _counts(m["lr"][variant]["fr_score"].cal_labels)
                fusions[variant] = {kind: {k: f[k] for k in ("weight_fr_score", "weight_llr", "intercept")} | counts
                                    for kind, f in kinds.items()}
        systems[name] = {"model": m.get("adapter") or BASE, "merged": bool(m.get("merged")),
                         "calibrations": calibrations, "fusions": fusions}
    return {"format": FORMAT, "dataset": dataset, "split": split, "systems": systems}


def write(path: str | Path, content: dict[str, Any]) -> Path:
    """Write atomically (a temporary sibling, then a rename): a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2))
    os.replace(tmp, path)
    return path


def load(path: str | Path, kind: str = "answer") -> Calibrators:
    """The calibrations and fusions of LR system `kind` in a calibrators.json, keyed (model,
    variant). Raises ValueError naming the file when it is not one (an eval's metrics.json is
    the report: its calibrators.json sits beside it) or holds nothing for `kind`."""
    path = Path(path)
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        hint = (f"; an eval's metrics.json is its report, the calibrators are {path.with_name('calibrators.json')}"
                if path.name == "metrics.json" else "")
        raise ValueError(f"{path}: not a calibrators file (format {FORMAT!r}, written by facellm eval){hint}")
    out = Calibrators()
    for system, s in content["systems"].items():
        where = f"{path} (system {system}, fitted on {content.get('split')})"
        for variant, kinds in s.get("calibrations", {}).items():
            if kind in kinds:
                c = kinds[kind]
                out.calibrations[s["model"], variant] = Calibration(float(c["slope"]), float(c["intercept"]),
                                                                    f"{where}, variant {variant}")
        for variant, kinds in s.get("fusions", {}).items():
            if kind in kinds:
                f = kinds[kind]
                out.fusions[s["model"], variant] = Fusion(float(f["weight_fr_score"]), float(f["weight_llr"]),
                                                          float(f["intercept"]), f"{where}, variant {variant}")
    if not out.calibrations:
        raise ValueError(f"{path}: no calibration of the {kind} LLR (run `facellm eval` with likelihood: true)")
    return out
