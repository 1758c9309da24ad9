"""Instruction rows and the tiny dev model for the training tests (also imported by the
scripts these tests run in subprocesses)."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image


QUESTIONS = ("Is the person wearing glasses?", "Is the person smiling?")
ANSWERS = ("Yes, glasses.", "No.", "Match Verdict: Match", "Match Verdict: Non-Match")


def face(seed: int, size: int = 56) -> Image.Image:
    """A random RGB image; 56x56 becomes 4 image tokens for Qwen2-VL."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def row(i: int, n_images: int = 1) -> dict[str, Any]:
    """One instruction row (docs/design.md layout) with `n_images` images."""
    question = QUESTIONS[i % 2] if n_images == 1 else "Are these the same person?"
    answer = ANSWERS[i % 2] if n_images == 1 else ANSWERS[2 + i % 2]
    user = [{"type": "image", "text": None}] * n_images + [{"type": "text", "text": question}]
    return {
        "id": f"s{i}#task#v",
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": [{"type": "text", "text": answer}]},
        ],
        "images": [face(100 * i + k, 56 + 28 * k) for k in range(n_images)],
    }


def rows(n: int) -> list[dict[str, Any]]:
    """n rows alternating 1 and 2 images."""
    return [row(i, 1 + i % 2) for i in range(n)]
