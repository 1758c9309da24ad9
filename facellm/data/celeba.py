"""CelebA (Liu et al., ICCV 2015): 202,599 aligned celebrity faces, 40 binary attributes,
10,177 identities, an official train/validation/test partition.

Layout of `root`:
    list_attr_celeba.txt       line 1 the image count, line 2 the 40 attribute names, then one
                               line per image, fields separated by runs of spaces, 1 yes, -1 no
    list_eval_partition.txt    `000001.jpg 0`  (0 train, 1 validation, 2 test)
    identity_CelebA.txt        `000001.jpg 2880`  (optional: identity stays None without it)
    img_align_celeba/000001.jpg ...

One raw row (list_attr_celeba.txt line 3, 40 values in the order of line 2) and its record:
    000001.jpg -1  1  1 -1 -1 -1 -1 -1 -1 -1 -1  1 ... -1  1  1 -1  1 -1  1 -1 -1  1
    ->
    FaceRecord(id="celeba/000001.jpg", source="celeba", split="train",
               image="/data/celeba/img_align_celeba/000001.jpg", identity="2880",
               attributes={"5_o_clock_shadow": False, "arched_eyebrows": True, ...,
                           "beard": False, ..., "smiling": True, ..., "young": True})

Attribute keys come from `facellm.attributes.celeba_key`: the lower-case column name, except
`No_Beard`, stored with the opposite sign as `beard`. All 40 columns are kept; the tasks pick
the ones in their vocabulary.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from facellm.attributes import celeba_key
from facellm.data import DUPLICATE, check_split, dataset_root, image_path, is_repeat, parse_number, read_lines, skip
from facellm.data.errors import DatasetFormatError, OnSkip
from facellm.schema import FaceRecord, Split

ATTR_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
IDENTITY_FILE = "identity_CelebA.txt"
IMAGE_DIR = "img_align_celeba"
PARTITIONS: dict[str, Split] = {"0": "train", "1": "validation", "2": "test"}

LAYOUT = f"""\
  {ATTR_FILE}       image count, 40 attribute names, then `000001.jpg -1 1 ...`
  {PARTITION_FILE}    `000001.jpg 0` (0 train, 1 validation, 2 test)
  {IDENTITY_FILE}        `000001.jpg 2880` (optional)
  {IMAGE_DIR}/000001.jpg ..."""


def celeba_records(root: str | os.PathLike[str], split: Split | None = None,
                   on_skip: OnSkip | None = None) -> Iterator[FaceRecord]:
    """CelebA records in `list_attr_celeba.txt` order.

    root: the CelebA folder (layout above). split: keep only this partition.
    on_skip: called as on_skip(image path, DUPLICATE) for an attribute row naming an image
    an earlier row named (the row is skipped: its id would repeat).
    Raises DatasetFormatError now for a missing folder or file, later for a malformed line.
    """
    check_split(split)
    root = dataset_root(root, "CelebA", [ATTR_FILE, PARTITION_FILE, IMAGE_DIR + "/"], LAYOUT)
    return _records(root, split, on_skip)


def _records(root: Path, split: Split | None, on_skip: OnSkip | None) -> Iterator[FaceRecord]:
    attr_file = root / ATTR_FILE
    partitions = _read_partitions(root / PARTITION_FILE)
    identities = {}
    if (root / IDENTITY_FILE).exists():
        identities = _read_mapping(root / IDENTITY_FILE)
    lines = read_lines(attr_file)
    count, names = _header(attr_file, lines)
    columns = [celeba_key(name) for name in names]
    rows, seen = 0, set()
    for line, text in lines:
        fields = text.split()
        if len(fields) != len(names) + 1:
            raise DatasetFormatError(attr_file, f"expected {len(names) + 1} fields (file name + "
                                     f"{len(names)} attributes), got {len(fields)}", line)
        rows += 1
        name = fields[0]
        if name not in partitions:
            raise DatasetFormatError(attr_file, f"{name} has no line in {PARTITION_FILE}", line)
        repeat = is_repeat(seen, name)
        if split is not None and partitions[name] != split:
            continue
        image = image_path(root / IMAGE_DIR, name, attr_file, line)
        if repeat:
            skip(on_skip, image, DUPLICATE)
            continue
        attributes: dict[str, bool | str] = {}
        for column, (key, positive), value in zip(names, columns, fields[1:]):
            if value not in ("1", "-1"):
                raise DatasetFormatError(
                    attr_file, f"{column} must be 1 or -1, got {value!r}", line)
            attributes[key] = (value == "1") == positive
        yield FaceRecord(id=f"celeba/{name}", source="celeba", split=partitions[name],
                         image=image, identity=identities.get(name), attributes=attributes)
    if rows != count:
        raise DatasetFormatError(attr_file, f"the image count is {count} but the file has {rows} "
                                 f"image rows; correct the count if the file was cut on purpose", 1)


def _header(path: Path, lines: Iterator[tuple[int, str]]) -> tuple[int, list[str]]:
    """(image count, attribute names) from the first two lines."""
    first, second = next(lines, None), next(lines, None)
    if first is None or second is None:
        raise DatasetFormatError(path, "expected the image count on line 1 and the attribute "
                                 "names on line 2")
    count = parse_number(first[1], int, "the image count", path, first[0])
    names = second[1].split()
    if len(set(names)) != len(names):
        raise DatasetFormatError(path, "attribute names repeat", second[0])
    if names and names[0].endswith((".jpg", ".png")):
        raise DatasetFormatError(path, "expected the attribute names, got an image row (is the "
                                 "image count line missing?)", second[0])
    return count, names


def _read_partitions(path: Path) -> dict[str, Split]:
    partitions: dict[str, Split] = {}
    for line, name, value in _two_columns(path):
        if value not in PARTITIONS:
            raise DatasetFormatError(path, f"partition must be 0 (train), 1 (validation) or "
                                     f"2 (test), got {value!r}", line)
        _set_once(partitions, name, PARTITIONS[value], path, line)
    return partitions


def _read_mapping(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line, name, value in _two_columns(path):
        _set_once(values, name, value, path, line)
    return values


def _set_once(mapping: dict[str, str], name: str, value: str, path: Path, line: int) -> None:
    """A name repeated with the same value is harmless; with another value it is refused
    (which one is right?)."""
    if mapping.setdefault(name, value) != value:
        raise DatasetFormatError(path, f"{name} is listed again with another value ({mapping[name]!r} "
                                 f"before, {value!r} here)", line)


def _two_columns(path: Path) -> Iterator[tuple[int, str, str]]:
    for line, text in read_lines(path):
        fields = text.split()
        if len(fields) != 2:
            raise DatasetFormatError(path, f"expected 2 fields (file name, value), got "
                                     f"{len(fields)}", line)
        yield line, fields[0], fields[1]
