"""FairFace (Karkkainen and Joo, WACV 2021): ~108k faces balanced over 7 race groups, with
age bins, gender and race labels.

Layout of `root`:
    fairface_label_train.csv   header `file,age,gender,race,service_test`
    fairface_label_val.csv     (service_test is optional)
    train/1.jpg ...            images, named by the `file` column
    val/1.jpg ...

One raw row and its record:
    train/1.jpg,50-59,Male,East Asian,True
    ->
    FaceRecord(id="fairface/train/1.jpg", source="fairface", split="train",
               image="/data/fairface/train/1.jpg", age=54.5,
               meta={"age_bin": "50-59", "gender": "male", "race": "east_asian",
                     "service_test": True})

`age` is the middle of the age bin (75 for "more than 70"); the bin itself is in meta. Gender
and race stay in `meta`: they are not attributes in `facellm.attributes`.

Splits: fairface_label_val.csv is our test split (FairFace publishes no other); about 10% of
fairface_label_train.csv (by a stable hash of the file column) becomes validation.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path

from facellm.data import (DUPLICATE, carve_validation, check_split, dataset_root, image_path, is_repeat,
                          read_csv, skip)
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.schema import FaceRecord, Split

AGE_BINS: dict[str, float] = {"0-2": 1.0, "3-9": 6.0, "10-19": 14.5, "20-29": 24.5,
                              "30-39": 34.5, "40-49": 44.5, "50-59": 54.5, "60-69": 64.5,
                              "more than 70": 75.0}
GENDERS = {"Male": "male", "Female": "female"}
RACES = {"White": "white", "Black": "black", "Latino_Hispanic": "latino_hispanic",
         "East Asian": "east_asian", "Southeast Asian": "southeast_asian", "Indian": "indian",
         "Middle Eastern": "middle_eastern"}
FILES: dict[str, tuple[str, str]] = {  # label file -> (image folder, split it feeds)
    "fairface_label_train.csv": ("train", "train"),
    "fairface_label_val.csv": ("val", "test"),
}
LAYOUT = """\
  fairface_label_train.csv   `file,age,gender,race,service_test`
  fairface_label_val.csv
  train/1.jpg ...
  val/1.jpg ..."""


def fairface_records(root: str | os.PathLike[str], split: Split | None = None,
                     on_skip: OnSkip | None = None) -> Iterator[FaceRecord]:
    """FairFace records: the train CSV's rows, then the val CSV's.

    root: the FairFace folder (layout above); only the files the split needs must exist.
    on_skip: called as on_skip(image path, DUPLICATE) for a row naming an image an earlier
    row named (the row is skipped: its id would repeat).
    """
    check_split(split)
    files = [f for f, (_, feeds) in FILES.items()
             if split is None or (feeds == "test") == (split == "test")]
    root = dataset_root(root, "FairFace", [p for f in files for p in (f, FILES[f][0] + "/")], LAYOUT)
    seen: set[str] = set()
    return (record for f in files for record in _records(root, root / f, split, seen, on_skip))


def _records(root: Path, path: Path, split: Split | None, seen: set[str],
             on_skip: OnSkip | None) -> Iterator[FaceRecord]:
    for line, row in read_csv(path, ["file", "age", "gender", "race"]):
        name = row["file"]
        row_split = carve_validation(name) if FILES[path.name][1] == "train" else "test"
        repeat = is_repeat(seen, name)
        if split is not None and row_split != split:
            continue
        meta = {"age_bin": _check(row["age"], AGE_BINS, "age", path, line),
                "gender": GENDERS[_check(row["gender"], GENDERS, "gender", path, line)],
                "race": RACES[_check(row["race"], RACES, "race", path, line)]}
        if "service_test" in row:
            meta["service_test"] = _check(row["service_test"], ("True", "False"),
                                          "service_test", path, line) == "True"
        image = image_path(root, name, path, line)
        if repeat:
            skip(on_skip, image, DUPLICATE)
            continue
        yield FaceRecord(id=f"fairface/{name}", source="fairface", split=row_split, image=image,
                         age=AGE_BINS[row["age"]], meta=meta)


def _check(value: str, allowed: Collection[str], column: str, path: Path, line: int) -> str:
    if value not in allowed:
        raise DatasetFormatError(path, f"{column} must be one of {', '.join(map(repr, allowed))}"
                                 f", got {value!r}", line)
    return value
