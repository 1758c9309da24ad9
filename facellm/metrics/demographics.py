"""Demographic differentials the way NIST's FRVT Part 3 reports them: error rates per
demographic group at one global operating threshold, and the ratio of the largest group
value to the smallest.

    match_rates([1, 1, 0, 0], [True, False, False, True])  -> MatchRates(fmr=0.5, fnmr=0.5, 2, 2)
    max_min_ratio({"dark": 0.10, "light": 0.02, "tan": 0.05}) -> Differential(5.0, "dark", "light", ...)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike


class MatchRates(NamedTuple):
    """fmr: non-mated pairs accepted / non-mated pairs; fnmr: mated pairs rejected / mated
    pairs; nan where that class has no pairs."""

    fmr: float
    fnmr: float
    n_mated: int
    n_nonmated: int


def match_rates(labels: ArrayLike, accepted: Sequence[bool]) -> MatchRates:
    """FMR and FNMR of accept decisions (labels 1 = mated, 0 = non-mated)."""
    y = np.asarray(labels, dtype=int)
    a = np.asarray(accepted, dtype=bool)
    if y.shape != a.shape or y.ndim != 1:
        raise ValueError(f"labels and decisions must be 1-d of one length; got {y.shape} and {a.shape}")
    n_mated, n_nonmated = int(np.sum(y == 1)), int(np.sum(y == 0))
    fmr = float(np.mean(a[y == 0])) if n_nonmated else math.nan
    fnmr = float(np.mean(~a[y == 1])) if n_mated else math.nan
    return MatchRates(fmr, fnmr, n_mated, n_nonmated)


class Differential(NamedTuple):
    """ratio = max_value / min_value over the groups with a value (inf when the smallest is 0
    and the largest is not; nan when all are 0 or fewer than two groups have a value)."""

    ratio: float
    max_group: str | None
    min_group: str | None
    max_value: float
    min_value: float


def max_min_ratio(values: Mapping[str, float], exclude: Sequence[str] = ()) -> Differential:
    """The max/min ratio across groups; groups in `exclude` and nan values are left out."""
    kept = {g: float(v) for g, v in values.items() if g not in exclude and v is not None and not math.isnan(v)}
    if len(kept) < 2:
        return Differential(math.nan, None, None, math.nan, math.nan)
    hi, lo = max(kept, key=kept.get), min(kept, key=kept.get)
    if kept[lo] == 0:
        ratio = math.nan if kept[hi] == 0 else math.inf
    else:
        ratio = kept[hi] / kept[lo]
    return Differential(ratio, hi, lo, kept[hi], kept[lo])
