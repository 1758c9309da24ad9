import math

import numpy as np
import pytest
import sklearn.metrics

from facellm.metrics.verification import (
    det_curve,
    eer,
    eer_point,
    operating_point,
    roc_auc,
    roc_curve,
    tmr_at_fmr,
)

INF = math.inf


def random_scores(seed: int, n: int = 400, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    scores = rng.normal(0.0, 1.0, n) + 1.5 * labels
    return labels, (np.round(scores, 1) if ties else scores)


# --- slow references -----------------------------------------------------------------------

def slow_auc(labels, scores) -> float:
    genuine = [s for s, y in zip(scores, labels) if y == 1]
    impostor = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if g > i else 0.5 if g == i else 0.0 for g in genuine for i in impostor)
    return wins / (len(genuine) * len(impostor))


def slow_roc_points(labels, scores) -> list[tuple[float, float]]:
    """(FMR, TMR) for "accept nothing" and each distinct score as threshold (accept score >= t)."""
    n_gen = sum(1 for y in labels if y == 1)
    n_imp = len(labels) - n_gen
    points = [(0.0, 0.0)]
    for t in sorted(set(scores), reverse=True):
        fm = sum(1 for s, y in zip(scores, labels) if y == 0 and s >= t)
        tm = sum(1 for s, y in zip(scores, labels) if y == 1 and s >= t)
        points.append((fm / n_imp, tm / n_gen))
    return points


def slow_eer(labels, scores) -> float:
    """Where the polyline through the ROC points meets the line FMR = FNMR (TMR = 1 - FMR)."""
    points = slow_roc_points(labels, scores)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        f0, f1 = x0 + y0 - 1, x1 + y1 - 1  # > 0 past the crossing
        if f0 <= 0 <= f1 and f1 != f0:
            t = -f0 / (f1 - f0)
            return x0 + t * (x1 - x0)
        if f0 == 0:
            return x0
    raise AssertionError("no crossing")


def slow_tmr(labels, scores, fmr: float) -> float:
    n_imp = sum(1 for y in labels if y == 0)
    n_gen = len(labels) - n_imp
    allowed = math.floor(fmr * n_imp + 1e-9)
    best = 0.0
    for t in sorted(set(scores)):
        if sum(1 for s, y in zip(scores, labels) if y == 0 and s >= t) <= allowed:
            best = max(best, sum(1 for s, y in zip(scores, labels) if y == 1 and s >= t) / n_gen)
    return best


# --- known values --------------------------------------------------------------------------

def test_perfect_reversed_and_uninformative_scores():
    labels = [1, 1, 0, 0]
    assert roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(1.0)
    assert eer(labels, [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.0)
    assert roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == pytest.approx(0.0)
    assert eer(labels, [0.1, 0.2, 0.8, 0.9]) == pytest.approx(1.0)
    assert roc_auc(labels, [0.5] * 4) == pytest.approx(0.5)
    assert eer(labels, [0.5] * 4) == pytest.approx(0.5)


def test_hand_computed_auc_eer_and_threshold():
    # genuine 5, 4, 2 against impostors 3, 1: 5 of 6 pairs ordered correctly
    labels, scores = [1, 1, 1, 0, 0], [5.0, 4.0, 2.0, 3.0, 1.0]
    assert roc_auc(labels, scores) == pytest.approx(5 / 6)
    # ROC points (FMR, FNMR): t=4 -> (0, 1/3), t=3 -> (1/2, 1/3); FNMR - FMR goes 1/3 -> -1/6,
    # so the crossing is 2/3 along: EER = 0 + 2/3 * 1/2 = 1/3, nearest point t=3
    point = eer_point(labels, scores)
    assert point.eer == pytest.approx(1 / 3)
    assert point.threshold == pytest.approx(3.0)


def test_roc_curve_points_and_thresholds():
    roc = roc_curve([1, 0, 1, 0], [0.9, 0.7, 0.7, 0.1])
    assert roc.fmr == pytest.approx([0.0, 0.0, 0.5, 1.0])
    assert roc.tmr == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert roc.thresholds == pytest.approx([INF, 0.9, 0.7, 0.1])
    det = det_curve([1, 0, 1, 0], [0.9, 0.7, 0.7, 0.1])
    assert det.fnmr == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert det.fmr == pytest.approx(roc.fmr)


# --- against sklearn and the slow references -----------------------------------------------

@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, True)])
def test_roc_and_auc_match_sklearn(seed, ties):
    labels, scores = random_scores(seed, ties=ties)
    fpr, tpr, thresholds = sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)
    roc = roc_curve(labels, scores)
    assert roc.fmr == pytest.approx(fpr)
    assert roc.tmr == pytest.approx(tpr)
    assert roc.thresholds[1:] == pytest.approx(thresholds[1:])
    assert roc_auc(labels, scores) == pytest.approx(sklearn.metrics.roc_auc_score(labels, scores))


