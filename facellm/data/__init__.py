"""Parsers of the standard face datasets' on-disk formats, one module each.

Every parser is `<name>_records(root, split=None, on_skip=None) -> Iterator[FaceRecord]`
(LFW also has `lfw_pairs(...) -> Iterator[FacePair]`), imported from its module, e.g.
`from facellm.data.celeba import celeba_records`. The contract they share:

- Lazy: label files are read as the iterator advances, in file order. Images are not opened;
  `FaceRecord.image` is the absolute path (str) of the file the label line names, or a PIL
  image for FER2013, whose pixels live in the CSV. Checking images (missing, corrupt, no face)
  is the dataset builder's job: a label line whose image file is missing still yields its record.
- `split=None` yields every split; "train" / "validation" / "test" only that one.
- Fatal problems raise `DatasetFormatError` naming the file and line: a missing dataset folder
  or label file (raised when the parser is called, with the expected layout), a malformed
  label line (raised when the iterator reaches it).
- Rows that cannot become a sample but leave the rest trustworthy go to `on_skip(path, reason)`
  (see `errors.SkipLog`) and are skipped.
- Ids are `<source>/<image name as the label file writes it>`, e.g. "celeba/000001.jpg", and
  unique: a label row naming an image a second time goes to `on_skip` as `DUPLICATE`.
- Where a dataset has no validation split, one is carved out of its train split by a stable
  hash of the image name (`carve_validation`): the same rows go to validation on every run and
  machine, and adding or removing other rows does not move them.

This module holds the small helpers the parsers share.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from facellm.data.errors import DatasetFormatError, OnSkip, SkipLog
from facellm.schema import SPLITS, Split

__all__ = ["DatasetFormatError", "OnSkip", "SkipLog", "VALIDATION_FRACTION"]

VALIDATION_FRACTION = 0.1  # share of a train split carved out as validation
DUPLICATE = "duplicate label row (the image is labelled again)"


def check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or None, got {split!r}")


def is_repeat(seen: set[str], name: str) -> bool:
    """Whether image `name` was labelled before (then remembered in `seen`). Parsers ask before
    they filter by split, so that a repeat in another split is caught too."""
    repeat = name in seen
    seen.add(name)
    return repeat


def skip(on_skip: OnSkip | None, image: str, reason: str) -> None:
    if on_skip is not None:
        on_skip(image, reason)


def folder_fingerprint(root: str | os.PathLike[str]) -> dict[str, Any]:
    """What the files under `root` are, without reading them: their count and a hash of
    their sorted relative paths, sizes and modification times. An added, removed, replaced
    or edited label file or image changes it."""
    digest, count = hashlib.sha256(), 0
    base = Path(os.path.abspath(Path(root).expanduser()))
    for folder, dirs, files in os.walk(base):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder, name)
            try:
                st = path.stat()
            except OSError:  # a dangling link: the build reports the image as missing
                continue
            digest.update(f"{path.relative_to(base).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
            count += 1
    return {"root": str(base), "files": count, "sha256": digest.hexdigest()[:16]}


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key` alone (sha256, unlike `hash()` which is salted per process)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def carve_validation(key: str, fraction: float = VALIDATION_FRACTION) -> Split:
    """"validation" for about `fraction` of keys, "train" for the rest."""
    return "validation" if stable_fraction(key) < fraction else "train"


def hash_split(key: str, validation: float = 0.1, test: float = 0.1) -> Split:
    """train / validation / test in proportions (1 - validation - test, validation, test)."""
    u = stable_fraction(key)
    return "test" if u < test else "validation" if u < test + validation else "train"


def dataset_root(root: str | os.PathLike[str], dataset: str, required: Iterable[str],
                 layout: str) -> Path:
    """`root` made absolute, after checking that it is a folder holding `required` entries.

    layout: the expected folder layout, shown in the error so the user can fix their folder.
    """
    path = Path(os.path.abspath(Path(root).expanduser()))
    if not path.is_dir():
        raise DatasetFormatError(path, f"no such {dataset} folder; expected layout:\n{layout}")
    missing = [name for name in required if not (path / name).exists()]
    if missing:
        raise DatasetFormatError(
            path, f"{dataset} folder has no {', '.join(missing)}; expected layout:\n{layout}")
    return path


def image_path(folder: Path, name: str, label_file: Path, line: int) -> str:
    """Absolute path of image `name` (relative, '/'-separated) inside `folder`.

    Names that would leave `folder` are refused: a label file must not make the builder copy
    arbitrary files into an exported dataset.
    """
    rel = PurePosixPath(name.replace("\\", "/"))
    if not rel.parts or rel.is_absolute() or ".." in rel.parts:
        raise DatasetFormatError(
            label_file, f"image name {name!r} is not a relative path inside {folder}", line)
    return str(folder.joinpath(*rel.parts))


def _decoded_lines(path: Path) -> Iterator[str]:
    # Decoding line by line (not by the 8 KiB chunks of a text-mode file) puts a decoding
    # error on the right line.
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if n == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DatasetFormatError(path, f"not UTF-8 text ({e.reason} at byte {e.start})",
                                         n) from None


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(1-based line number, stripped text) for each non-blank line."""
    for n, text in enumerate(_decoded_lines(path), 1):
        text = text.strip()
        if text:
            yield n, text


def read_csv(path: Path, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each non-blank data row of a CSV file whose header names at
    least `columns` (in any order; surrounding spaces ignored)."""
    reader = csv.reader(_decoded_lines(path))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [c for c in columns if c not in header]
        if missing:
            raise DatasetFormatError(
                path, f"header lacks {', '.join(missing)}; expected a first line naming the "
                f"columns {','.join(columns)}, got {','.join(header)!r}", 1)
        for row in reader:
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise DatasetFormatError(
                    path, f"expected {len(header)} comma-separated fields "
                    f"({','.join(header)}), got {len(row)}", reader.line_num)
            yield reader.line_num, dict(zip(header, (field.strip() for field in row)))
    except csv.Error as e:
        raise DatasetFormatError(path, f"not valid CSV ({e})", reader.line_num) from None


def parse_number(text: str, kind: type[int] | type[float], what: str, path: Path,
                 line: int) -> int | float:
    """int(text) or float(text), or a DatasetFormatError saying which field was bad."""
    try:
        return kind(text)
    except ValueError:
        raise DatasetFormatError(path, f"{what} must be {'an integer' if kind is int else 'a number'}"
                                       f", got {text!r}", line) from None
