"""Runs facellm's SFT loop on the tiny model for the subprocess tests (SIGKILL + resume, DDP).

    python tests/training/run_sft.py --out DIR --steps 8 [--resume] [--block-at 5]
    accelerate launch --config_file finetune/accelerate/cpu_ddp.yaml tests/training/run_sft.py --out DIR --report

--block-at N: at step N the eval callback writes DIR.blocked and sleeps, so the test can kill
the run at a known point. --crash-at N: at step N the main process dies (os._exit), as a
machine failure would take one rank of a DDP run down. --report: every rank writes DIR.report-RANK.json with its trainable
weights' hash and the files it wrote under DIR (seen through an audit hook).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from tiny_rows import rows  # noqa: E402

SETTINGS = dict(batch_size=2, grad_accum=2, lr=1e-3, warmup=2, lora_dropout=0.1, save_every=2, seed=3, threads=1)
N_ROWS = 6


def watch_writes(out: Path) -> list[str]:
    """Record every write-like file-system call under `out` made by this process."""
    seen: list[str] = []
    root = str(out.resolve())
    write_events = {"os.mkdir", "os.rename", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"}

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        elif event in write_events:
            path, writing = args[0], True
        else:
            return
        if writing and isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.abspath(os.fsdecode(path))
            if path.startswith(root):
                seen.append(f"{event} {path}")

    sys.addaudithook(hook)
    return seen


def eval_fn(block_at: int | None, out: Path, crash_at: int | None = None):
    """With eval_every=1 the k-th call is at step k (of a run that did not resume)."""
    calls = 0

    def evaluate(model, processor, eval_rows) -> dict:
        nonlocal calls
        calls += 1
        if calls == crash_at:
            os._exit(3)
        if calls == block_at:
            Path(f"{out}.blocked").write_text("blocked")
            time.sleep(600)
        return {"rows": len(eval_rows)}

    return evaluate


def run(out: Path, steps: int, resume: bool = False, block_at: int | None = None, crash_at: int | None = None):
    """train() on the tiny model with SETTINGS; the TrainResult."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from facellm.training.sft import TrainConfig, train

    torch.set_num_threads(1)
    model_dir = os.environ["FACELLM_TEST_MODEL"]  # set by tests/training/conftest.py
    processor = AutoProcessor.from_pretrained(model_dir)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    config = TrainConfig(output_dir=out, steps=steps, resume=resume, eval_every=1, progress=False, **SETTINGS)
    return train(model, processor, rows(N_ROWS), config, eval_fn=eval_fn(block_at, out, crash_at), eval_rows=rows(2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--block-at", type=int)
    parser.add_argument("--crash-at", type=int)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    writes = watch_writes(args.out) if args.report else []
    result = run(args.out, args.steps, args.resume, args.block_at, args.crash_at)
    if args.report:
        digest = hashlib.sha256()
        for name, p in sorted(result.model.named_parameters()):
            if p.requires_grad:
                digest.update(name.encode() + p.detach().numpy().tobytes())
        rank = int(os.environ.get("RANK", "0"))
        report = {"rank": rank, "weights": digest.hexdigest(), "writes": writes}
        Path(f"{args.out}.report-{rank}.json").write_text(json.dumps(report))  # beside out, not watched


if __name__ == "__main__":
    main()
