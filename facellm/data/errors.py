"""What a dataset parser says when the data on disk is not what it expects.

Two kinds of problems:
- fatal: a label file that is malformed, or a dataset folder without the files its layout
  needs. Parsers raise `DatasetFormatError`, naming the file (and line) and what was expected:
      /data/celeba/list_attr_celeba.txt line 7: expected 41 fields (file name + 40 attributes), got 39
- per-sample: one row that cannot become a sample but does not make the rest doubtful (a
  UTKFace file name without a race field, an AffectNet "Contempt" label). Parsers hand these
  to an `on_skip(path, reason)` callback and go on. `SkipLog` is such a callback that counts
  reasons; a dataset builder uses the same log for the images it rejects ("corrupt image").
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

OnSkip = Callable[[str, str], None]
"""`on_skip(path, reason)`: path of the skipped image (or label file), short fixed reason."""


class DatasetFormatError(ValueError):
    """A label file or dataset folder that does not match the dataset's on-disk format.

    path: the offending file or folder. line: 1-based line number, `None` for a whole file
    or folder. detail: what was wrong and what was expected.
    """

    def __init__(self, path: str | os.PathLike[str], detail: str, line: int | None = None) -> None:
        self.path = os.fspath(path)
        self.line = line
        self.detail = detail
        where = self.path if line is None else f"{self.path} line {line}"
        super().__init__(f"{where}: {detail}")

    def __reduce__(self):  # keep the attributes when pickled (multiprocessing data loaders)
        return type(self), (self.path, self.detail, self.line)


class SkipLog:
    """Counts skipped samples by reason; pass it as `on_skip`.

    It keeps counts only, not paths: paths of identity datasets hold people's names, and
    skip summaries end up in logs. A caller that needs the paths passes its own callback.

        skips = SkipLog()
        records = list(utkface_records(root, on_skip=skips))
        skips.counts   # Counter({"malformed UTKFace file name": 3})
        str(skips)     # "skipped 3: malformed UTKFace file name 3"
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, path: str, reason: str) -> None:
        self.add(reason)

    def add(self, reason: str, n: int = 1) -> None:
        self.counts[reason] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, int]:
        return dict(self.counts.most_common())

    def __str__(self) -> str:
        if not self.counts:
            return "skipped 0"
        parts = ", ".join(f"{reason} {n}" for reason, n in self.counts.most_common())
        return f"skipped {self.total}: {parts}"

    def __repr__(self) -> str:
        return f"SkipLog({self.as_dict()!r})"
