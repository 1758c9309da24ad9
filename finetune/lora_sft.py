"""LoRA supervised fine-tuning of a vision-language model on a facellm instruction dataset.

    facellm train --config finetune/configs/facellm_tiny.yaml [key=value ...] [--resume]
    accelerate launch --config_file finetune/accelerate/ddp.yaml -m finetune.lora_sft --config ...

Loss on assistant tokens only; images never truncated; checkpoints every `train.save_every`
steps and `--resume` continues a killed run exactly. The output folder holds the adapter, the
processor and chat template the server must use, metrics.jsonl and loss.png.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from facellm.config import ConfigError, at_least, load_checked, overrides_epilog, positive
from facellm.schema import Split


@dataclass
class LoraArgs:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | None = None      # regex; None = the model entry's language-model linear layers
    vision: bool = False                   # also the vision tower and merger (Qwen2-VL; vLLM serves it
                                           # with --enable-tower-connector-lora, which facellm serve adds)


@dataclass
class TrainArgs:
    steps: int | None = 2000
    epochs: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 5e-4
    warmup: int = 50
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    loss_reduction: Literal["token", "row"] = "token"  # "row": each row's mean over its tokens, then over rows
    seed: int = 0
    save_every: int | None = 250
    keep_last: int = 2
    eval_every: int | None = 500
    log_every: int = 10
    threads: int | None = None
    num_workers: int = 1                   # DataLoader processes collating while the model trains
    max_length: int | None = None          # longer rows raise; never truncated
    gradient_checkpointing: bool = False
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"  # bf16 on GPUs that have it, fp32 on CPU


@dataclass
class EvalArgs:
    split: Split = "validation"
    rows: int = 48                          # rows scored at each periodic evaluation
    max_tokens: int = 320


@dataclass
class SFTConfig:
    model: str                              # registry name (`facellm ls models`), hub id or local folder
    dataset: str                            # a `facellm data build` output folder
    output_dir: str
    tasks: list[str] | None = None          # train on these tasks' rows only; None = all
    lora: LoraArgs = field(default_factory=LoraArgs)
    train: TrainArgs = field(default_factory=TrainArgs)
    eval: EvalArgs = field(default_factory=EvalArgs)
    merge: bool = False                     # also write a merged full model to <output_dir>/merged


def validate(cfg: SFTConfig) -> None:
    """Cheap checks before torch is imported or anything loaded (the LoRA target is checked on
    the loaded model). TrainArgs mirrors `facellm.training.TrainConfig` (a test binds them)."""
    from facellm import registry

    if cfg.model not in registry.models() and not Path(cfg.model).exists() and "/" not in cfg.model:
        raise ConfigError(_unknown_model(cfg.model, list(registry.models())))
    for task in cfg.tasks or ():
        if task not in registry.TASKS:
            raise ConfigError(f"tasks: unknown task {task!r}; known: {', '.join(registry.TASKS)}")
    at_least(cfg.lora.r, 1, "lora.r")
    positive(cfg.lora.alpha, "lora.alpha")
    if not 0 <= cfg.lora.dropout < 1:
        raise ConfigError(f"lora.dropout must be in [0, 1), got {cfg.lora.dropout!r}")
    if cfg.lora.vision and cfg.model in registry.models():
        from facellm.models.registry import VISION_LORA_TARGETS

        family = registry.models()[cfg.model].family
        if family not in VISION_LORA_TARGETS:
            raise ConfigError(f"lora.vision: vLLM serves vision-tower LoRA for {', '.join(VISION_LORA_TARGETS)} "
                              f"models, not {family} ({cfg.model})")
    _validate_train(cfg.train)
    at_least(cfg.eval.rows, 1, "eval.rows")
    at_least(cfg.eval.max_tokens, 1, "eval.max_tokens")


def _validate_train(t: TrainArgs) -> None:
    if t.steps is None and t.epochs is None:
        raise ConfigError("train.steps or train.epochs must be set")
    for name in ("steps", "batch_size", "grad_accum", "save_every", "keep_last", "eval_every", "log_every",
                 "threads", "max_length"):
        at_least(getattr(t, name), 1, f"train.{name}")
    for name in ("epochs", "lr", "max_grad_norm"):
        positive(getattr(t, name), f"train.{name}")
    at_least(t.warmup, 0, "train.warmup")
    at_least(t.num_workers, 0, "train.num_workers")
    at_least(t.weight_decay, 0, "train.weight_decay")


def _unknown_model(name: str, known: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
    return f"model {name!r} is neither a registry name nor a local folder; {hint}"


def _lora_kwargs(lora: LoraArgs) -> dict[str, Any]:
    return {"lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "lora_target_modules": lora.target_modules}


def load_rows(dataset: str, split: str, tasks: list[str] | None):
    from facellm.data.build import load_built

    rows = load_built(dataset)[split]
    return rows.filter(lambda t: t in tasks, input_columns="task") if tasks else rows


def run(cfg: SFTConfig, resume: bool) -> Path:
    from facellm.data.build import built_tasks
    from facellm.evaluation import quick_eval
    from facellm.models import get_model_spec, load_model
    from facellm.models.lora import check_targets, lora_config, lora_targets, merge_adapter
    from facellm.training import TrainConfig, train

    train_rows = load_rows(cfg.dataset, "train", cfg.tasks)
    eval_rows = load_rows(cfg.dataset, cfg.eval.split, cfg.tasks)
    eval_rows = eval_rows.shuffle(seed=0).select(range(min(cfg.eval.rows, len(eval_rows))))
    model, processor = load_model(cfg.model)
    spec = get_model_spec(cfg.model) if cfg.model in _registry_names() else None
    targets = cfg.lora.target_modules or (lora_targets(spec, cfg.lora.vision) if spec else None)
    check_targets(model, lora_config(targets or _default_targets(), r=cfg.lora.r, alpha=cfg.lora.alpha,
                                     dropout=cfg.lora.dropout))
    config = TrainConfig(output_dir=cfg.output_dir, resume=resume,
                         **{**asdict(cfg.train), **_lora_kwargs(cfg.lora), "lora_target_modules": targets})
    tasks = built_tasks(cfg.dataset)  # validation scores with the tasks the rows were built with
    train(model, processor, train_rows, config, eval_rows=eval_rows,
          eval_fn=lambda m, p, rows: quick_eval(m, p, rows, cfg.eval.max_tokens, tasks))
    if cfg.merge:
        merge_adapter(_base_dir(cfg.model), cfg.output_dir, Path(cfg.output_dir) / "merged")
    return Path(cfg.output_dir)


def _registry_names() -> list[str]:
    from facellm import registry

    return list(registry.models())


def _default_targets() -> str:
    from facellm.training.sft import DEFAULT_LORA_TARGETS

    return DEFAULT_LORA_TARGETS


def _base_dir(model: str) -> str:
    from facellm.models.loading import resolve_model_path

    return str(resolve_model_path(model)[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm train", description=__doc__.splitlines()[0],
                                     usage="%(prog)s --config YAML [--resume] [--check] [key=value ...]",
                                     epilog=overrides_epilog("lora.r=16 train.steps=500"), allow_abbrev=False)
    parser.add_argument("--config", required=True, help="a fine-tuning YAML (facellm ls configs)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_checked(SFTConfig, args.config, overrides, validate)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    try:
        out = run(cfg, args.resume)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"adapter written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
