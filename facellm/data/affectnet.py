"""AffectNet (Mollahosseini et al., 2017), manually annotated part: web faces labelled with
expression, valence and arousal; 11 labels of which the first 7 are basic expressions.

Layout of `root`:
    training.csv     header `subDirectory_filePath,face_x,face_y,face_width,face_height,
    validation.csv           facial_landmarks,expression,valence,arousal`; expression 0..10 =
                     Neutral, Happy, Sad, Surprise, Fear, Disgust, Anger, Contempt, None,
                     Uncertain, Non-Face
    Manually_Annotated_Images/<subDirectory_filePath>   e.g. 689/737db24...ca.jpg

One raw row and its record (landmarks shortened):
    689/737db24...ca.jpg,134,134,899,899,181.64;530.91;188.32;...,1,0.785714,-0.055556
    ->
    FaceRecord(id="affectnet/689/737db24...ca.jpg", source="affectnet", split="train",
               image="/data/affectnet/Manually_Annotated_Images/689/737db24...ca.jpg",
               expression="happy",
               meta={"label": 1, "face_box": [134, 134, 899, 899],
                     "valence": 0.785714, "arousal": -0.055556})

Labels 0..6 map to `facellm.schema.EXPRESSIONS` (same order). Rows labelled 7..10 (Contempt,
None, Uncertain, Non-Face) are not basic expressions: they go to `on_skip` and are skipped.
The 68 landmarks are not kept.

Splits. AffectNet's test set is not public, so validation.csv is our test
split; about 10% of training.csv (by a stable hash of subDirectory_filePath) becomes
validation, the rest train.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from facellm.data import (DUPLICATE, carve_validation, check_split, dataset_root, image_path, is_repeat,
                          parse_number, read_csv, skip)
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.schema import EXPRESSIONS, FaceRecord, Split

LABELS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger",
          "contempt", "none", "uncertain", "non-face")
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
           "facial_landmarks", "expression", "valence", "arousal")
IMAGE_DIR = "Manually_Annotated_Images"
FILES: dict[str, str] = {"training.csv": "train", "validation.csv": "test"}
LAYOUT = f"""\
  training.csv     `{','.join(COLUMNS)}`
  validation.csv   (same columns; AffectNet's validation set, our test split)
  {IMAGE_DIR}/<subDirectory_filePath>"""


def affectnet_records(root: str | os.PathLike[str], split: Split | None = None,
                      on_skip: OnSkip | None = None) -> Iterator[FaceRecord]:
    """AffectNet records with a basic expression: training.csv rows, then validation.csv rows.

    root: the AffectNet folder (layout above); only the CSV files the split needs must exist.
    on_skip: called as on_skip(image path, reason) for each row labelled 7..10 and each row
    naming an image an earlier row named (DUPLICATE: its id would repeat).
    """
    check_split(split)
    files = [f for f, file_split in FILES.items()
             if split is None or (file_split == "test") == (split == "test")]
    root = dataset_root(root, "AffectNet", [*files, IMAGE_DIR + "/"], LAYOUT)
    seen: set[str] = set()
    return (record for f in files for record in _records(root, root / f, split, seen, on_skip))


def _records(root: Path, path: Path, split: Split | None, seen: set[str],
             on_skip: OnSkip | None) -> Iterator[FaceRecord]:
    for line, row in read_csv(path, COLUMNS):
        name = row["subDirectory_filePath"]
        row_split = carve_validation(name) if FILES[path.name] == "train" else "test"
        repeat = is_repeat(seen, name)
        if split is not None and row_split != split:
            continue
        label = parse_number(row["expression"], int, "expression", path, line)
        if not 0 <= label < len(LABELS):
            raise DatasetFormatError(path, f"expression must be 0..10, got {label}", line)
        image = image_path(root / IMAGE_DIR, name, path, line)
        if LABELS[label] not in EXPRESSIONS:
            if on_skip is not None:
                on_skip(image, f"AffectNet label {label} ({LABELS[label]}) is not a basic expression")
            continue
        if repeat:
            skip(on_skip, image, DUPLICATE)
            continue
        box = [parse_number(row[c], int, c, path, line)
               for c in ("face_x", "face_y", "face_width", "face_height")]
        yield FaceRecord(
            id=f"affectnet/{name}", source="affectnet", split=row_split, image=image,
            expression=LABELS[label],
            meta={"label": label, "face_box": box,
                  "valence": parse_number(row["valence"], float, "valence", path, line),
                  "arousal": parse_number(row["arousal"], float, "arousal", path, line)})
