"""Supervised fine-tuning of a vision-language chat model on instruction rows, with accelerate.

One loop for LoRA (the usual recipe: adapters on the language model's linear layers, vision
tower and projector frozen) and full fine-tuning (how the offline default's base is pre-trained
on SynthFace). Runs single-process or under `accelerate launch` (DDP, FSDP, DeepSpeed; see
finetune/accelerate/).

Data order is a seeded permutation per epoch, consumed as one stream: optimizer step s uses
stream positions [s*G, (s+1)*G) with G = batch_size * grad_accum * processes, each process
taking its own slice of every micro-batch (RankBatchSampler, behind a DataLoader whose workers
collate). The position is a pure function of the step, and checkpoints are accelerate's
save_state (weights, optimizer, scheduler, every rank's RNG) inside an atomic rename, which is
what makes `resume=True` reproduce an uninterrupted run exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from peft import PeftModel, get_peft_model
from torch.utils.data import DataLoader
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


@dataclass
class TrainConfig:
    """What train() does, saved beside the export as training_args.json.

    output_dir: receives the export (see checkpoint.export_model), checkpoints/, metrics.jsonl
        and loss.png. Only the main process writes there, except each rank's RNG state inside
        a checkpoint being written.
    steps, epochs: training length in optimizer steps, or in passes over the rows (exactly one).
    batch_size: rows per micro-batch per process. grad_accum: micro-batches per optimizer step.
    lr, warmup, lr_schedule: peak learning rate, linear warm-up steps, decay after warm-up (to 0).
    weight_decay: AdamW decay on matrices (biases and norm weights are never decayed).
    max_grad_norm: clip the global gradient norm to this; None = no clipping.
    loss_reduction: "token" = the mean over a micro-batch's labelled tokens (transformers'
        default), so a long answer outweighs a short one; "row" = each row's mean over its own
        labelled tokens, then the mean over rows, so a one-token answer ("Yes", a verdict) counts
        as much as a 150-token explanation (measured on the offline default: see README).
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
    num_workers: DataLoader worker processes that decode images and run the processor while the
        model trains (0 = on the training thread).
    save_every, keep_last: checkpoint every N optimizer steps (and at the end), keep the newest K.
    eval_every: every N steps and at the end, the main process logs eval_fn(model, processor,
        eval_rows) (a dict of numbers) with the model in eval mode.
    resume: continue from the newest complete checkpoint in output_dir (a fresh start if none).
    threads: torch CPU threads (default FACELLM_THREADS, else torch's default).
    log_every: write a metrics record every N steps (loss and timings averaged over them).
    mixed_precision: "auto" = bf16 on a CUDA GPU that supports it, "no" on CPU.
    progress: show a tqdm bar (main process only).
    """

    output_dir: str | os.PathLike
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    warmup: int = 0
    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float | None = 1.0
    loss_reduction: Literal["token", "row"] = "token"
    seed: int = 0
    trainable: Literal["lora", "full"] = "lora"
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] | None = None
    trainable_extra: Sequence[str] = ()
    frozen: Sequence[str] = ()
    max_length: int | None = None
    gradient_checkpointing: bool = False
    num_workers: int = 1
    save_every: int | None = None
    keep_last: int = 2
    eval_every: int | None = None
    resume: bool = False
    threads: int | None = None
    log_every: int = 1
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of steps and epochs")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.loss_reduction not in ("token", "row"):
            raise ValueError(f"loss_reduction must be 'token' or 'row', got {self.loss_reduction!r}")


def train(
    model: torch.nn.Module,
    processor: Any,
    train_rows: Sequence[dict[str, Any]],
    config: TrainConfig,
    *,
    eval_fn: EvalFn | None = None,
    eval_rows: Any = None,
) -> TrainResult:
    """Fine-tune `model` on `train_rows` as `config` says and export it to config.output_dir.

    LoRA layers are injected into `model` in place (peft), so give each run a freshly loaded
    model. The loss of a step is the mean over its micro-batches (and processes) of each
    micro-batch's mean over its labelled tokens.

    model, processor: a transformers vision-language model (or a PeftModel loaded with
        is_trainable=True, to continue training an adapter) and its processor.
    train_rows: instruction rows (docs/design.md): a datasets.Dataset or a list of dicts.
    eval_fn, eval_rows: the periodic evaluation (see TrainConfig.eval_every).
    """
    c = config
    output_dir = Path(c.output_dir)
    set_threads(c.threads)
    accelerator = _accelerator(c.grad_accum, c.mixed_precision)
    world = accelerator.num_processes
    total_steps = c.steps if c.steps is not None else math.ceil(c.epochs * len(train_rows) / (c.batch_size * c.grad_accum * world))
    checkpoint_dir = ckpt.latest_checkpoint(output_dir) if c.resume else None
    if not c.resume and ckpt.list_checkpoints(output_dir):
        raise FileExistsError(
            f"{output_dir} has checkpoints of an earlier run: pass resume=True to continue it, or use another output_dir"
        )
    layout = {"batch_size": c.batch_size, "grad_accum": c.grad_accum, "processes": world, "seed": c.seed,
              "rows": len(train_rows)}
    saved = ckpt.read_trainer_state(checkpoint_dir) if checkpoint_dir is not None else None
    if saved is not None:
        changed = {k: (saved.get(k), v) for k, v in layout.items() if saved.get(k) != v}
        if changed:
            raise ValueError(f"cannot resume {checkpoint_dir}: the data order depends on settings that changed "
                             f"(saved, now): {changed}")

    set_seed(c.seed)
    model = _make_trainable(
        model, c.trainable, c.lora_r, c.lora_alpha, c.lora_dropout, c.lora_target_modules, c.trainable_extra,
        c.gradient_checkpointing, c.frozen,
    )
    optimizer = adamw((p for p in model.parameters() if p.requires_grad), c.lr, c.weight_decay)
    # The scheduler is not prepared: accelerate's wrapper steps it once per process per step
    # (split_batches=False), and total_steps counts optimizer steps. It is checkpointed as an object.
    scheduler = get_scheduler(c.lr_schedule, optimizer, num_warmup_steps=c.warmup, num_training_steps=total_steps)
    if accelerator.distributed_type == DistributedType.DEEPSPEED:  # no dataloader is prepared to infer it from
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = c.batch_size
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    ckpt.save_trainable_only(accelerator)
    start_step, log_offset, window = 0, None, _Window()
    if saved is not None:
        accelerator.load_state(str(checkpoint_dir))  # weights, optimizer, scheduler, every rank's RNG
        start_step, log_offset, window = saved["step"], saved["log_offset"], _Window(**saved["window"])
        log.info("resuming from %s (step %d)", checkpoint_dir, start_step)

    loader = _data_loader(accelerator, processor, train_rows, c, total_steps)
    if start_step:
        loader = accelerator.skip_first_batches(loader, start_step * c.grad_accum)
    batches = iter(loader)
    metrics = MetricsLog(output_dir / "metrics.jsonl", resume_offset=log_offset) if accelerator.is_main_process else None
    bar = tqdm(total=total_steps, initial=start_step, desc="sft", disable=not (c.progress and accelerator.is_main_process))
    step_samples = c.batch_size * c.grad_accum * world
    last_loss = None
    model.train()
    for step in range(start_step + 1, total_steps + 1):
        tick = time.perf_counter()
        loss, grad_norm = _optimizer_step(accelerator, model, optimizer, batches, c.grad_accum, c.max_grad_norm,
                                          c.loss_reduction)
        scheduler.step()
        window.add(loss, grad_norm, time.perf_counter() - tick)
        bar.update(1)
        if step % c.log_every == 0 or step == total_steps:
            record = window.record(step, step * step_samples / len(train_rows), scheduler.get_last_lr()[0], step_samples)
            last_loss = record["loss"]
            bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{record['lr']:.2e}")
            if metrics:
                metrics.write(record)
        if eval_fn is not None and c.eval_every and (step % c.eval_every == 0 or step == total_steps):
            _evaluate(accelerator, model, processor, eval_fn, eval_rows, step, metrics)
        if c.save_every and (step % c.save_every == 0 or step == total_steps):
            trainer_state = {"step": step, "samples_seen": step * step_samples,
                             "log_offset": metrics.offset if metrics else None, "window": vars(window).copy(), **layout}
            ckpt.save_checkpoint(accelerator, output_dir, step, trainer_state, keep_last=c.keep_last)
    bar.close()
    del batches  # stops the loader's workers
    _finish(accelerator, model, processor, output_dir, metrics, asdict(c))
    return TrainResult(accelerator.unwrap_model(model), total_steps, last_loss, output_dir)


def _data_loader(accelerator: Accelerator, processor: Any, rows: Sequence[dict[str, Any]], c: TrainConfig,
                 total_steps: int) -> DataLoader:
    """This process's micro-batches, collated in `c.num_workers` worker processes. The loader has
    its own torch generator so that starting it (also after a resume) draws nothing from the
    global RNG that dropout uses."""
    sampler = RankBatchSampler(DataOrder(len(rows), c.seed), c.batch_size, accelerator.process_index,
                               accelerator.num_processes, total_steps * c.grad_accum)
    return DataLoader(
        rows, batch_sampler=sampler, collate_fn=VisionChatCollator(processor, max_length=c.max_length),
        num_workers=c.num_workers, persistent_workers=False, pin_memory=accelerator.device.type == "cuda",
        generator=torch.Generator().manual_seed(c.seed),
    )


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


class RankBatchSampler:
    """This process's micro-batches of row indices: global micro-batch m covers stream positions
    [m*B*W, (m+1)*B*W) of `order` (B = batch_size, W = processes) and rank r takes its slice
    [r*B, (r+1)*B). A batch sampler for torch's DataLoader, so resuming is
    accelerate.skip_first_batches over micro-batches already trained on."""

    def __init__(self, order: DataOrder, batch_size: int, rank: int, world: int, micro_batches: int) -> None:
        self.order, self.batch_size, self.rank, self.world = order, batch_size, rank, world
        self.micro_batches = micro_batches

    def __len__(self) -> int:
        return self.micro_batches

    def __iter__(self) -> Iterator[list[int]]:
        for m in range(self.micro_batches):
            yield self.order.take((m * self.world + self.rank) * self.batch_size, self.batch_size)


def _optimizer_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[dict[str, torch.Tensor]],
    grad_accum: int,
    max_grad_norm: float | None,
    reduction: str = "token",
) -> tuple[float, float]:
    """One optimizer step over grad_accum micro-batches; (loss averaged over micro-batches and
    processes, global gradient norm before clipping)."""
    losses, grad_norm = [], 0.0
    for _ in range(grad_accum):
        batch = {k: v.to(accelerator.device, non_blocking=True) for k, v in next(batches).items()}
        with accelerator.accumulate(model):
            loss = labelled_loss(model, batch, reduction)
            accelerator.backward(loss)  # divides by grad_accum
            if accelerator.sync_gradients:
                norm = accelerator.clip_grad_norm_(model.parameters(), max_grad_norm or float("inf"))
                grad_norm = float("nan") if norm is None else float(norm)  # None: DeepSpeed clips itself
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    mean_loss = accelerator.reduce(torch.stack(losses).mean(), reduction="mean")
    return float(mean_loss), grad_norm


def labelled_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], reduction: str = "token") -> torch.Tensor:
    """The model's causal-LM loss, with the LM head computed only at positions whose next token
    is labelled in some row (transformers' logits_to_keep), not at every position: with
    reduction="token" (the mean over labelled tokens) the same value as model(**batch).loss,
    measured 6-10% faster per step on the offline default (bench/bench_sft.py), and for a
    150k-token vocabulary it saves gigabytes of logits the loss never reads. reduction="row":
    the mean over rows of each row's mean over its labelled tokens (TrainConfig.loss_reduction)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = batch["labels"][:, 1:]
    keep = (targets != -100).any(dim=0).nonzero().squeeze(1)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    targets = targets[:, keep]
    if reduction == "token":
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
    per_token = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=-100, reduction="none")
    labelled = (targets != -100).sum(dim=1)
    rows = labelled > 0
    return (per_token.sum(dim=1)[rows] / labelled[rows]).mean()


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


def set_threads(threads: int | None) -> None:
    """torch's CPU threads: `threads`, else FACELLM_THREADS, else torch's default."""
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


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `params` with decay on matrices only (biases and norm weights are never decayed)."""
    params = list(params)
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def _sharded(accelerator: Accelerator) -> bool:
    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


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
