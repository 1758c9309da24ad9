"""RAF-DB basic (Li et al., CVPR 2017): 15,339 web faces labelled with 7 basic expressions,
12,271 train and 3,068 test.

Layout of `root`:
    EmoLabel/list_patition_label.txt   (sic) `train_00001.jpg 5`, labels 1..7 = Surprise,
                                       Fear, Disgust, Happiness, Sadness, Anger, Neutral
    Image/aligned/train_00001_aligned.jpg   (aligned=True, the default)
    Image/original/train_00001.jpg          (aligned=False)

One raw row and its record:
    train_00001.jpg 5
    ->
    FaceRecord(id="rafdb/train_00001.jpg", source="rafdb", split="train",
               image="/data/rafdb/Image/aligned/train_00001_aligned.jpg",
               expression="sad", meta={"label": 5})

Splits: the file name prefix says train or test. RAF-DB has no validation set: about 10% of
the train images (by a stable hash of the file name, `facellm.data.carve_validation`) become
validation. The compound-expression set (a different label file) is not read here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from facellm.data import (DUPLICATE, carve_validation, check_split, dataset_root, image_path, is_repeat,
                          read_lines, skip)
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.schema import FaceRecord, Split

LABEL_FILE = "EmoLabel/list_patition_label.txt"
LABELS: dict[str, str] = {"1": "surprise", "2": "fear", "3": "disgust", "4": "happy",
                          "5": "sad", "6": "anger", "7": "neutral"}
LAYOUT = f"""\
  {LABEL_FILE}   `train_00001.jpg 5` (1 Surprise .. 7 Neutral)
  Image/aligned/train_00001_aligned.jpg   (or Image/original/train_00001.jpg)"""


def rafdb_records(root: str | os.PathLike[str], split: Split | None = None,
                  aligned: bool = True, on_skip: OnSkip | None = None) -> Iterator[FaceRecord]:
    """RAF-DB basic records in label-file order.

    root: the RAF-DB basic folder (layout above). aligned: use the 100x100 aligned crops in
    Image/aligned/ (True) or the original photos in Image/original/ (False).
    on_skip: called as on_skip(image path, DUPLICATE) for a row naming an image an earlier
    row named (the row is skipped: its id would repeat).
    """
    check_split(split)
    image_dir = "Image/aligned" if aligned else "Image/original"
    root = dataset_root(root, "RAF-DB", [LABEL_FILE, image_dir + "/"], LAYOUT)
    return _records(root, root / image_dir, aligned, split, on_skip)


def _records(root: Path, images: Path, aligned: bool, split: Split | None,
             on_skip: OnSkip | None) -> Iterator[FaceRecord]:
    label_file = root / LABEL_FILE
    seen: set[str] = set()
    for line, text in read_lines(label_file):
        fields = text.split()
        if len(fields) != 2:
            raise DatasetFormatError(label_file, f"expected 2 fields (file name, label 1-7), "
                                     f"got {len(fields)}", line)
        name, label = fields
        if label not in LABELS:
            raise DatasetFormatError(label_file, f"label must be 1..7, got {label!r}", line)
        row_split = _split(name, label_file, line)
        repeat = is_repeat(seen, name)
        if split is not None and row_split != split:
            continue
        stem, dot, ext = name.rpartition(".")
        file_name = f"{stem}_aligned.{ext}" if aligned else name
        image = image_path(images, file_name, label_file, line)
        if repeat:
            skip(on_skip, image, DUPLICATE)
            continue
        yield FaceRecord(id=f"rafdb/{name}", source="rafdb", split=row_split, image=image,
                         expression=LABELS[label], meta={"label": int(label)})


def _split(name: str, label_file: Path, line: int) -> Split:
    if "." not in name:
        raise DatasetFormatError(label_file, f"expected a file name like train_00001.jpg, got "
                                 f"{name!r}", line)
    if name.startswith("train_"):
        return carve_validation(name)
    if name.startswith("test_"):
        return "test"
    raise DatasetFormatError(label_file, f"file name must start with train_ or test_, got "
                             f"{name!r}", line)
