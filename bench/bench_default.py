"""Time of the offline default's build (caption pre-training) and LoRA fine-tune on this
machine, at 1 and 2 torch threads (the baseline: 1 thread), measured over a few steps each
and projected to the step counts of the shipped configs.

    python bench/bench_default.py [--steps 40] [--identities 120]

It first builds small versions of the two datasets the shipped configs train on
(instruct_data/configs/synthface_pretrain.yaml and synthface.yaml with --identities identities)
in a temporary FACELLM_HOME, so it needs nothing the main job made; a step costs the same on
fewer rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "facellm.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"facellm {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def seconds_per_step(metrics: Path, skip: int) -> float:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    times = [r["s_per_step"] for r in rows if r["step"] > skip]
    return sum(times) / len(times)


def build_data(folder: Path, identities: int, env: dict[str, str]) -> tuple[Path, Path]:
    """(caption pre-training data, fine-tuning data), small SynthFace builds of the shipped data configs."""
    pairs = f"{{train: {identities * 2}, validation: {identities // 4}, test: {identities // 4}}}"
    made = []
    for config, name in (("synthface_pretrain.yaml", "pretrain"), ("synthface.yaml", "finetune")):
        out = folder / name
        run(["data", "build", "--config", f"instruct_data/configs/{config}", f"dataset_args.n_identities={identities}",
             f"dataset_args.pairs_per_split={pairs}", f"output_dir={out}", "num_proc=2"], env)
        made.append(out)
    return made[0], made[1]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--identities", type=int, default=120, help="SynthFace identities of each dataset built")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    base_cfg = yaml.safe_load((ROOT / "finetune/configs/facellm_tiny_base.yaml").read_text())
    lora_cfg = yaml.safe_load((ROOT / "finetune/configs/facellm_tiny.yaml").read_text())
    results = {}
    with tempfile.TemporaryDirectory() as data_home:
        pretrain_data, finetune_data = build_data(Path(data_home), args.identities, {**os.environ, "FACELLM_HOME": data_home})
        for threads in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "FACELLM_HOME": tmp, "FACELLM_THREADS": str(threads)}
                run(["models", "build-default", "--config", "finetune/configs/facellm_tiny_base.yaml",
                     f"data={pretrain_data}", f"steps={args.steps}", f"threads={threads}"], env)
                pre = next(Path(tmp, "models").glob("facellm_tiny/metrics.jsonl"))
                run(["train", "--config", "finetune/configs/facellm_tiny.yaml", f"dataset={finetune_data}",
                     f"output_dir={tmp}/lora", f"train.steps={args.steps}", f"train.threads={threads}",
                     "train.eval_every=null", "train.save_every=null", "train.log_every=1"], env)
                results[threads] = (seconds_per_step(pre, 5),
                                    seconds_per_step(Path(tmp, "lora", "metrics.jsonl"), 5))
    print(f"{'threads':>8}{'pretrain s/step':>17}{'LoRA s/step':>13}{'projected total (min)':>23}{'vs 1 thread':>13}")
    base_total = None
    for threads, (pre, lora) in results.items():
        total = (pre * base_cfg["steps"] + lora * lora_cfg["train"]["steps"]) / 60
        base_total = base_total or total
        print(f"{threads:>8}{pre:>17.3f}{lora:>13.3f}{total:>23.1f}{base_total / total:>12.2f}x")
    print(f"(projected for {base_cfg['steps']} pre-training and {lora_cfg['train']['steps']} LoRA steps, batch "
          f"{base_cfg['batch_size']} / {lora_cfg['train']['batch_size']})")


if __name__ == "__main__":
    main()
