"""How well YuNet-based alignment (facellm.align) finds and aligns SynthFace faces.

    python bench/bench_align.py [--n 300] [--sheet docs/synthface_aligned.png]

SynthFace images go through the same detector as real photos. For each pose setting this prints
the detection rate, YuNet's landmark error against SynthFace's exact landmarks (pixels of the
160 px render, and normalised by the inter-ocular distance, NME), and the scatter of the true
landmarks in the 112 px model input without and with alignment (baseline: the raw image resized
to 112 px), as a ratio. --sheet writes a contact sheet of raw and aligned images side by side.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from facellm import synthface as sf
from facellm.align import LANDMARK_NAMES, AlignSpec, align_to_landmarks, apply, detect_landmarks, similarity_matrix, template
from facellm.fr import get_analyzer

RENDER = 160
SPEC = AlignSpec(size=112, margin=0.3)


def _gt(record) -> np.ndarray:
    return np.array([record.meta["landmarks"][k] for k in LANDMARK_NAMES])


def measure(records) -> dict[str, float]:
    analyzer = get_analyzer()
    errors, iods, raw, aligned, seconds = [], [], [], [], 0.0
    for r in records:
        gt = _gt(r)
        raw.append(gt * SPEC.size / RENDER)
        t0 = time.perf_counter()
        face = detect_landmarks(r.image, analyzer)
        seconds += time.perf_counter() - t0
        if face is None:
            continue
        errors.append(np.linalg.norm(face[0] - gt, axis=1).mean())
        iods.append(np.linalg.norm(gt[0] - gt[1]))
        aligned.append(apply(similarity_matrix(face[0], template(SPEC)), gt))
    scatter = lambda pts: float(np.linalg.norm(np.asarray(pts) - np.mean(pts, axis=0), axis=2).mean())  # noqa: E731
    errors = np.asarray(errors)
    return {"detected": len(errors) / len(records), "err_mean": float(errors.mean()),
            "err_p95": float(np.percentile(errors, 95)), "nme": float((errors / np.asarray(iods)).mean()),
            "raw_scatter": scatter(raw), "aligned_scatter": scatter(aligned),
            "ms": 1000 * seconds / len(records)}


def contact_sheet(records, cols: int = 6) -> Image.Image:
    """Pairs of (raw render resized to 112, aligned crop), `cols` pairs per row."""
    tiles = []
    for r in records:
        face = detect_landmarks(r.image, get_analyzer())
        crop = align_to_landmarks(r.image, face[0], SPEC)[0] if face else Image.new("RGB", (112, 112))
        tiles.append((r.image.resize((112, 112), Image.Resampling.LANCZOS), crop))
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * 232, rows * 126), (255, 255, 255))
    draw, font = ImageDraw.Draw(sheet), ImageFont.load_default(size=10)
    for n, (raw, crop) in enumerate(tiles):
        x, y = (n % cols) * 232, (n // cols) * 126
        sheet.paste(raw, (x, y + 12))
        sheet.paste(crop, (x + 114, y + 12))
        draw.text((x + 2, y), "raw", fill=(0, 0, 0), font=font)
        draw.text((x + 116, y), "aligned", fill=(0, 0, 0), font=font)
    return sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="images per setting")
    parser.add_argument("--sheet", help="write a raw/aligned contact sheet here")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    per_id = 3
    settings = {"photo-like pose (default)": sf.Nuisance(), "no pose nuisance": sf.Nuisance.off()}
    print(f"| SynthFace at {RENDER} px | detected | landmark error px (mean / p95) | NME | "
          f"landmark scatter at 112 px: raw -> aligned | ratio | ms/image |")
    print("|---|---|---|---|---|---|---|")
    for name, nuisance in settings.items():
        records = sf.synthface_records("train", -(-args.n // per_id) * 10 // 8 + 1, per_id, seed=7,
                                       size=RENDER, nuisance=nuisance)[:args.n]
        m = measure(records)
        print(f"| {name} | {m['detected']:.3f} | {m['err_mean']:.2f} / {m['err_p95']:.2f} | {m['nme']:.3f} | "
              f"{m['raw_scatter']:.2f} -> {m['aligned_scatter']:.2f} | {m['aligned_scatter'] / m['raw_scatter']:.2f}x | "
              f"{m['ms']:.1f} |")
    if args.sheet:
        contact_sheet(sf.synthface_records("train", 40, 2, seed=7, size=RENDER)[:18]).save(args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
