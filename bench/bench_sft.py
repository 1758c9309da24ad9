"""Step time and peak memory of facellm's LoRA SFT loop against TRL's SFTTrainer, one run.

    python bench/bench_sft.py [--model facellm_tiny] [--steps 30] [--batch-size 8]

--model is a registry name or a model folder, loaded by facellm's own loader; the default,
facellm_tiny, is the offline default base (built or installed under FACELLM_HOME, else the copy
that ships in the package), so the bench runs on a fresh clone.

Both train the same model on the same rows (112 px faces, 1 or 2 images per row, a
verification-style answer) with the same LoRA (r 16, alpha 32, no dropout, the language model's
attention and MLP projections), AdamW, lr 2e-4, no accumulation, max_length=None, fp32 on CPU,
gradient checkpointing off for both unless --gradient-checkpointing (TRL's SFTConfig turns it
on by default, which alone makes TRL's steps slower).
Each runs in its own subprocess, which reports its peak RSS (getrusage ru_maxrss), its RSS
once the model is loaded, and the largest peak RSS of its finished children (facellm's
DataLoader workers, which collate while the model trains; TRL collates in its main process).
s/step is the median over the steps after --warmup-steps, timed as the interval between
consecutive optimizer-step ends (data collation included for both). TRL computes the loss on
every token (its default for `messages` rows unless the chat template has {% generation %}
markers); facellm on the assistant turns only, with the LM head evaluated only where the loss
reads it: the same transformer forward/backward.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
from PIL import Image

IMPLEMENTATIONS = ("facellm", "trl")
LORA = dict(r=16, lora_alpha=32, lora_dropout=0.0, bias="none")
LR = 2e-4
ANSWER = ("Match Verdict: {v}\nSimilarities: similar face shape and hair colour.\n"
          "Differences: none visible.\nOverall Reasoning: the faces agree.")


def bench_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """n instruction rows (docs/design.md layout), alternately 1 and 2 random 112 px images."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        n_images = 1 + i % 2
        images = [Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)) for _ in range(n_images)]
        question = "Is the person wearing glasses?" if n_images == 1 else "Are these the same person?"
        answer = ("Yes." if i % 4 == 0 else "No.") if n_images == 1 else ANSWER.format(v="Match" if i % 4 == 1 else "Non-Match")
        rows.append({
            "messages": [
                {"role": "user", "content": [{"type": "image", "text": None}] * n_images + [{"type": "text", "text": question}]},
                {"role": "assistant", "content": [{"type": "text", "text": answer}]},
            ],
            "images": images,
        })
    return rows


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def load(model: str, threads: int):
    import torch

    from facellm.models.loading import load_model

    torch.set_num_threads(threads)
    return load_model(model, dtype=torch.float32, device="cpu")


def run_facellm(args: argparse.Namespace) -> dict[str, Any]:
    from facellm.training.logging import read_metrics
    from facellm.training.sft import DEFAULT_LORA_TARGETS, TrainConfig, train

    model, processor = load(args.model, args.threads)
    loaded_rss = rss_mb()
    with tempfile.TemporaryDirectory() as out:
        train(model, processor, bench_rows(args.rows), TrainConfig(
            output_dir=out, steps=args.steps, batch_size=args.batch_size, lr=LR, lr_schedule="constant",
            max_grad_norm=1.0, lora_r=LORA["r"], lora_alpha=LORA["lora_alpha"], lora_dropout=LORA["lora_dropout"],
            lora_target_modules=DEFAULT_LORA_TARGETS, threads=args.threads, num_workers=args.num_workers,
            gradient_checkpointing=args.gradient_checkpointing, mixed_precision="no", progress=False))
        records = [r for r in read_metrics(os.path.join(out, "metrics.jsonl")) if "loss" in r]
    return {"step_s": [r["s_per_step"] for r in records], "loss": [r["loss"] for r in records], "loaded_rss_mb": loaded_rss}


