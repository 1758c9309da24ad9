"""Face-verification metrics on comparison scores: ROC, DET, AUC, EER, TMR at a fixed FMR.

`labels` are 1 for a genuine pair (H1, same person) and 0 for an impostor pair; `scores` are
higher for "more likely the same person" (FR similarities or LLRs; +-inf allowed). A pair is
accepted at threshold t when `score >= t`. All functions need both classes and raise
ValueError otherwise (and on NaN scores), except `operating_point`, which reports nan with a
reason, because "too few impostors" is an expected outcome on small test sets.

The ROC is computed here rather than with sklearn because sklearn rejects +-inf scores,
and calibrated LLRs (PAV) contain them. The tests check it against sklearn and a slow reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from facellm.metrics.lr import check_llrs_labels


class RocCurve(NamedTuple):
    """ROC operating points, one per distinct score plus the "accept nothing" start (0, 0).

    fmr / tmr: false- and true-match rates; thresholds[i]: accept iff score >= thresholds[i]
    (thresholds[0] is +inf for the start point, which accepts nothing even if a score is +inf).
    n_false / n_true: the counts behind fmr / tmr.
    """

    fmr: np.ndarray
    tmr: np.ndarray
    thresholds: np.ndarray
    n_false: np.ndarray
    n_true: np.ndarray


class DetCurve(NamedTuple):
    """DET points: false-match rate against false-non-match rate (1 - TMR), same order as `RocCurve`."""

    fmr: np.ndarray
    fnmr: np.ndarray
    thresholds: np.ndarray


def _check(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    scores, labels = check_llrs_labels(scores, labels, name="scores")
    return labels, scores


def roc_curve(labels: ArrayLike, scores: ArrayLike) -> RocCurve:
    """All ROC operating points (no points dropped)."""
    y, s = _check(labels, scores)
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    # last position of each run of equal scores (compare, not diff: inf - inf is nan)
    last = np.r_[np.flatnonzero(s_sorted[1:] != s_sorted[:-1]), s.size - 1]
    n_true = np.r_[0, np.cumsum(y_sorted)[last]]
    n_false = np.r_[0, last + 1] - n_true
    return RocCurve(fmr=n_false / (y.size - y.sum()), tmr=n_true / y.sum(),
                    thresholds=np.r_[np.inf, s_sorted[last]], n_false=n_false, n_true=n_true)


def det_curve(labels: ArrayLike, scores: ArrayLike) -> DetCurve:
    """DET points (FMR, FNMR) for every threshold."""
    roc = roc_curve(labels, scores)
    return DetCurve(fmr=roc.fmr, fnmr=1.0 - roc.tmr, thresholds=roc.thresholds)


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC: P(genuine score > impostor score) + 0.5 P(tie) (= sklearn's roc_auc_score)."""
    roc = roc_curve(labels, scores)
    return float(np.trapezoid(roc.tmr, roc.fmr))


class EqualErrorRate(NamedTuple):
    """eer: the rate where FMR = FNMR on the ROC with straight segments between operating points.
    threshold: the operating point (accept iff score >= threshold) nearest to that crossing."""

    eer: float
    threshold: float


def eer_point(labels: ArrayLike, scores: ArrayLike) -> EqualErrorRate:
    """EER by linear interpolation of the ROC (not the ROC convex hull of BOSARIS' ROCCH-EER)."""
    roc = roc_curve(labels, scores)
    gap = (1.0 - roc.tmr) - roc.fmr  # FNMR - FMR: starts at 1, falls to -1
    i = int(np.argmax(gap <= 0))  # first point at or past the crossing (gap[0] = 1 > 0, so i >= 1)
    frac = gap[i - 1] / (gap[i - 1] - gap[i])
    rate = roc.fmr[i - 1] + frac * (roc.fmr[i] - roc.fmr[i - 1])
    nearest = i if frac >= 0.5 or i == 1 else i - 1
    return EqualErrorRate(float(rate), float(roc.thresholds[nearest]))


def eer(labels: ArrayLike, scores: ArrayLike) -> float:
    """Equal error rate (see `eer_point`)."""
    return eer_point(labels, scores).eer


@dataclass(frozen=True)
class OperatingPoint:
    """The best operating point whose FMR does not exceed a target.

    tmr: true-match rate there (nan when unresolvable, see `reason`); fmr: the FMR achieved
    (<= the target); threshold: accept iff score >= threshold.
    """

    target_fmr: float
    tmr: float
    fmr: float
    threshold: float
    n_impostors: int
    reason: str | None = None


def operating_point(labels: ArrayLike, scores: ArrayLike, fmr: float, *,
                    min_false_matches: int = 1) -> OperatingPoint:
    """TMR at a target FMR, or nan with a reason when the impostors cannot resolve that FMR.

    Rule: with N impostor scores the measurable FMRs are k/N. The target is resolvable only if
    it allows at least `min_false_matches` false matches, i.e. floor(fmr * N) >= min_false_matches
    (N >= 1000 for FMR 1e-3 by default; use 3 for the "rule of 3" confidence rule). Below that
    the only admissible threshold sits above every impostor, which measures FMR 0, not `fmr`.
    """
    if not 0.0 < fmr < 1.0:
        raise ValueError(f"target FMR must be in (0, 1); got {fmr}")
    s, y = check_llrs_labels(scores, labels, name="scores", both_classes=False)
    n_imp, n_gen = int(np.sum(y == 0)), int(np.sum(y == 1))
    allowed = math.floor(fmr * n_imp * (1 + 1e-9))  # 1e-3 * 1000 must give 1, not 0.999...
    nan = float("nan")
    if n_gen == 0:
        return OperatingPoint(fmr, nan, nan, nan, n_imp, "no genuine (label 1) scores")
    if allowed < min_false_matches:
        need = math.ceil(min_false_matches / fmr * (1 - 1e-9))
        return OperatingPoint(fmr, nan, nan, nan, n_imp,
                              f"FMR {fmr:g} needs >= {need} impostor scores "
                              f"({min_false_matches} false match(es) allowed); got {n_imp}")
    roc = roc_curve(y, s)
    i = int(np.flatnonzero(roc.n_false <= allowed)[-1])  # tmr is non-decreasing: the last is best
    return OperatingPoint(fmr, float(roc.tmr[i]), float(roc.fmr[i]), float(roc.thresholds[i]), n_imp)


def tmr_at_fmr(labels: ArrayLike, scores: ArrayLike, fmr: float) -> float:
    """True-match rate at the target false-match rate; nan when unresolvable (`operating_point` says why)."""
    return operating_point(labels, scores, fmr).tmr
