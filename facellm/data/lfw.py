"""LFW, Labeled Faces in the Wild (Huang et al. 2007): 13,233 web photos of 5,749 people and
the standard verification pairs.

Layout of `root`:
    pairs.txt              View 2: line 1 `10\\t300` (folds, pairs per class per fold); then per
                           fold 300 same-person lines `Name\\ti\\tj` followed by 300
                           different-person lines `Name1\\ti\\tName2\\tj`
    pairsDevTrain.txt      View 1 (optional): line 1 a single count n, then n same-person and
    pairsDevTest.txt       n different-person lines
    lfw/<Name>/<Name>_0001.jpg   (or lfw-deepfunneled/, lfw_funneled/)

One raw row (pairs.txt line 2, fold 1) and the pair it becomes:
    Abel_Pacheco\\t1\\t4
    ->
    FacePair(id="lfw/pairs.txt/0", source="lfw", split="train", same=True, meta={"fold": 1},
             first=FaceRecord(id="lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg", source="lfw",
                              split="train", image="/data/lfw/lfw/Abel_Pacheco/Abel_Pacheco_0001.jpg",
                              identity="Abel_Pacheco"),
             second=FaceRecord(id="lfw/Abel_Pacheco/Abel_Pacheco_0004.jpg", ...))

Splits. Pairs follow their fold: in a k-fold file (pairs.txt: k = 10) fold k is test, fold
k - 1 validation, the others train (folds 1-8 / 9 / 10). A single-count file is one fold whose
split comes from its name: "...Train..." train, anything else test. LFW's README says View 2's
10 sets were drawn "uniformly random at the person level", so its folds should not share
people, but this parser does not check that; other pairs files (View 1, derived benchmarks,
edited copies) may share people across folds, and then across splits.
`lfw_records` assigns splits by a stable hash of the person's name (80/10/10), so its splits
never share people, but they do not line up with the pair folds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

from facellm.data import check_split, dataset_root, hash_split, image_path, parse_number, read_lines, skip
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.schema import FacePair, FaceRecord, Split

IMAGE_DIRS = ("lfw", "lfw-deepfunneled", "lfw_funneled")
LAYOUT = """\
  pairs.txt                  `10\\t300`, then per fold 300 `Name\\ti\\tj` and 300 `Name1\\ti\\tName2\\tj`
  lfw/<Name>/<Name>_0001.jpg (or lfw-deepfunneled/, lfw_funneled/)"""
_IMAGE_NAME = re.compile(r"(.+)_(\d{4})\.jpg")
SELF_PAIR = "pair of an image with itself"


def lfw_pairs(root: str | os.PathLike[str], pairs_file: str = "pairs.txt",
              split: Split | None = None, image_dir: str | None = None,
              on_skip: OnSkip | None = None) -> Iterator[FacePair]:
    """Verification pairs of `pairs_file`, in file order.

    root: the LFW folder (layout above). pairs_file: "pairs.txt" (View 2, 10 folds) or a
    View 1 file such as "pairsDevTrain.txt". split: keep only pairs of this split.
    image_dir: image folder under root; default the first of `IMAGE_DIRS` that exists.
    on_skip: called as on_skip(image path, SELF_PAIR) for a line pairing an image with itself
    (a malformed line is fatal instead: it would shift every fold after it).
    """
    check_split(split)
    root = dataset_root(root, "LFW", [pairs_file], LAYOUT)
    return _pairs(root / pairs_file, _image_dir(root, image_dir), split, on_skip)


def lfw_records(root: str | os.PathLike[str], split: Split | None = None,
                image_dir: str | None = None, on_skip: OnSkip | None = None) -> Iterator[FaceRecord]:
    """Every image of the image folder, by person then number; identity = the person's name.

    Files in a person's folder not named `<Name>_NNNN.jpg` go to `on_skip`.
    """
    check_split(split)
    root = dataset_root(root, "LFW", [], LAYOUT)
    return _records(_image_dir(root, image_dir), split, on_skip)


def _image_dir(root: Path, name: str | None) -> Path:
    candidates = (name,) if name else IMAGE_DIRS
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    raise DatasetFormatError(root, f"LFW folder has no {' or '.join(c + '/' for c in candidates)}"
                             f"; expected layout:\n{LAYOUT}")


def _fold_split(fold: int, folds: int, pairs_name: str) -> Split:
    if folds == 1:
        return "train" if "train" in pairs_name.lower() else "test"
    return "test" if fold == folds else "validation" if fold == folds - 1 else "train"


def _pairs(path: Path, images: Path, split: Split | None, on_skip: OnSkip | None) -> Iterator[FacePair]:
    lines = read_lines(path)
    folds, per_class = _header(path, next(lines, None))
    index = 0
    for fold in range(1, folds + 1):
        fold_split = _fold_split(fold, folds, path.name)
        for same in (True, False):
            for _ in range(per_class):
                item = next(lines, None)
                if item is None:
                    raise DatasetFormatError(path, f"file ends after {index} pairs; line 1 promises "
                                             f"{folds} folds of {per_class} same-person and "
                                             f"{per_class} different-person pairs")
                line, text = item
                first, second = _pair_records(path, line, text, same, images, fold_split)
                pair_id, index = f"lfw/{path.name}/{index}", index + 1
                if split is not None and split != fold_split:
                    continue
                if first.image == second.image:
                    skip(on_skip, first.image, SELF_PAIR)
                    continue
                yield FacePair(id=pair_id, source="lfw", split=fold_split, first=first, second=second,
                               same=same, meta={"fold": fold})
    extra = next(lines, None)
    if extra is not None:
        raise DatasetFormatError(path, f"more pairs than line 1 promises ({folds} folds of "
                                 f"{2 * per_class} pairs)", extra[0])


def _header(path: Path, first: tuple[int, str] | None) -> tuple[int, int]:
    """(folds, pairs per class per fold) from `10\\t300` or a single count `1100`."""
    fields = first[1].split() if first else []
    if len(fields) not in (1, 2):
        raise DatasetFormatError(path, "line 1 must be `folds<TAB>pairs per fold and class` "
                                 "(e.g. 10\\t300) or a single pair count", first[0] if first else 1)
    numbers = [parse_number(f, int, "line 1", path, first[0]) for f in fields]
    return (1, numbers[0]) if len(numbers) == 1 else (numbers[0], numbers[1])


def _pair_records(path: Path, line: int, text: str, same: bool, images: Path,
                  split: Split) -> tuple[FaceRecord, FaceRecord]:
    fields = text.split()
    if same and len(fields) != 3:
        raise DatasetFormatError(path, f"expected 3 tab-separated fields (Name, i, j) for a "
                                 f"same-person pair, got {len(fields)}", line)
    if not same and len(fields) != 4:
        raise DatasetFormatError(path, f"expected 4 tab-separated fields (Name1, i, Name2, j) for "
                                 f"a different-person pair, got {len(fields)}", line)
    names = [fields[0], fields[0]] if same else [fields[0], fields[2]]
    numbers = [fields[1], fields[2]] if same else [fields[1], fields[3]]
    first, second = (_record(images, name, parse_number(n, int, "image number", path, line),
                             split, path, line) for name, n in zip(names, numbers))
    return first, second


def _record(images: Path, name: str, number: int, split: Split, label_file: Path,
            line: int) -> FaceRecord:
    rel = f"{name}/{name}_{number:04d}.jpg"
    return FaceRecord(id=f"lfw/{rel}", source="lfw", split=split,
                      image=image_path(images, rel, label_file, line), identity=name)


def _records(images: Path, split: Split | None, on_skip: OnSkip | None) -> Iterator[FaceRecord]:
    for person in sorted(p for p in images.iterdir() if p.is_dir()):
        person_split = hash_split(person.name)
        if split is not None and person_split != split:
            continue
        for path in sorted(person.glob("*.jpg")):
            match = _IMAGE_NAME.fullmatch(path.name)
            if not match or match.group(1) != person.name:
                if on_skip is not None:
                    on_skip(str(path), "LFW file name is not <Name>/<Name>_NNNN.jpg")
                continue
            yield FaceRecord(id=f"lfw/{person.name}/{path.name}", source="lfw",
                             split=person_split, image=str(path), identity=person.name)