def run_trl(args: argparse.Namespace) -> dict[str, Any]:
    import datasets
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from facellm.training.sft import DEFAULT_LORA_TARGETS

    model, processor = load(args.model, args.threads)
    loaded_rss = rss_mb()

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.ends = [time.perf_counter()]
            self.losses: list[float] = []

        def on_step_end(self, *_, **__) -> None:
            self.ends.append(time.perf_counter())

        def on_log(self, _args, _state, _control, logs=None, **__) -> None:
            if logs and "loss" in logs:
                self.losses.append(logs["loss"])

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        config = SFTConfig(
            output_dir=out, max_steps=args.steps, per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=1, learning_rate=LR, lr_scheduler_type="constant", warmup_steps=0,
            weight_decay=0.0, max_grad_norm=1.0, max_length=None, logging_steps=1, save_strategy="no",
            report_to="none", use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0, seed=0,
            disable_tqdm=True, gradient_checkpointing=args.gradient_checkpointing,
        )
        trainer = SFTTrainer(
            model=model, args=config, train_dataset=datasets.Dataset.from_list(bench_rows(args.rows)),
            processing_class=processor,
            peft_config=LoraConfig(target_modules=DEFAULT_LORA_TARGETS, task_type="CAUSAL_LM", **LORA),
            callbacks=[timer],
        )
        timer.ends = [time.perf_counter()]
        trainer.train()
    return {"step_s": list(np.diff(timer.ends)), "loss": timer.losses, "loaded_rss_mb": loaded_rss}


def worker(args: argparse.Namespace) -> None:
    result = (run_facellm if args.worker == "facellm" else run_trl)(args)
    result["peak_rss_mb"] = peak_rss_mb()
    result["workers_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest
    print("RESULT " + json.dumps(result), flush=True)


def measure(impl: str, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", impl, "--model", args.model, "--steps", str(args.steps),
               "--batch-size", str(args.batch_size), "--rows", str(args.rows), "--threads", str(args.threads),
               "--num-workers", str(args.num_workers)]
    if args.gradient_checkpointing:
        command.append("--gradient-checkpointing")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{impl} worker failed:\n{done.stderr[-4000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.split(" ", 1)[1])
    timed = result["step_s"][args.warmup_steps:]
    result["median_s"] = statistics.median(timed)
    result["mean_s"] = statistics.fmean(timed)
    return result


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    base, trl = results["facellm"], results["trl"]
    lines = [
        f"model {args.model}, {args.steps} steps (median over the last {args.steps - args.warmup_steps}), "
        f"batch {args.batch_size}, {args.threads} thread(s), gradient checkpointing {'on' if args.gradient_checkpointing else 'off'}, "
        f"facellm DataLoader workers {args.num_workers}",
        f"{'':10} {'s/step':>9} {'mean':>9} {'rows/s':>8} {'RSS loaded':>11} {'peak RSS':>9} {'worker peak':>11} {'first loss':>10}",
    ]
    for impl, r in results.items():
        worker = f"{r['workers_peak_rss_mb']:9.0f}MB" if r["workers_peak_rss_mb"] else f"{'-':>11}"
        lines.append(f"{impl:10} {r['median_s']:9.4f} {r['mean_s']:9.4f} {args.batch_size / r['median_s']:8.1f} "
                     f"{r['loaded_rss_mb']:9.0f}MB {r['peak_rss_mb']:7.0f}MB {worker} {r['loss'][0]:10.4f}")
    lines.append(f"ratio facellm/trl: s/step {base['median_s'] / trl['median_s']:.2f}x (target <= 0.8), "
                 f"peak RSS {base['peak_rss_mb'] / trl['peak_rss_mb']:.2f}x (target <= 1.0; main processes), "
                 f"peak RSS above loaded {(base['peak_rss_mb'] - base['loaded_rss_mb']) / max(trl['peak_rss_mb'] - trl['loaded_rss_mb'], 1):.2f}x")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="facellm_tiny", help="a registry name or a local model folder")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows", type=int, default=64, help="distinct rows cycled through")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("FACELLM_THREADS", "1")))
    parser.add_argument("--num-workers", type=int, default=1, help="facellm's DataLoader workers (TRL: 0, its default)")
    parser.add_argument("--warmup-steps", type=int, default=5, help="steps left out of the timing")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="for both implementations")
    parser.add_argument("--worker", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.steps <= args.warmup_steps:
        parser.error("--steps must exceed --warmup-steps")
    results = {impl: measure(impl, args) for impl in IMPLEMENTATIONS}
    print(table(results, args))


if __name__ == "__main__":
    main()