@pytest.mark.parametrize("seed,ties", [(3, False), (4, True)])
def test_auc_and_eer_match_slow_reference(seed, ties):
    labels, scores = random_scores(seed, n=150, ties=ties)
    assert roc_auc(labels, scores) == pytest.approx(slow_auc(labels, scores))
    assert eer(labels, scores) == pytest.approx(slow_eer(labels, scores))
    roc = roc_curve(labels, scores)
    fmrs, tmrs = zip(*slow_roc_points(labels, scores))
    assert roc.fmr == pytest.approx(fmrs)
    assert roc.tmr == pytest.approx(tmrs)


def test_infinite_scores_are_ranked_not_rejected():
    labels, scores = random_scores(5, n=100)
    scores[:6] = [INF, -INF, INF, -INF, INF, -INF]
    assert roc_auc(labels, scores) == pytest.approx(slow_auc(labels, scores))
    assert eer(labels, scores) == pytest.approx(slow_eer(labels, scores))
    roc = roc_curve(labels, scores)
    assert roc.thresholds[1] == INF and roc.thresholds[-1] == -INF
    assert roc.fmr[-1] == pytest.approx(1.0) and roc.tmr[-1] == pytest.approx(1.0)


# --- TMR at FMR ----------------------------------------------------------------------------

def test_tmr_at_fmr_hand_computed():
    impostors = np.arange(100.0)  # 0 .. 99
    genuine = np.array([98.5, 99.5, 50.0, 200.0])
    labels = np.r_[np.zeros(100, int), np.ones(4, int)]
    scores = np.r_[impostors, genuine]
    # FMR 1e-2 of 100 impostors allows one false match: accept >= 98.5 lets only 99 through
    point = operating_point(labels, scores, 1e-2)
    assert point.tmr == pytest.approx(3 / 4)
    assert point.fmr == pytest.approx(0.01)
    assert point.threshold == pytest.approx(98.5)
    assert point.reason is None
    assert tmr_at_fmr(labels, scores, 1e-2) == pytest.approx(slow_tmr(labels, scores, 1e-2))


def test_tmr_at_fmr_is_nan_when_impostors_cannot_resolve_it():
    labels, scores = random_scores(6, n=400)  # about 200 impostors
    n_imp = int(np.sum(labels == 0))
    assert math.isnan(tmr_at_fmr(labels, scores, 1e-3))
    point = operating_point(labels, scores, 1e-3)
    assert point.reason == f"FMR 0.001 needs >= 1000 impostor scores (1 false match(es) allowed); got {n_imp}"
    assert tmr_at_fmr(labels, scores, 1e-2) == pytest.approx(slow_tmr(labels, scores, 1e-2))
    # the stricter rule of 3 needs 300 impostors at FMR 1e-2
    assert math.isnan(operating_point(labels, scores, 1e-2, min_false_matches=3).tmr)


def test_tmr_at_fmr_boundary_counts():
    labels = np.r_[np.zeros(1000, int), np.ones(10, int)]
    scores = np.r_[np.linspace(0, 1, 1000), np.full(10, 2.0)]
    assert tmr_at_fmr(labels, scores, 1e-3) == pytest.approx(1.0)  # exactly 1000 impostors suffice
    assert math.isnan(tmr_at_fmr(labels[1:], scores[1:], 1e-3))    # 999 do not


@pytest.mark.parametrize("seed", [7, 8])
def test_tmr_at_fmr_matches_slow_reference_with_ties(seed):
    labels, scores = random_scores(seed, n=300, ties=True)
    for fmr in (0.01, 0.05, 0.2):
        assert tmr_at_fmr(labels, scores, fmr) == pytest.approx(slow_tmr(labels, scores, fmr))


def test_operating_point_without_one_class():
    assert operating_point([0, 0, 0], [0.1, 0.2, 0.3], 0.5).reason == "no genuine (label 1) scores"
    assert "got 0" in operating_point([1, 1], [0.1, 0.2], 0.5).reason
    with pytest.raises(ValueError, match="target FMR"):
        operating_point([0, 1], [0.1, 0.2], 0.0)


# --- input rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [roc_auc, eer, roc_curve, det_curve])
def test_errors(fn):
    with pytest.raises(ValueError, match="no H2"):
        fn([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        fn([0, 1], [0.1, math.nan])
    with pytest.raises(ValueError, match="labels must be 0"):
        fn([0, 3], [0.1, 0.2])
