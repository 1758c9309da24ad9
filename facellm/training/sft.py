"""Supervised fine-tuning of a vision-language chat model on instruction rows, with accelerate.

One loop for LoRA (the usual recipe: adapters on the language model's linear layers, vision
tower and projector frozen) and full fine-tuning (how the offline default's base is pre-trained
on SynthFace). Runs single-process or under `accelerate launch` (DDP; see finetune/accelerate/).

Data order is a seeded permutation per epoch, consumed as one stream: optimizer step s uses
stream positions [s*G, (s+1)*G) with G = batch_size * grad_accum * processes, each process
taking its own slice of every micro-batch. The position is therefore a pure function of the
step, which is what makes `resume=True` reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, gather_object, set_seed
from peft import PeftModel, get_peft_model
from tqdm.auto import tqdm
from transformers import get_scheduler

from facellm.models.lora import check_targets, lora_config
from facellm.models.registry import FAMILY_OF_MODEL_TYPE, LORA_TARGETS
from facellm.training import checkpoint as ckpt
from facellm.training.collator import VisionChatCollator
from facellm.training.logging import MetricsLog, read_metrics, save_loss_curve

log = logging.getLogger(__name__)

EvalFn = Callable[[torch.nn.Module, Any, Any], dict[str, Any]]

# LoRA on the attention and MLP projections of the language model, the usual VLM recipe (the
# registry's targets for the model's family; Qwen2-VL's when the family is unknown).
DEFAULT_LORA_TARGETS = LORA_TARGETS["qwen2_vl"]


@dataclass
class TrainResult:
    """model: the trained model (a PeftModel for LoRA), unwrapped from DDP.
    step: optimizer steps done. loss: the last logged training loss (None if nothing logged).
    output_dir: where the export, checkpoints/, metrics.jsonl and loss.png are."""

    model: torch.nn.Module = field(repr=False)
    step: int
    loss: float | None
    output_dir: Path

    @property
    def metrics_path(self) -> Path:
        return self.output_dir / "metrics.jsonl"


def train(
    model: torch.nn.Module,
    processor: Any,
    train_rows: Sequence[dict[str, Any]],
    *,
    output_dir: str | os.PathLike,
    steps: int | None = None,
    epochs: float | None = None,
    batch_size: int = 8,
    grad_accum: int = 1,
    lr: float = 2e-4,
    warmup: int = 0,
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine",
    weight_decay: float = 0.0,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    trainable: Literal["lora", "full"] = "lora",
    lora_r: int = 16,
    lora_alpha: int = 32,
    lora_dropout: float = 0.05,
    lora_target_modules: str | list[str] | None = None,
    trainable_extra: Sequence[str] = (),
    frozen: Sequence[str] = (),
    max_length: int | None = None,
    gradient_checkpointing: bool = False,
    save_every: int | None = None,
    keep_last: int = 2,
    eval_every: int | None = None,
    eval_fn: EvalFn | None = None,
    eval_rows: Any = None,
    resume: bool = False,
    threads: int | None = None,
    log_every: int = 1,
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto",
    progress: bool = True,
) -> TrainResult:
    """Fine-tune `model` on `train_rows` and export it to `output_dir`.

    LoRA layers are injected into `model` in place (peft), so give each run a freshly loaded
    model. The loss of a step is the mean over its micro-batches (and processes) of each
    micro-batch's mean over its labelled tokens.

    model, processor: a transformers vision-language model (or a PeftModel loaded with
        is_trainable=True, to continue training an adapter) and its processor.
    train_rows: instruction rows (docs/design.md): a datasets.Dataset or a list of dicts.
    output_dir: receives the export (see checkpoint.export_model), checkpoints/, metrics.jsonl
        and loss.png. Only the main process writes.
    steps, epochs: training length in optimizer steps, or in passes over train_rows (exactly one).
    batch_size: rows per micro-batch per process. grad_accum: micro-batches per optimizer step.
    lr, warmup, lr_schedule: peak learning rate, linear warm-up steps, decay after warm-up (to 0).
    weight_decay: AdamW decay on matrices (biases and norm weights are never decayed).
    max_grad_norm: clip the global gradient norm to this; None = no clipping.
    seed: seeds LoRA initialisation, dropout and the data order.
    trainable: "lora" adds adapters (lora_r, lora_alpha, lora_dropout on lora_target_modules,
        a peft regex or list of module names; default: the registry's targets for the model's
        family, the language model's linear layers); "full" trains every parameter.
    trainable_extra: with LoRA, module-name suffixes also trained in full and saved in the
        adapter (peft modules_to_save, e.g. ("input_layernorm", "post_attention_layernorm"));
        a base whose embeddings or norms never saw the task needs them, but vLLM cannot serve
        such an adapter (merge it first).
    frozen: with trainable="full", parameter-name prefixes kept frozen (e.g. ("model.visual",):
        the vision tower and merger, after facellm.training.vision_pretrain).
    max_length: longest allowed row in tokens; longer rows raise (never truncated).
    gradient_checkpointing: recompute activations in backward to save memory.
    save_every, keep_last: checkpoint every N optimizer steps (and at the end), keep the newest K.
    eval_every, eval_fn, eval_rows: every N steps and at the end, the main process logs
        eval_fn(model, processor, eval_rows) (a dict of numbers) with the model in eval mode.
    resume: continue from the newest complete checkpoint in output_dir (a fresh start if none).
    threads: torch CPU threads (default FACELLM_THREADS, else torch's default).
    log_every: write a metrics record every N steps (loss and timings averaged over them).
    mixed_precision: "auto" = bf16 on a CUDA GPU that supports it, "no" on CPU.
    progress: show a tqdm bar (main process only).
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps and epochs")
    output_dir = Path(output_dir)
    _set_threads(threads)
    accelerator = _accelerator(grad_accum, mixed_precision)
    _check_sharding(accelerator, save_every, resume)
    world = accelerator.num_processes
    total_steps = steps if steps is not None else math.ceil(epochs * len(train_rows) / (batch_size * grad_accum * world))
    checkpoint_dir = ckpt.latest_checkpoint(output_dir) if resume else None
    if not resume and ckpt.list_checkpoints(output_dir):
        raise FileExistsError(
            f"{output_dir} has checkpoints of an earlier run: pass resume=True to continue it, or use another output_dir"
        )

    set_seed(seed)
    model = _make_trainable(
        model, trainable, lora_r, lora_alpha, lora_dropout, lora_target_modules, trainable_extra, gradient_checkpointing,
        frozen,
    )
    optimizer = _adamw(model, lr, weight_decay)
    scheduler = get_scheduler(lr_schedule, optimizer, num_warmup_steps=warmup, num_training_steps=total_steps)
    layout = {"batch_size": batch_size, "grad_accum": grad_accum, "processes": world, "seed": seed, "rows": len(train_rows)}
    start_step, log_offset, window = 0, None, _Window()
    if checkpoint_dir is not None:
        start_step, log_offset, window = _resume(checkpoint_dir, model, optimizer, scheduler, layout, accelerator)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no dataloader is prepared to infer it from
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = batch_size
    model, optimizer = accelerator.prepare(model, optimizer)

    collator = VisionChatCollator(processor, max_length=max_length)
    order = DataOrder(len(train_rows), seed)
    metrics = MetricsLog(output_dir / "metrics.jsonl", resume_offset=log_offset) if accelerator.is_main_process else None
    bar = tqdm(total=total_steps, initial=start_step, desc="sft", disable=not (progress and accelerator.is_main_process))
    step_samples = batch_size * grad_accum * world
    last_loss = None
    model.train()
    for step in range(start_step + 1, total_steps + 1):
        tick = time.perf_counter()
        loss, grad_norm = _optimizer_step(
            accelerator, model, optimizer, collator, train_rows, order, step, batch_size, grad_accum, max_grad_norm
        )
        scheduler.step()
        window.add(loss, grad_norm, time.perf_counter() - tick)
        bar.update(1)
        if step % log_every == 0 or step == total_steps:
            record = window.record(step, step * step_samples / len(train_rows), scheduler.get_last_lr()[0], step_samples)
            last_loss = record["loss"]
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{record['lr']:.2e}")
            if metrics:
                metrics.write(record)
        if eval_fn is not None and eval_every and (step % eval_every == 0 or step == total_steps):
            _evaluate(accelerator, model, processor, eval_fn, eval_rows, step, metrics)
        if save_every and (step % save_every == 0 or step == total_steps):
            _save(accelerator, model, optimizer, scheduler, output_dir, step, layout, metrics, window, keep_last)
    bar.close()
    _finish(accelerator, model, processor, output_dir, metrics, _train_args(locals()))
    return TrainResult(accelerator.unwrap_model(model), total_steps, last_loss, output_dir)


class DataOrder:
    """Row indices in a seeded random order, a fresh permutation per epoch, as one endless stream."""

    def __init__(self, n_rows: int, seed: int) -> None:
        if n_rows == 0:
            raise ValueError("no training rows")
        self.n_rows, self.seed = n_rows, seed
        self._epoch, self._perm = -1, None

    def epoch_permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n_rows)
        return self._perm

    def take(self, start: int, count: int) -> list[int]:
        """Row indices at stream positions [start, start + count)."""
        return [int(self.epoch_permutation(p // self.n_rows)[p % self.n_rows]) for p in range(start, start + count)]


def _optimizer_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    collator: VisionChatCollator,
    rows: Sequence[dict[str, Any]],
    order: DataOrder,
    step: int,
    batch_size: int,
    grad_accum: int,
    max_grad_norm: float | None,
) -> tuple[float, float]:
    """One optimizer step over grad_accum micro-batches; (loss averaged over micro-batches and
    processes, global gradient norm before clipping)."""
    world, rank = accelerator.num_processes, accelerator.process_index
    losses, grad_norm = [], 0.0
    for micro in range(grad_accum):
        first = ((step - 1) * grad_accum + micro) * batch_size * world + rank * batch_size
        batch = collator([rows[i] for i in order.take(first, batch_size)])
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.accumulate(model):
            loss = model(**batch, use_cache=False).loss
            accelerator.backward(loss)  # divides by grad_accum
            if accelerator.sync_gradients:
                norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or float("inf"))
                grad_norm = float("nan") if norm is None else float(norm)  # None: DeepSpeed clips itself
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    mean_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean")
    return float(mean_loss), grad_norm


@dataclass
class _Window:
    """Sums over the steps since the last metrics record (kept in checkpoints so a resumed run
    writes the same records)."""

    loss: float = 0.0
    grad_norm: float = 0.0
    seconds: float = 0.0
    count: int = 0

    def add(self, loss: float, grad_norm: float, seconds: float) -> None:
        self.loss, self.grad_norm = self.loss + loss, self.grad_norm + grad_norm
        self.seconds, self.count = self.seconds + seconds, self.count + 1

    def record(self, step: int, epoch: float, lr: float, step_samples: int) -> dict[str, Any]:
        n = max(self.count, 1)
        record = {
            "step": step,
            "epoch": round(epoch, 4),
            "loss": self.loss / n,
            "lr": lr,
            "grad_norm": self.grad_norm / n,
            "s_per_step": self.seconds / n,
            "samples_per_s": step_samples * n / self.seconds if self.seconds > 0 else None,
        }
        self.loss = self.grad_norm = self.seconds = 0.0
        self.count = 0
        return record


def _accelerator(grad_accum: int, mixed_precision: str) -> Accelerator:
    on_gpu = torch.cuda.is_available()
    if mixed_precision == "auto":
        mixed_precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    # cpu=True on a CPU-only machine matters: without it accelerate treats processes started by
    # `accelerate launch`/torchrun as independent single-process runs instead of a gloo group.
    accelerator = Accelerator(gradient_accumulation_steps=grad_accum, mixed_precision=mixed_precision, cpu=not on_gpu)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise RuntimeError(f"{launched} processes were launched but accelerate set up {accelerator.num_processes}")
    return accelerator


def _set_threads(threads: int | None) -> None:
    threads = threads or int(os.environ.get("FACELLM_THREADS", "0")) or None
    if threads:
        torch.set_num_threads(threads)


def _make_trainable(
    model: torch.nn.Module,
    trainable: str,
    lora_r: int,
    lora_alpha: int,
    lora_dropout: float,
    lora_target_modules: str | list[str] | None,
    trainable_extra: Sequence[str],
    gradient_checkpointing: bool,
    frozen: Sequence[str] = (),
) -> torch.nn.Module:
    if gradient_checkpointing:
        # non-reentrant checkpointing needs no input that requires grad, so frozen embeddings are fine
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if trainable == "full":
        if isinstance(model, PeftModel):
            raise ValueError("trainable='full' got a PeftModel; merge the adapter (merge_and_unload) first")
        if trainable_extra:
            raise ValueError("trainable_extra is for LoRA runs; trainable='full' already trains every parameter")
        model.requires_grad_(True)
        names = [name for name, _ in model.named_parameters()]
        for prefix in frozen:
            if not any(n.startswith(prefix) for n in names):
                raise ValueError(f"frozen: no parameter name starts with {prefix!r}")
        for name, p in model.named_parameters():
            if any(name.startswith(prefix) for prefix in frozen):
                p.requires_grad_(False)
        return model
    if frozen:
        raise ValueError("frozen is for trainable='full'; LoRA already freezes every base parameter")
    if trainable != "lora":
        raise ValueError(f"trainable must be 'lora' or 'full', got {trainable!r}")
    if not isinstance(model, PeftModel):
        family = FAMILY_OF_MODEL_TYPE.get(getattr(model.config, "model_type", ""), "qwen2_vl")
        config = lora_config(lora_target_modules or LORA_TARGETS[family], r=lora_r, alpha=lora_alpha, dropout=lora_dropout)
        config.modules_to_save = list(trainable_extra) or None
        check_targets(model, config)
        model = get_peft_model(model, config)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the PeftModel has no trainable parameters: load the adapter with is_trainable=True")
    return model


def _adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},  # biases, norm weights
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def _check_sharding(accelerator: Accelerator, save_every: int | None, resume: bool) -> None:
    if _sharded(accelerator) and (save_every or resume):
        raise NotImplementedError(
            "resumable checkpoints are implemented for single-process and DDP runs; under FSDP/DeepSpeed "
            "set save_every=None and resume=False (the final export still works)"
        )


def _sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def _trainable_state(accelerator: Accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {name for name, p in accelerator.unwrap_model(model).named_parameters() if p.requires_grad}
    state = accelerator.get_state_dict(model)  # a collective under sharding: every process calls it
    return {name: tensor for name, tensor in state.items() if name in names}


def _save(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    output_dir: Path,
    step: int,
    layout: dict[str, Any],
    metrics: MetricsLog | None,
    window: _Window,
    keep_last: int,
) -> None:
    weights = _trainable_state(accelerator, model)
    rng_states = gather_object([ckpt.capture_rng_state()]) if accelerator.num_processes > 1 else [ckpt.capture_rng_state()]
    if accelerator.is_main_process:
        trainer_state = {
            "step": step,
            "samples_seen": step * layout["batch_size"] * layout["grad_accum"] * layout["processes"],
            "log_offset": metrics.offset,
            "window": vars(window).copy(),
            **layout,
        }
        ckpt.save_checkpoint(
            output_dir,
            step,
            weights=weights,
            optimizer_state=optimizer.state_dict(),
            scheduler_state=scheduler.state_dict(),
            rng_states=rng_states,
            trainer_state=trainer_state,
            keep_last=keep_last,
        )
    accelerator.wait_for_everyone()


def _resume(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    layout: dict[str, Any],
    accelerator: Accelerator,
) -> tuple[int, int, _Window]:
    """Load a checkpoint into the unprepared model/optimizer/scheduler; (step, log offset, window)."""
    weights, state = ckpt.load_checkpoint(path)
    trainer = state["trainer"]
    changed = {k: (trainer[k], v) for k, v in layout.items() if trainer.get(k) != v}
    if changed:
        raise ValueError(f"cannot resume {path}: the data order depends on settings that changed (saved, now): {changed}")
    ckpt.load_weights(model, weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    ckpt.restore_rng_state(state["rng"][accelerator.process_index])
    log.info("resuming from %s (step %d)", path, trainer["step"])
    return trainer["step"], trainer["log_offset"], _Window(**trainer["window"])


def _evaluate(
    accelerator: Accelerator,
    model: torch.nn.Module,
    processor: Any,
    eval_fn: EvalFn,
    eval_rows: Any,
    step: int,
    metrics: MetricsLog | None,
) -> None:
    if accelerator.is_main_process:
        inner = accelerator.unwrap_model(model)
        inner.eval()
        with torch.no_grad():
            result = eval_fn(inner, processor, eval_rows)
        inner.train()
        metrics.write({"step": step, "eval": result})
        log.info("step %d eval %s", step, result)
    accelerator.wait_for_everyone()


def _finish(
    accelerator: Accelerator,
    model: torch.nn.Module,
    processor: Any,
    output_dir: Path,
    metrics: MetricsLog | None,
    train_args: dict[str, Any],
) -> None:
    """Export the model, the training arguments and the loss curve (main process)."""
    state_dict = accelerator.get_state_dict(model) if _sharded(accelerator) else None  # a collective
    if accelerator.is_main_process:
        metrics.close()
        ckpt.export_model(output_dir, accelerator.unwrap_model(model), processor, state_dict=state_dict)
        (output_dir / "training_args.json").write_text(json.dumps(train_args, indent=2, default=str))
        save_loss_curve(read_metrics(metrics.path), output_dir / "loss.png")
    accelerator.wait_for_everyone()


def _train_args(scope: dict[str, Any]) -> dict[str, Any]:
    """train()'s plain arguments, saved beside the export for provenance."""
    skip = {"model", "processor", "train_rows", "eval_fn", "eval_rows"}
    names = train.__code__.co_varnames[: train.__code__.co_argcount + train.__code__.co_kwonlyargcount]
    return {name: scope[name] for name in names if name not in skip}
