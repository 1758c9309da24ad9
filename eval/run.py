"""Evaluate a model (base and/or LoRA adapters, any backend) on a facellm instruction dataset
and write a report: metrics.json, samples.jsonl, report.md, report.html, plots/.

    facellm eval --config eval/configs/synthface_tiny.yaml [key=value ...]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facellm.config import ConfigError, at_least, load_config, positive
from facellm.schema import Split


@dataclass
class SystemArgs:
    name: str                               # how the report calls it
    adapter: str | None = None              # a key of `adapters`; None = the base model


@dataclass
class EvalConfig:
    dataset: str                            # a `facellm data build` output folder
    output_dir: str
    model: str = "facellm_tiny"             # registry name, hub id or folder
    adapters: dict[str, str] = field(default_factory=dict)      # served name -> adapter folder
    systems: list[SystemArgs] = field(default_factory=lambda: [SystemArgs("base")])
    backend: str = "vllm_server"            # vllm_server | vllm_local | hf
    server_url: str | None = None           # attach to a running vLLM server instead of starting one
    tasks: list[str] | None = None          # None: every task in the dataset
    rows_per_group: int | None = None       # first N test rows per (task, variant); None = all
    calibration_split: Split = "validation"  # LR calibrators and the embedding LR are fitted here
    calibration_rows_per_variant: int | None = None
    test_split: Split = "test"
    max_tokens: int = 384
    batch_size: int = 64
    likelihood: bool = True                 # model-likelihood LLRs (facellm.evaluation)
    embedding_lr: bool = True               # Sony et al.'s embedding LR
    embedding_reg_covar: float = 1e-3


def validate(cfg: EvalConfig) -> None:
    from facellm import registry
    from facellm.inference.factory import BACKENDS

    if cfg.backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    for system in cfg.systems:
        if system.adapter is not None and system.adapter not in cfg.adapters:
            raise ConfigError(f"system {system.name!r} names adapter {system.adapter!r}, which is not in adapters "
                              f"({', '.join(cfg.adapters) or 'none'})")
    for task in cfg.tasks or ():
        if task not in registry.TASKS:
            raise ConfigError(f"tasks: unknown task {task!r}; known: {', '.join(registry.TASKS)}")
    if len({s.name for s in cfg.systems}) != len(cfg.systems):
        raise ConfigError("system names must be unique")
    for name in ("rows_per_group", "calibration_rows_per_variant", "max_tokens", "batch_size"):
        at_least(getattr(cfg, name), 1, name)
    positive(cfg.embedding_reg_covar, "embedding_reg_covar")


def select(rows: Any, tasks: list[str] | None, per_group: int | None, only: str | None = None) -> list[dict]:
    """The first `per_group` rows of each (task, variant), in dataset order."""
    taken: dict[tuple[str, str], int] = defaultdict(int)
    keep = []
    for i, (task, variant) in enumerate(zip(rows["task"], rows["variant"])):
        if (tasks and task not in tasks) or (only and task != only):
            continue
        if per_group is None or taken[task, variant] < per_group:
            taken[task, variant] += 1
            keep.append(i)
    return [rows[i] for i in keep]


def evaluate_system(backend: Any, system: SystemArgs, test: list[dict], cal: list[dict], cfg: EvalConfig
                    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    from facellm.evaluation import add_model_llrs, generate, lr_systems, score_row, task_metrics
    from facellm.metrics import EmbeddingLR

    records = {}
    for split, rows in (("test", test), ("calibration", cal)):
        texts = generate(backend, rows, system.adapter, cfg.max_tokens, cfg.batch_size, f"{system.name}/{split}")
        recs = [{"system": system.name, "split": split, **score_row(r, t)} for r, t in zip(rows, texts)]
        if cfg.likelihood:
            add_model_llrs(backend, rows, recs, system.adapter, cfg.batch_size)
        records[split] = recs
    by_variant: dict[str, dict[str, list]] = defaultdict(lambda: {"test": [], "calibration": []})
    for split, recs in records.items():
        for r in recs:
            if r["task"] == "verification":
                by_variant[r["variant"]][split].append(r)
    embed = (lambda: EmbeddingLR(reg_covar=cfg.embedding_reg_covar)) if cfg.embedding_lr else None
    lr = {v: lr_systems(g["test"], g["calibration"], embed) for v, g in sorted(by_variant.items())}
    summary = {"adapter": system.adapter, "tasks": task_metrics(records["test"]), "lr": lr}
    return summary, records["test"] + records["calibration"]


def run(cfg: EvalConfig) -> Path:
    from facellm.data.build import load_built
    from facellm.inference.factory import open_backend
    from facellm.report import evaluation_blocks, write_report

    data = load_built(cfg.dataset)
    test = select(data[cfg.test_split], cfg.tasks, cfg.rows_per_group)
    cal = select(data[cfg.calibration_split], cfg.tasks, cfg.calibration_rows_per_variant, only="verification")
    out = Path(cfg.output_dir)
    metrics, records = {}, []
    with open_backend(cfg.backend, cfg.model, cfg.adapters, server_url=cfg.server_url,
                      log_path=out / "server.log") as backend:
        for system in cfg.systems:
            metrics[system.name], recs = evaluate_system(backend, system, test, cal, cfg)
            records += recs
    return write_report(out, metrics, records, evaluation_blocks(metrics, out))


def headline(metrics_path: Path) -> str:
    import json

    metrics = json.loads(metrics_path.read_text())
    lines = []
    for system, m in metrics.items():
        tasks = m["tasks"]
        parts = [f"{k} acc {v['accuracy']:.3f}" for k, v in tasks.items() if "accuracy" in v and isinstance(v["accuracy"], float)]
        if "attributes" in tasks:
            parts.append(f"attributes mean acc {tasks['attributes']['mean_accuracy']:.3f}")
        cllrs = [(rep.get("cllr_logistic"), f"{variant}/{kind}") for variant, kinds in m["lr"].items()
                 for kind, rep in kinds.items() if kind != "fr_score"]
        if cllrs:
            best = min(cllrs, key=lambda c: float(c[0]))
            parts.append(f"best calibrated Cllr {float(best[0]):.3f} ({best[1]})")
        lines.append(f"{system}: " + "; ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm eval", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(EvalConfig, args.config, overrides)
        validate(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    try:
        report = run(cfg)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(headline(report.parent / "metrics.json"))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
