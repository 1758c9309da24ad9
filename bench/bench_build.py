"""Instruction-dataset build throughput on SynthFace at num_proc 1 and 2, in one run.

    python bench/bench_build.py [--identities 400] [--num-proc 2]

Builds the same dataset as instruct_data/configs/synthface.yaml (160 px faces aligned to 112 px,
every face task and variant, about as many pairs as records), scaled down to --identities, once
with num_proc=1 (the baseline) and once with --num-proc, checks that both datasets are identical,
and prints wall-clock seconds (the worker processes' start included), CPU seconds (this process
and its workers), samples/s, rows/s, bytes per row on disk and the speed-up, then what 1M rows would take at the measured rates. Imports
and the face detector load before the timing. Wall-clock rates on a machine shared with other
jobs are low and the ratio depressed: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from facellm.align import AlignSpec
from facellm.data.build import build_dataset, load_built
from facellm.data.sources import synthface_source
from facellm.tasks import AgeTask, AttributeTask, ExpressionTask, VerificationTask

ALIGN = AlignSpec(size=112, margin=0.3)
MILLION = 1_000_000


def tasks() -> dict[str, tuple[Any, tuple[str, ...] | None]]:
    """instruct_data/configs/synthface.yaml's tasks (the threshold is the config's usual one)."""
    return {"attributes": (AttributeTask(questions_per_sample=1), ("yesno", "describe")),
            "expression": (ExpressionTask(), None), "age": (AgeTask(), None),
            "verification": (VerificationTask(0.63), ("images_only", "score", "score_decision"))}


def cpu_seconds() -> float:
    """CPU time of this process and of its children that ended (the build's workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(identities: int, num_proc: int, out: Path) -> dict[str, float]:
    pairs = {"train": round(identities * 6), "validation": round(identities * 0.7), "test": round(identities * 0.8)}
    source = synthface_source(identities, 6, pairs, seed=0, size=160)
    n_samples = sum(len(list(source.samples(split))) for split in ("train", "validation", "test"))
    wall, cpu = time.perf_counter(), cpu_seconds()
    report = build_dataset(source.samples, tasks(), out, shard_size=100, progress=False, align=ALIGN,
                           num_proc=num_proc)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    rows = sum(sum(info["rows"].values()) for info in report["splits"].values())
    return {"samples": n_samples, "rows": rows, "wall": wall, "cpu": cpu, "bytes": folder_bytes(out / "dataset")}


def warm_up(folder: Path) -> None:
    """Imports (datasets, OpenCV) and the face detector load outside the timing."""
    build_dataset(synthface_source(10, 1, {"train": 1, "validation": 0, "test": 0}, size=160).samples, tasks(),
                  folder, progress=False, align=ALIGN, splits=("train",))


def same_dataset(a: Path, b: Path) -> bool:
    da, db = load_built(a), load_built(b)
    return set(da) == set(db) and all(da[s].data.table.equals(db[s].data.table) for s in da)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=400, help="SynthFace identities (6 images each; fewer and the workers' start-up dominates)")
    parser.add_argument("--num-proc", type=int, default=2, help="processes of the measured build")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        warm_up(Path(tmp, "warm"))
        load_before = os.getloadavg()
        results = {n: measure(args.identities, n, Path(tmp, f"np{n}")) for n in (1, args.num_proc)}
        load_after = os.getloadavg()
        identical = same_dataset(Path(tmp, "np1"), Path(tmp, f"np{args.num_proc}"))
    base = results[1]
    print(f"SynthFace build, {args.identities} identities x 6 images at 160 px aligned to 112 px, "
          f"{base['samples']} samples -> {base['rows']} rows; {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.2f} before / {load_after[0]:.2f} after (1 min)\n")
    print("| num_proc | wall s | CPU s | samples/s | rows/s | bytes/row | speed-up |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in results.items():
        print(f"| {n} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['samples'] / r['wall']:.1f} | {r['rows'] / r['wall']:.1f} "
              f"| {r['bytes'] / r['rows']:.0f} | {base['wall'] / r['wall']:.2f}x |")
    other = results[args.num_proc]
    print(f"\ndatasets identical: {'yes' if identical else 'NO'}")
    print(f"CPU-time estimate of the speed-up with a free core per process: {args.num_proc} x {base['cpu']:.1f} / "
          f"{other['cpu']:.1f} = {args.num_proc * base['cpu'] / other['cpu']:.2f}x (an estimate, not a measurement: "
          "above num_proc when contention inflated the baseline's CPU time)")
    per_row = base["bytes"] / base["rows"]
    print("1M rows at these rates: " + ", ".join(
        f"num_proc {n} {MILLION / (r['rows'] / r['wall']) / 3600:.1f} h" for n, r in results.items())
          + f"; dataset {per_row * MILLION / 2**30:.1f} GiB (the shards take as much again until the build ends)")


if __name__ == "__main__":
    main()
