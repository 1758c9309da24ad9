"""UTKFace (Zhang et al., CVPR 2017): ~24k faces aged 0 to 116, labelled only through their
file names.

Layout of `root`: the images, directly or in sub-folders (the in-the-wild part1/ part2/
part3/), named `age_gender_race_datetime.jpg` or, for the aligned and cropped faces,
`age_gender_race_datetime.jpg.chip.jpg`; gender 0 male, 1 female; race 0..4 = White, Black,
Asian, Indian, Others.

One raw file name and its record:
    UTKFace/26_1_2_20170116174525125.jpg.chip.jpg
    ->
    FaceRecord(id="utkface/26_1_2_20170116174525125.jpg.chip.jpg", source="utkface",
               split="train", image="/data/UTKFace/26_1_2_20170116174525125.jpg.chip.jpg",
               age=26.0, meta={"gender": "female", "race": "asian"})

Gender and race stay in `meta`: they are not attributes in `facellm.attributes`. A few
released names are malformed (e.g. a missing race field); they go to `on_skip` with the
reason "malformed UTKFace file name" and are skipped.

Splits: UTKFace has none. Each image goes to train / validation / test (80/10/10) by a
stable hash of its file name (`facellm.data.hash_split`). UTKFace has no identity labels, so
the same person can appear in two splits.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from facellm.data import check_split, dataset_root, hash_split
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.schema import FaceRecord, Split

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")
MALFORMED = "malformed UTKFace file name"
MAX_AGE = 120  # UTKFace's oldest face is 116; a larger age is a mistyped name
IMPLAUSIBLE = f"UTKFace age over {MAX_AGE}"
LAYOUT = """\
  26_1_2_20170116174525125.jpg.chip.jpg ...   (age_gender_race_datetime, directly or in sub-folders)"""
_NAME = re.compile(r"(\d{1,3})_([01])_([0-4])_(\d+)\.jpg(\.chip\.jpg)?")


def utkface_records(root: str | os.PathLike[str], split: Split | None = None,
                    on_skip: OnSkip | None = None) -> Iterator[FaceRecord]:
    """UTKFace records for every *.jpg under `root`, in sorted path order.

    on_skip: called as on_skip(image path, MALFORMED) for each image whose name does not parse,
    and as on_skip(image path, IMPLAUSIBLE) for an age over MAX_AGE.
    """
    check_split(split)
    root = dataset_root(root, "UTKFace", [], LAYOUT)
    if next(root.rglob("*.jpg"), None) is None:
        raise DatasetFormatError(root, f"UTKFace folder has no *.jpg files; expected layout:\n"
                                 f"{LAYOUT}")
    return _records(root, split, on_skip)


def _records(root: Path, split: Split | None, on_skip: OnSkip | None) -> Iterator[FaceRecord]:
    for path in sorted(root.rglob("*.jpg")):
        row_split = hash_split(path.name)
        if split is not None and row_split != split:
            continue
        match = _NAME.fullmatch(path.name)
        if match is None:
            if on_skip is not None:
                on_skip(str(path), MALFORMED)
            continue
        age, gender, race = (int(match.group(i)) for i in (1, 2, 3))
        if age > MAX_AGE:
            if on_skip is not None:
                on_skip(str(path), IMPLAUSIBLE)
            continue
        yield FaceRecord(id=f"utkface/{path.relative_to(root).as_posix()}", source="utkface",
                         split=row_split, image=str(path), age=float(age),
                         meta={"gender": GENDERS[gender], "race": RACES[race]})
