"""Build the offline default model `facellm_tiny` and cache it under $FACELLM_HOME/models/.

    facellm models build-default --config finetune/configs/facellm_tiny_base.yaml [key=value ...]

1. a randomly initialised Qwen2-VL (facellm.models.default) whose tokenizer is trained on
   every task's text, so each task word is one token;
2. full fine-tuning on SynthFace captions (`instruct_data/configs/synthface_pretrain.yaml`,
   built first), so the model can see faces at all; the face-task formats are left to LoRA.
Deterministic for a config; a finished build is reused, an interrupted one resumes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from facellm.config import ConfigError, load_config


@dataclass
class BuildDefaultConfig:
    data: str                        # a `facellm data build` output with caption rows
    size: str = "small"              # facellm.models.default.SIZES key
    seed: int = 0
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.01
    save_every: int = 500
    threads: int | None = None
    output: str | None = None        # default: $FACELLM_HOME/models/facellm_tiny


def validate(cfg: BuildDefaultConfig) -> None:
    from facellm.models.default import SIZES

    if cfg.size not in SIZES:
        raise ConfigError(f"size {cfg.size!r} is not one of {', '.join(SIZES)}")
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise ConfigError("steps and batch_size must be >= 1 and lr > 0")


def fingerprint(cfg: BuildDefaultConfig, corpus: list[str]) -> str:
    """What the build depends on: the config (not where or how fast it runs) and the tokenizer corpus."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in ("output", "threads", "save_every")}
    fields["corpus"] = hashlib.sha256("\n".join(corpus).encode()).hexdigest()
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def build(cfg: BuildDefaultConfig) -> Path:
    from facellm.data.build import load_built
    from facellm.models.default import build_default_model
    from facellm.models.loading import load_model, resolve_cache_dir
    from facellm.tasks.corpus import task_corpus
    from facellm.training import train

    out = Path(cfg.output) if cfg.output else resolve_cache_dir() / "models" / "facellm_tiny"
    stamp = out / "facellm_build.json"
    corpus = task_corpus(seed=cfg.seed)
    digest = fingerprint(cfg, corpus)
    if stamp.exists() and json.loads(stamp.read_text())["fingerprint"] == digest:
        print(f"{out} is up to date (fingerprint {digest})")
        return out
    rows = load_built(cfg.data)["train"]
    work = out.with_name(out.name + f".build-{digest}")
    if not (work / "init" / "facellm_model.json").exists():
        build_default_model(work / "init", corpus, seed=cfg.seed, size=cfg.size)
    model, processor = load_model(work / "init")
    train(model, processor, rows, output_dir=work / "pretrain", steps=cfg.steps, batch_size=cfg.batch_size,
          lr=cfg.lr, warmup=cfg.warmup, weight_decay=cfg.weight_decay, seed=cfg.seed, trainable="full",
          save_every=cfg.save_every, resume=True, threads=cfg.threads)
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(work / "pretrain", final, ignore=shutil.ignore_patterns("checkpoints"))
    (final / "facellm_build.json").write_text(json.dumps({"fingerprint": digest, "config": asdict(cfg)}, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(final, out)
    shutil.rmtree(work)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm models build-default", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).parent / "configs" / "facellm_tiny_base.yaml"))
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(BuildDefaultConfig, args.config, overrides)
        validate(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    try:
        out = build(cfg)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"offline default model: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
