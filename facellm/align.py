"""Face alignment: 5 landmarks -> a similarity transform onto a canonical template -> a crop.

What face pipelines feed their models (ArcFace / SFace `alignCrop`, CelebA's img_align, RAF-DB's
aligned/): YuNet finds the face and its 5 landmarks, `cv2.estimateAffinePartial2D` fits the
rotation + uniform scale + shift that carries them onto the ArcFace template, and
`cv2.warpAffine` cuts the crop. One function serves the dataset build, evaluation and the
assistant/demo, so a model sees the same pixels in training, evaluation and the chat.

    spec = AlignSpec(size=112, margin=0.3)
    aligned, how = align_face(image, spec)      # PIL 112x112, Alignment (matrix, landmarks, ...)
    align_face(no_face_image, spec)             # raises facellm.fr.NoFaceError

Landmark order (YuNet's and the template's): image-left eye, image-right eye, nose tip,
image-left mouth corner, image-right mouth corner.

`margin` widens the ArcFace crop by that fraction of its side on every side (0: ArcFace's tight
112 crop of eyes, nose and mouth; 0.3: the whole head with hair, hat and ears, which attribute
questions need), then the crop is scaled to `size` pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

# ArcFace / insightface's 5 points for a 112x112 crop, (x, y) image pixels (shared/notes/field.md).
ARCFACE_112 = np.array([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041],
], dtype=np.float64)

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
# Smaller images are upscaled (bicubic) to this short side for landmark detection: on SynthFace
# at 160 px, YuNet's aligned-landmark scatter fell from 2.63 to 2.17 px (p95 7.1 -> 5.5) at 320;
# 480 and 640 were worse (bench/bench_align.py measures it).
DETECT_MIN_SIDE = 320


@dataclass(frozen=True)
class AlignSpec:
    """How to align. size: output side in pixels (the model's input size). margin: extra crop
    on each side, as a fraction of the ArcFace crop's side (see the module docstring)."""

    size: int = 112
    margin: float = 0.3

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 16:
            raise ValueError(f"align size must be an integer >= 16, got {self.size!r}")
        if not 0.0 <= float(self.margin) <= 1.0:
            raise ValueError(f"align margin must be in [0, 1], got {self.margin!r}")


@dataclass(frozen=True)
class Alignment:
    """What `align_face` did. matrix: 2x3, source pixels -> crop pixels. landmarks: (5, 2) the
    detected points in source pixels. confidence: the detector's score (1.0 for given points)."""

    matrix: np.ndarray
    landmarks: np.ndarray
    confidence: float
    spec: AlignSpec

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record of the transform, stored with each sample."""
        return {"matrix": np.round(self.matrix, 5).tolist(), "landmarks": np.round(self.landmarks, 2).tolist(),
                "confidence": round(float(self.confidence), 4), "size": self.spec.size,
                "margin": self.spec.margin}

    def landmarks_in_crop(self) -> np.ndarray:
        """The detected landmarks mapped into the crop, (5, 2)."""
        return apply(self.matrix, self.landmarks)


def template(spec: AlignSpec) -> np.ndarray:
    """The ArcFace template moved into a crop of `spec.size` pixels with `spec.margin`, (5, 2)."""
    pad = spec.margin * 112.0
    return (ARCFACE_112 + pad) * (spec.size / (112.0 + 2 * pad))


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 rotation + uniform scale + shift carrying points `src` onto `dst` (least squares,
    as alignCrop does); ValueError when the points are degenerate."""
    import cv2

    src, dst = np.asarray(src, np.float64).reshape(-1, 2), np.asarray(dst, np.float64).reshape(-1, 2)
    # LMEDS: a least-median fit, refined on the inliers, robust to one wild landmark
    matrix, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if matrix is None or not np.all(np.isfinite(matrix)):
        raise ValueError("the landmarks do not determine a similarity transform")
    return matrix


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """`matrix` (2x3) applied to points (n, 2)."""
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp(image: Image.Image, matrix: np.ndarray, size: int) -> Image.Image:
    """The `size` x `size` crop of `image` under `matrix`; outside the photo is black, as in alignCrop."""
    import cv2

    rgb = np.asarray(image.convert("RGB"))
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(0.5 / scale) if scale > 0 else 1
    if factor > 1:  # warpAffine has no INTER_AREA: shrink a large photo first, or the crop aliases
        small = cv2.resize(rgb, (max(1, rgb.shape[1] // factor), max(1, rgb.shape[0] // factor)),
                           interpolation=cv2.INTER_AREA)
        back = np.diag([rgb.shape[1] / small.shape[1], rgb.shape[0] / small.shape[0]])
        matrix, rgb = np.hstack([matrix[:, :2] @ back, matrix[:, 2:]]), small
    out = cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                         borderValue=(0, 0, 0))
    return Image.fromarray(out)


def align_to_landmarks(image: Image.Image, landmarks: np.ndarray, spec: AlignSpec = AlignSpec(),
                       confidence: float = 1.0) -> tuple[Image.Image, Alignment]:
    """Align `image` given its 5 landmarks (source pixels, the order of LANDMARK_NAMES)."""
    points = np.asarray(landmarks, np.float64).reshape(5, 2)
    matrix = similarity_matrix(points, template(spec))
    return warp(image, matrix, spec.size), Alignment(matrix, points, confidence, spec)


def align_face(image: Any, spec: AlignSpec = AlignSpec(), analyzer: Any = None) -> tuple[Image.Image, Alignment]:
    """Detect the largest face in `image` (PIL, path or RGB array) with YuNet and align it.

    Raises facellm.fr.NoFaceError when no face is found.
    """
    from facellm.fr import NoFaceError, get_analyzer
    from facellm.images import load_image

    pil = load_image(image) if isinstance(image, str) else image
    if isinstance(pil, np.ndarray):
        pil = Image.fromarray(pil)
    face = detect_landmarks(pil, analyzer or get_analyzer())
    if face is None:
        raise NoFaceError("no face found")
    landmarks, confidence = face
    return align_to_landmarks(pil, landmarks, spec, confidence)


def detect_landmarks(image: Image.Image, analyzer: Any) -> tuple[np.ndarray, float] | None:
    """YuNet's 5 landmarks (source pixels) and confidence of the largest face, None if none."""
    k = DETECT_MIN_SIDE / min(image.size)
    work = image.convert("RGB")
    if k > 1:
        work = work.resize((round(image.width * k), round(image.height * k)), Image.Resampling.BICUBIC)
    else:
        k = 1.0
    faces = analyzer.detect(work)
    if not faces:
        return None
    return faces[0].landmarks.astype(np.float64) / k, float(faces[0].confidence)
