"""SynthFace throughput on one core: rendering, records and verification pairs.

    python bench/bench_synthface.py --n 300

Images: each row's rate is compared with a baseline measured in the same run at the same size,
a solid PIL image encoded as PNG (the cheapest way to produce an image file of that size).
Pairs: compared with the cosine of two cached 128-d embeddings, the floor of any FR score.
Rates are per CPU-second of this process (time.process_time), so other jobs on a shared
machine slow them less than wall-clock rates; still single runs: compare ratios.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from facellm import synthface as sf


def rate(fn: Callable[[int], object], n: int) -> float:
    """Items per CPU-second of fn(i) over i in range(n), after one warm-up call."""
    fn(0)
    start = time.process_time()
    for i in range(n):
        fn(i)
    return n / (time.process_time() - start)


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def image_rows(n: int, size: int) -> list[tuple[str, int, float]]:
    rng = np.random.default_rng(0)
    scenes = []
    for i in range(n):
        ident = sf.identity_at(0, i)
        scenes.append((ident, sf.sample_look(rng, ident), sf.sample_nuisance(rng)))
    records = sf.iter_synthface_records("train", 10 * n, 1, 0, size)
    solid = lambda i: png(Image.new("RGB", (size, size), (i % 256, 90, 160)))  # noqa: E731
    return [
        ("baseline: solid image + PNG", size, rate(solid, n)),
        ("render, no supersampling", size,
         rate(lambda i: sf.render(*scenes[i], size=size, supersample=1), n)),
        ("render (supersample 2, default)", size, rate(lambda i: sf.render(*scenes[i], size=size), n)),
        ("render + PNG", size, rate(lambda i: png(sf.render(*scenes[i], size=size)), n)),
        ("record (sample + render + GT)", size, rate(lambda i: next(records), n)),
    ]


def pair_rows(n: int) -> list[tuple[str, int, float]]:
    records = sf.synthface_records("train", max(60, n // 2), 4, 0)
    cache = [sf.image_embedding(r) for r in records]
    m = len(records)
    cosine = lambda i: float(cache[i % m] @ cache[(i * 7 + 1) % m])  # noqa: E731
    score = lambda i: sf.fr_score(records[i % m], records[(i * 7 + 1) % m])  # noqa: E731
    return [
        ("baseline: cosine of 2 cached embeddings", 0, rate(cosine, n)),
        ("fr_score (embeddings from meta)", 0, rate(score, n)),
        ("synthface_pairs (sampling + fr_score)", 0,
         n / timed(lambda: sf.synthface_pairs(records, n, seed=0))),
    ]


def timed(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def print_table(rows: list[tuple[str, int, float]], unit: str) -> None:
    print(f"| {'what':<42} | size | {unit + '/s':>10} | rate / baseline |")
    print(f"|{'-' * 44}|------|{'-' * 12}|-----------------|")
    base = {}
    for what, size, per_s in rows:
        base.setdefault(size, per_s)  # the first row of each size is its baseline
        shown = str(size) if size else "-"
        print(f"| {what:<42} | {shown:>4} | {per_s:>10.1f} | {per_s / base[size]:>14.3g}x |")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="items per measurement")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"SynthFace bench, n={args.n}, one process, rates per CPU-second, load average {load:.2f}\n")
    print_table(image_rows(args.n, 112) + image_rows(args.n, 224), "images")
    print()
    print_table(pair_rows(args.n), "pairs")


if __name__ == "__main__":
    main()
