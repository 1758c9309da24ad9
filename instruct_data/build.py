"""Build an instruction dataset from a face dataset and tasks.

    facellm data build --config instruct_data/configs/synthface.yaml [key=value ...] [--overwrite]
    facellm data build --config instruct_data/configs/synthface.yaml num_proc=2   # images encoded by 2 processes
    python -m instruct_data.build --config instruct_data/configs/synthface.yaml --check   # validate only
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facellm.config import (
    ConfigError,
    at_least,
    between,
    check_call,
    load_checked,
    overrides_epilog,
)
from facellm.data.build import build_dataset, no_face_detected
from facellm.registry import get_dataset, get_task
from facellm.tasks.verification import VerificationTask, decision_threshold


@dataclass
class TaskConfig:
    variants: list[str] | None = None     # None: every variant of the task
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlignConfig:
    enabled: bool = True                   # store each image as its aligned face crop (facellm.align)
    size: int = 112                        # crop side in pixels: the model's input size
    margin: float = 0.3                    # extra crop per side, as a fraction of ArcFace's 112 crop


@dataclass
class BuildConfig:
    dataset: str                           # registry key (`facellm ls datasets`)
    output_dir: str
    dataset_args: dict[str, Any] = field(default_factory=dict)
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    seed: int = 0
    shard_size: int = 500
    require_face: bool = False             # skip images in which YuNet finds no face (real photos)
    decision_fmr: float = 0.01             # score_decision threshold: this FMR on training pairs
    align: AlignConfig = field(default_factory=AlignConfig)
    num_proc: int = 1                      # processes encoding images; the dataset is the same for any value
    landmarks_in_prompt: bool = False      # append each face's 5 landmarks to the prompt (Face-LLaVA; needs align)


def validate(cfg: BuildConfig) -> None:
    """Check names, argument keys, types and ranges without reading or building anything."""
    try:
        _check_source(cfg.dataset, cfg.dataset_args)
        for name, tcfg in cfg.tasks.items():
            task_cls = get_task(name)
            check_call(task_cls, tcfg.args, f"tasks.{name}.args")
            bad = [v for v in tcfg.variants or () if v not in task_cls.variants]
            if bad:
                raise ConfigError(f"tasks.{name}.variants: {bad} not in {task_cls.variants}")
    except KeyError as e:
        raise ConfigError(e.args[0]) from None
    if not cfg.tasks:
        raise ConfigError("tasks is empty: name at least one task")
    at_least(cfg.shard_size, 1, "shard_size")
    at_least(cfg.num_proc, 1, "num_proc")
    between(cfg.decision_fmr, 0, 1, "decision_fmr")
    align_spec(cfg.align)
    if cfg.landmarks_in_prompt and not cfg.align.enabled:
        raise ConfigError("landmarks_in_prompt: true needs align.enabled: true (the landmarks are the alignment's)")


def _check_source(dataset: str, args: dict[str, Any]) -> None:
    where = "dataset_args"
    builder = get_dataset(dataset)
    check_call(builder, args, where)
    try:
        builder(**args)  # a source builder reads nothing: it checks its arguments' ranges
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def align_spec(align: AlignConfig):
    """The AlignSpec of the config, None when alignment is off; ConfigError when out of range."""
    from facellm.align import AlignSpec

    if not align.enabled:
        return None
    try:
        return AlignSpec(size=align.size, margin=align.margin)
    except ValueError as e:
        raise ConfigError(f"align: {e}") from None


def build(cfg: BuildConfig, overwrite: bool = False) -> dict[str, Any]:
    source = get_dataset(cfg.dataset)(**cfg.dataset_args)
    source.check()  # a wrong root fails here, before the face models load
    tasks, threshold = {}, None
    for name, tcfg in cfg.tasks.items():
        args = dict(tcfg.args)
        if name == "verification":
            threshold = _threshold(source, args, cfg.decision_fmr)
            args["threshold"] = threshold["value"]
        tasks[name] = (get_task(name)(**args), tuple(tcfg.variants) if tcfg.variants else None)
    config = json.loads(json.dumps(cfg, default=lambda o: o.__dict__))
    del config["num_proc"]  # how many processes build it changes nothing in the dataset: resume at any
    if not config["landmarks_in_prompt"]:
        del config["landmarks_in_prompt"]  # off: the same fingerprint as before the key existed
    fingerprint = {"config": config, "task_args": {n: vars(t) for n, (t, _) in tasks.items()}}
    if inputs := source.inputs():  # files on disk (SynthFace has none: its config defines it)
        fingerprint["inputs"] = inputs
    report = build_dataset(source.samples, tasks, cfg.output_dir, seed=cfg.seed, shard_size=cfg.shard_size,
                           image_check=no_face_detected if cfg.require_face else None, fingerprint=fingerprint,
                           overwrite=overwrite, align=align_spec(cfg.align), num_proc=cfg.num_proc,
                           landmarks_in_prompt=cfg.landmarks_in_prompt)
    if report.get("up_to_date"):
        return report
    report.update(parse_skipped=source.skipped.as_dict(), notes=source.notes.as_dict(), decision_threshold=threshold)
    tmp = Path(cfg.output_dir, "build_report.json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(tmp.with_suffix(""))
    return report


def _threshold(source: Any, args: dict[str, Any], fmr: float) -> dict[str, Any]:
    """The score_decision threshold and where it came from (the report and the output say)."""
    if "threshold" in args:
        return {"value": args["threshold"], "from": "tasks.verification.args.threshold"}
    scored = [(p.fr_score, p.same) for p in source.pairs("train") if p.fr_score is not None]
    if not scored:
        default = inspect.signature(VerificationTask).parameters["threshold"].default
        return {"value": default, "from": "default: no training pair has an FR score, so score_decision "
                "prompts decide at this value; set tasks.verification.args.threshold", "fallback": True}
    scores, same = zip(*scored)
    return {"value": decision_threshold(scores, same, fmr), "from": f"FMR {fmr} on {len(scored)} training pairs"}


def summary(report: dict[str, Any]) -> str:
    lines = ["(already built from this config and these input files: nothing to do)"] if report.get("up_to_date") else []
    for split, info in report["splits"].items():
        rows = ", ".join(f"{t} {n}" for t, n in sorted(info["rows"].items())) or "no rows"
        skipped = info["skipped"]
        skip = "; skipped " + ", ".join(f"{n} ({r})" for r, n in skipped.items()) if skipped else ""
        resumed = f"; resumed {info['resumed_shards']} shards" if info["resumed_shards"] else ""
        lines.append(f"{split}: {rows}{skip}{resumed}")
    if report.get("parse_skipped"):
        lines.append("label rows left out by the parser: "
                     + ", ".join(f"{n} ({r})" for r, n in report["parse_skipped"].items()))
    for reason, n in (report.get("notes") or {}).items():
        lines.append(f"warning: {n} x {reason}")
    if report.get("empty_splits"):
        lines.append(f"warning: no rows in {', '.join(report['empty_splits'])}")
    threshold = report.get("decision_threshold")
    if threshold:
        lines.append(f"{'warning: ' if threshold.get('fallback') else ''}score_decision threshold "
                     f"{threshold['value']:.4f} ({threshold['from']})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm data build", description=__doc__.splitlines()[0],
                                     usage="%(prog)s --config YAML [--overwrite] [--check] [key=value ...]",
                                     epilog=overrides_epilog("seed=1 dataset_args.root=/data/celeba"),
                                     allow_abbrev=False)
    parser.add_argument("--config", required=True, help="a data build YAML (facellm ls configs)")
    parser.add_argument("--overwrite", action="store_true",
                        help="rebuild although output_dir holds a build of another config; "
                             "the old dataset is replaced only once the new one is complete")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_checked(BuildConfig, args.config, overrides, validate)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    try:
        report = build(cfg, overwrite=args.overwrite)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary(report))
    print(f"dataset written to {cfg.output_dir}/dataset (report: {cfg.output_dir}/build_report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
