"""FER2013 (Goodfellow et al., ICONIP 2013): 35,887 grey 48x48 faces, 7 expressions, with
the pixels inside the CSV.

Layout of `root`:
    fer2013.csv    header `emotion,pixels,Usage`; emotion 0..6 = Angry, Disgust, Fear, Happy,
                   Sad, Surprise, Neutral; pixels 2304 space-separated numbers (48x48, row
                   by row); Usage Training, PublicTest or PrivateTest

One raw row (line 2) and its record:
    0,70 80 82 72 58 58 60 63 54 58 60 48 89 115 121 ... ,Training
    ->
    FaceRecord(id="fer2013/0", source="fer2013", split="train",
               image=<PIL.Image.Image RGB 48x48>, expression="anger", meta={"label": 0})

The image is an in-memory PIL image (grey copied into three channels); the id is the 0-based
data row. Splits: Training -> train, PublicTest -> validation, PrivateTest -> test, the usual
protocol. The Kaggle variant `icml_face_data.csv` (columns `emotion, Usage, pixels`) reads
with `csv_file="icml_face_data.csv"`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from facellm.data import check_split, dataset_root, parse_number, read_csv
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.images import image_from_array
from facellm.schema import FaceRecord, Split

LABELS = ("anger", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGES: dict[str, Split] = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SIZE = (48, 48)
LAYOUT = """\
  fer2013.csv   `emotion,pixels,Usage`: 0..6, 2304 numbers 0..255, Training/PublicTest/PrivateTest"""


def fer2013_records(root: str | os.PathLike[str], split: Split | None = None,
                    csv_file: str = "fer2013.csv", on_skip: OnSkip | None = None
                    ) -> Iterator[FaceRecord]:
    """FER2013 records in CSV order, images decoded only for rows of the requested split.

    root: the folder holding `csv_file`. on_skip: unused (FER2013 has no skippable rows),
    accepted like every parser's.
    """
    check_split(split)
    root = dataset_root(root, "FER2013", [csv_file], LAYOUT)
    return _records(root / csv_file, split)


def _records(path: Path, split: Split | None) -> Iterator[FaceRecord]:
    rows = read_csv(path, ["emotion", "pixels", "Usage"])
    for index, (line, row) in enumerate(rows):
        label = parse_number(row["emotion"], int, "emotion", path, line)
        if not 0 <= label < len(LABELS):
            raise DatasetFormatError(path, f"emotion must be 0..6, got {label}", line)
        if row["Usage"] not in USAGES:
            raise DatasetFormatError(path, f"Usage must be one of {', '.join(USAGES)}, got "
                                     f"{row['Usage']!r}", line)
        row_split = USAGES[row["Usage"]]
        if split is not None and row_split != split:
            continue
        yield FaceRecord(id=f"fer2013/{index}", source="fer2013", split=row_split,
                         image=_image(row["pixels"], path, line), expression=LABELS[label],
                         meta={"label": label})


def _image(pixels: str, path: Path, line: int) -> Image.Image:
    try:
        values = np.array(pixels.split(), dtype=np.int64)
    except (ValueError, OverflowError):
        raise DatasetFormatError(path, "pixels must be whole numbers separated by spaces",
                                 line) from None
    try:
        return image_from_array(values, SIZE)
    except ValueError as e:
        raise DatasetFormatError(path, str(e), line) from None
