"""Landmarks in prompts, as Face-LLaVA gives them: the 5 detected points of each face, as
fractions of the aligned crop, appended to a row's prompt text (issue 13).

    landmark_text([[0.31, 0.42], [0.69, 0.42], [0.5, 0.6], [0.35, 0.78], [0.65, 0.78]])
    -> "Landmarks (x y, 0 to 1): left eye 0.31 0.42, right eye 0.69 0.42, nose 0.50 0.60,
        mouth left 0.35 0.78, mouth right 0.65 0.78."

A build with `landmarks_in_prompt: true` appends one such line per image (with "Image 1", "Image 2"
before them in pair rows); the points are YuNet's, mapped into the crop the model sees, so the
same text can be made for a photo at chat time (`landmark_prompt`). `TEXTS` holds the words, for
the offline default's tokenizer corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# facellm.align.LANDMARK_NAMES in words, image-left first.
POINT_WORDS = ("left eye", "right eye", "nose", "mouth left", "mouth right")
HEAD = "Landmarks (x y, 0 to 1):"


def landmark_text(points: Sequence[Sequence[float]], label: str = "") -> str:
    """One line for one face. points: (5, 2) as fractions of the crop side (clipped to [0, 1])."""
    if len(points) != len(POINT_WORDS):
        raise ValueError(f"expected {len(POINT_WORDS)} landmarks, got {len(points)}")
    parts = [f"{word} {min(max(float(x), 0.0), 1.0):.2f} {min(max(float(y), 0.0), 1.0):.2f}"
             for word, (x, y) in zip(POINT_WORDS, points)]
    return f"{label + ' ' if label else ''}{HEAD} {', '.join(parts)}."


def crop_points(alignment: dict[str, Any]) -> list[list[float]]:
    """An alignment record (facellm.align.Alignment.as_dict) -> its landmarks in the crop, as
    fractions of the crop side."""
    import numpy as np

    from facellm.align import apply

    pts = apply(np.asarray(alignment["matrix"], dtype=np.float64), np.asarray(alignment["landmarks"], dtype=np.float64))
    return (pts / float(alignment["size"])).tolist()


def landmark_prompt(prompt: str, alignments: Sequence[dict[str, Any] | None]) -> str:
    """`prompt` with a landmark line per image appended; unchanged when an image was not aligned
    (no points to give)."""
    if not alignments or any(a is None for a in alignments):
        return prompt
    if len(alignments) == 1:
        lines = [landmark_text(crop_points(alignments[0]))]
    else:
        lines = [landmark_text(crop_points(a), f"Image {i}") for i, a in enumerate(alignments, 1)]
    return prompt + "\n" + "\n".join(lines)


TEXTS: tuple[str, ...] = (
    landmark_text([[0.31, 0.42], [0.69, 0.42], [0.5, 0.6], [0.35, 0.78], [0.65, 0.78]]),
    landmark_text([[0.31, 0.42], [0.69, 0.42], [0.5, 0.6], [0.35, 0.78], [0.65, 0.78]], "Image 1"),
    "Image 2",
)
