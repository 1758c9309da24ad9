"""Instruction-dataset build throughput on SynthFace: samples/s and rows/s of
`facellm.data.build.build_dataset` with every face task, against a baseline measured in the
same run: rendering the same samples and writing each image as a PNG file (no tasks, no
parquet, no datasets), the least any build of these images has to do.

    python bench/bench_build.py --identities 60 --images 4 --pairs 200
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

from facellm.data.build import build_dataset
from facellm.data.sources import synthface_source
from facellm.tasks import AgeTask, AttributeTask, ExpressionTask, VerificationTask


def baseline(source, folder: Path) -> tuple[int, float]:
    start, n = time.perf_counter(), 0
    for split in ("train", "validation", "test"):
        for sample in source.samples(split):
            images = [sample.first.image, sample.second.image] if hasattr(sample, "first") else [sample.image]
            for k, image in enumerate(images):
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                (folder / f"{n}-{k}.png").write_bytes(buf.getvalue())
            n += 1
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=60)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=200, help="pairs per split")
    args = parser.parse_args()
    pairs = {"train": args.pairs, "validation": args.pairs // 4, "test": args.pairs // 4}
    tasks = {"attributes": (AttributeTask(), None), "expression": (ExpressionTask(), None),
             "age": (AgeTask(), None), "verification": (VerificationTask(0.6), None)}
    with tempfile.TemporaryDirectory() as tmp:
        # separate sources: each renders its own images (the source caches a split's samples)
        render = synthface_source(args.identities, args.images, pairs)
        n_base, t_base = baseline(render, Path(tmp))
        build = synthface_source(args.identities, args.images, pairs)
        start = time.perf_counter()
        report = build_dataset(build.samples, tasks, Path(tmp) / "ds", progress=False)
        t_build = time.perf_counter() - start
    rows = sum(sum(s["rows"].values()) for s in report["splits"].values())
    print(f"{'what':<44}{'samples':>9}{'rows':>8}{'s':>8}{'samples/s':>11}{'rows/s':>9}{'vs baseline':>13}")
    print(f"{'baseline: render + write PNG files':<44}{n_base:>9}{'-':>8}{t_base:>8.2f}{n_base / t_base:>11.1f}"
          f"{'-':>9}{1.0:>12.2f}x")
    print(f"{'build_dataset (4 tasks, shards, DatasetDict)':<44}{n_base:>9}{rows:>8}{t_build:>8.2f}"
          f"{n_base / t_build:>11.1f}{rows / t_build:>9.1f}{t_base / t_build:>12.2f}x")


if __name__ == "__main__":
    main()
