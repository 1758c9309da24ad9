"""Build the offline default model `facellm_tiny` and cache it under $FACELLM_HOME/models/.

    facellm models build-default --config finetune/configs/facellm_tiny_base.yaml [key=value ...]
    facellm models build-default --status     # exit 0 if the cached or shipped base is current, 1 if not
    facellm models build-default --ship [--ship-adapter runs/lora/facellm_tiny]   # refresh what ships

When the base that ships in the repository (facellm/models/shipped/, see facellm.models.shipped)
has this config's fingerprint, it is installed in seconds instead of trained (~35 min on 2 cores).

1. a randomly initialised Qwen2-VL (facellm.models.default) whose tokenizer is trained on
   every task's text, so each task word is one token;
2. `vision_steps` of supervised pre-training of the vision tower and merger on the pre-training
   images' exact SynthFace labels (facellm.training.vision_pretrain), so that it sees faces;
3. full fine-tuning on SynthFace captions (`instruct_data/configs/synthface_pretrain.yaml`,
   built first; the vision side frozen with `freeze_vision`), so that the language model reads
   what the tower sees; the face-task formats are left to LoRA.
Deterministic for a config; a finished build is reused, an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from facellm.config import ConfigError, at_least, load_checked, overrides_epilog, positive


@dataclass
class BuildDefaultConfig:
    data: str                        # a `facellm data build` output with caption rows
    size: Literal["test", "small"] = "small"  # facellm.models.default.SIZES key (a test keeps them equal)
    seed: int = 0
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    save_every: int = 500
    vision_steps: int = 0            # supervised vision pre-training steps before the captions (0: none)
    vision_batch_size: int = 64
    vision_lr: float = 1.0e-3
    freeze_vision: bool = False      # caption pre-training leaves the vision tower and merger as they are
    threads: int | None = None
    output: str | None = None        # default: $FACELLM_HOME/models/facellm_tiny
    data_config: str = "instruct_data/configs/synthface_pretrain.yaml"  # the config that built `data`


def validate(cfg: BuildDefaultConfig) -> None:
    """Range checks; types and `size` were checked on loading, without importing torch."""
    for name in ("steps", "batch_size", "save_every", "threads", "vision_batch_size"):
        at_least(getattr(cfg, name), 1, name)
    at_least(cfg.vision_steps, 0, "vision_steps")
    positive(cfg.lr, "lr")
    positive(cfg.vision_lr, "vision_lr")
    at_least(cfg.warmup, 0, "warmup")
    at_least(cfg.weight_decay, 0, "weight_decay")


def fingerprint(cfg: BuildDefaultConfig, corpus: list[str]) -> str:
    """What the build depends on: the config (not where or how fast it runs), the pre-training
    data config, the tokenizer corpus and the code (facellm.models.shipped.base_fingerprint)."""
    from facellm.models.shipped import base_fingerprint

    fields = {k: v for k, v in asdict(cfg).items() if k not in ("output", "threads", "save_every", "data")}
    data_config = Path(cfg.data_config)
    if not data_config.is_absolute() and not data_config.is_file():  # shipped configs name it from the checkout
        data_config = Path(__file__).resolve().parent.parent / data_config
    if not data_config.is_file():
        raise FileNotFoundError(f"data_config {data_config} does not exist")
    return base_fingerprint(fields, data_config.read_text(), corpus)


def output_dir(cfg: BuildDefaultConfig) -> Path:
    """Where the base is built or installed: `output`, else $FACELLM_HOME/models/facellm_tiny."""
    from facellm.models.loading import resolve_cache_dir

    return Path(cfg.output) if cfg.output else resolve_cache_dir() / "models" / "facellm_tiny"


def status(cfg: BuildDefaultConfig) -> tuple[bool, str]:
    """(current?, a line saying which base `facellm_tiny` resolves to and whether it is current)."""
    from facellm.models.shipped import REFRESH_COMMAND, SHIPPED_BASE, stamp_matches
    from facellm.tasks.corpus import task_corpus

    out = output_dir(cfg)
    digest = fingerprint(cfg, task_corpus(seed=cfg.seed))
    if stamp_matches(out, digest):
        return True, f"{out} is up to date (fingerprint {digest})"
    if stamp_matches(SHIPPED_BASE, digest):
        return True, f"the shipped base {SHIPPED_BASE} is current (fingerprint {digest}); it will be installed"
    return False, (f"neither {out} nor the shipped base has fingerprint {digest}: the base must be trained "
                   f"(~35 min on 2 cores); `{REFRESH_COMMAND}` refreshes the shipped copy")


def build(cfg: BuildDefaultConfig, ship: bool = False) -> Path:
    from facellm.data.build import load_built
    from facellm.models.default import build_default_model
    from facellm.models.loading import load_model
    from facellm.models.shipped import SHIPPED_BASE, install, stamp_matches, to_fp16
    from facellm.tasks.corpus import task_corpus
    from facellm.training import TrainConfig, train

    out = output_dir(cfg)
    corpus = task_corpus(seed=cfg.seed)
    digest = fingerprint(cfg, corpus)
    if stamp_matches(out, digest) and not (ship and not stamp_matches(SHIPPED_BASE, digest)):
        print(f"{out} is up to date (fingerprint {digest})")
        return _ship(out) if ship else out
    if stamp_matches(SHIPPED_BASE, digest):
        install(SHIPPED_BASE, out)
        print(f"installed the shipped base (fingerprint {digest}) at {out}")
        return out
    data = load_built(cfg.data)
    rows = data["train"]
    work = out.with_name(out.name + f".build-{digest}")
    if not (work / "init" / "facellm_model.json").exists():
        build_default_model(work / "init", corpus, seed=cfg.seed, size=cfg.size)
    start = work / "init"
    vision_report = None  # what vision pre-training reached, recorded with the build
    if cfg.vision_steps:
        start = work / "vision"
        if not (start / "vision_pretraining.json").exists():  # a stage of minutes: redone whole if interrupted
            _pretrain_vision(cfg, work / "init", start, rows, data.get("validation"))
        vision_report = json.loads((start / "vision_pretraining.json").read_text())
    model, processor = load_model(start)
    train(model, processor, rows, TrainConfig(
        output_dir=work / "pretrain", steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
        weight_decay=cfg.weight_decay, seed=cfg.seed, trainable="full",
        frozen=("model.visual",) if cfg.freeze_vision else (), save_every=cfg.save_every, resume=True,
        threads=cfg.threads))
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(work / "pretrain", final, ignore=shutil.ignore_patterns("checkpoints"))
    to_fp16(final)  # what ships is fp16: every build uses the same rounded weights
    (final / "facellm_build.json").write_text(json.dumps(
        {"fingerprint": digest, "config": asdict(cfg), "made_by": "facellm models build-default",
         "vision_pretraining": vision_report}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(final, out)
    shutil.rmtree(work)
    return _ship(out) if ship else out


def _pretrain_vision(cfg: BuildDefaultConfig, init: Path, out: Path, rows, val_rows) -> None:
    """The init model's vision side pre-trained on the rows' labels, written to `out` whole
    (a temporary sibling, then a rename) with vision_pretraining.json, its validation scores."""
    import torch

    from facellm.models.loading import load_model
    from facellm.training.sft import set_threads
    from facellm.training.vision_pretrain import pretrain_vision

    set_threads(cfg.threads)
    model, processor = load_model(init)
    report = pretrain_vision(model, processor, rows, steps=cfg.vision_steps, batch_size=cfg.vision_batch_size,
                             lr=cfg.vision_lr, seed=cfg.seed, eval_rows=val_rows, log_every=250)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.float32).save_pretrained(tmp)
    processor.save_pretrained(tmp)
    for extra in ("facellm_model.json",):
        shutil.copy2(init / extra, tmp / extra)
    (tmp / "vision_pretraining.json").write_text(json.dumps(report, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def _ship(out: Path) -> Path:
    from facellm.models.shipped import MAX_SHIPPED_BYTES, SHIPPED_BASE, folder_bytes, install, portable_args

    install(out, SHIPPED_BASE)
    portable_args(SHIPPED_BASE)
    print(f"shipped the base to {SHIPPED_BASE} ({folder_bytes(SHIPPED_BASE) / 2**20:.1f} MiB of at most "
          f"{MAX_SHIPPED_BYTES / 2**20:.0f} MiB with the adapter)")
    return out


def ship_adapter(adapter: Path, base: Path) -> Path:
    """Copy a LoRA adapter trained on `base` to the shipped folder (fp16), stamped with the
    base's fingerprint."""
    from facellm.models.shipped import SHIPPED_ADAPTER, install, portable_args, read_stamp, to_fp16

    if not (adapter / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
    base_stamp = read_stamp(base)
    if base_stamp is None:
        raise FileNotFoundError(f"{base} has no facellm_build.json: build the base first")
    install(adapter, SHIPPED_ADAPTER)
    to_fp16(SHIPPED_ADAPTER)
    portable_args(SHIPPED_ADAPTER)
    (SHIPPED_ADAPTER / "facellm_build.json").write_text(json.dumps(
        {"base_fingerprint": base_stamp["fingerprint"], "trained_from": str(adapter),
         "made_by": "facellm train, then facellm models build-default --ship-adapter"}, indent=2))
    print(f"shipped the adapter to {SHIPPED_ADAPTER}")
    return SHIPPED_ADAPTER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm models build-default", description=__doc__.splitlines()[0],
                                     epilog=overrides_epilog("steps=500 seed=1"), allow_abbrev=False)
    parser.add_argument("--config", default=str(Path(__file__).parent / "configs" / "facellm_tiny_base.yaml"),
                        help="the base model's YAML (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument("--status", action="store_true",
                        help="say whether the cached or shipped base is current (exit 0) or must be trained (exit 1)")
    parser.add_argument("--ship", action="store_true", help="also write the base to facellm/models/shipped/")
    parser.add_argument("--ship-adapter", metavar="DIR", help="ship this LoRA adapter (trained on the base) too")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_checked(BuildDefaultConfig, args.config, overrides, validate)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    try:
        if args.status:
            current, line = status(cfg)
            print(line)
            return 0 if current else 1
        out = build(cfg, ship=args.ship or bool(args.ship_adapter))
        if args.ship_adapter:
            ship_adapter(Path(args.ship_adapter), out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"offline default model: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
