"""Separability of explanation embeddings (mated vs non-mated) against sklearn and by hand,
and TMR at FMR 1e-3 / 1e-4 with its non-mated count in eval's LR reports."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from facellm.evaluation import lr_report
from facellm.metrics.separability import fisher_ratio, separability


def clusters(seed: int, n: int = 120, gap: float = 1.0, dim: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n // 2, int), np.zeros(n - n // 2, int)]
    x = rng.normal(size=(n, dim))
    x[labels == 1, 0] += gap
    return x, labels


@pytest.mark.parametrize("gap", [0.0, 1.0, 4.0])
def test_separability_is_sklearns(gap):
    x, y = clusters(0, gap=gap)
    sep = separability(x, y)
    assert sep.silhouette == pytest.approx(silhouette_score(x, y))
    assert sep.davies_bouldin == pytest.approx(davies_bouldin_score(x, y))
    assert sep.calinski_harabasz == pytest.approx(calinski_harabasz_score(x, y))
    assert (sep.n_mated, sep.n_nonmated) == (60, 60)


def test_separability_grows_with_the_gap():
    small, large = separability(*clusters(1, gap=0.5)), separability(*clusters(1, gap=4.0))
    assert large.silhouette > small.silhouette
    assert large.davies_bouldin < small.davies_bouldin
    assert large.calinski_harabasz > small.calinski_harabasz
    assert large.fisher_ratio > small.fisher_ratio


def test_fisher_ratio_by_hand():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [4.0, 1.0], [4.0, 3.0]])
    y = np.array([0, 0, 1, 1])
    # centroids (1, 0) and (4, 2): squared gap 13; spreads: mean squared distance 1 and 1
    assert fisher_ratio(x, y) == pytest.approx(13 / 2)
    assert fisher_ratio(np.array([[0.0], [0.0], [1.0], [1.0]]), y) == math.inf


def test_separability_refuses_what_sklearn_cannot_score():
    with pytest.raises(ValueError, match=">= 2 vectors per class"):
        separability(np.eye(3), [1, 0, 0])
    with pytest.raises(ValueError, match="all vectors are equal"):
        separability(np.ones((4, 3)), [1, 1, 0, 0])
    with pytest.raises(ValueError, match="H1"):
        separability(np.eye(3), [0, 0, 0])


# ---------------------------------------------------------------- TMR at FMR 1e-3 / 1e-4


def scores(rng: np.random.Generator, n_mated: int, n_nonmated: int) -> tuple[np.ndarray, np.ndarray]:
    labels = np.r_[np.ones(n_mated, int), np.zeros(n_nonmated, int)]
    return rng.normal(2.0 * labels, 1.0), labels


def test_tmr_needs_one_over_fmr_nonmated_pairs():
    rng = np.random.default_rng(0)
    x, y = scores(rng, 300, 999)
    rep = lr_report(x, y, *scores(rng, 200, 200), raw_is_llr=True).metrics
    assert rep["n_nonmated"] == 999
    assert math.isnan(rep["tmr_at_fmr_1e3"]) and math.isnan(rep["tmr_at_fmr_1e4"])
    assert "not estimable: FMR 0.001 needs >= 1000 impostor scores" in rep["tmr_note"]
    assert "got 999" in rep["tmr_note"]


def test_tmr_at_fmr_1e3_counts_one_false_match():
    rng = np.random.default_rng(1)
    x, y = scores(rng, 300, 1000)
    rep = lr_report(x, y, *scores(rng, 200, 200), raw_is_llr=True).metrics
    # by hand: one false match allowed, so every mated score above the second-largest non-mated one
    impostors = np.sort(x[y == 0])
    assert rep["tmr_at_fmr_1e3"] == pytest.approx(np.mean(x[y == 1] > impostors[-2]))
    assert math.isnan(rep["tmr_at_fmr_1e4"])
    assert "0.0001 needs >= 10000" in rep["tmr_note"] and "0.001 needs" not in rep["tmr_note"]


def test_tmr_with_enough_nonmated_pairs_has_no_note():
    rng = np.random.default_rng(2)
    x, y = scores(rng, 50, 10_000)
    rep = lr_report(x, y, *scores(rng, 100, 100), raw_is_llr=True).metrics
    assert rep["tmr_note"] is None
    order = np.sort(x[y == 0])
    assert rep["tmr_at_fmr_1e4"] == pytest.approx(np.mean(x[y == 1] > order[-2]))   # 1 false match
    assert rep["tmr_at_fmr_1e3"] == pytest.approx(np.mean(x[y == 1] > order[-11]))  # 10 false matches


def test_one_policy_for_non_finite_llrs():
    """+-inf is an LLR (clipped to +-300 where calibrated); NaN is refused, naming the system."""
    rng = np.random.default_rng(3)
    x, y = scores(rng, 50, 50)
    x[0], x[-1] = np.inf, -np.inf
    rep = lr_report(x, y, *scores(rng, 50, 50), raw_is_llr=True, what="llr_answer")
    assert rep.llrs[0] == 300.0 and rep.llrs[-1] == -300.0 and np.isfinite(rep.calibrated["logistic"]).all()
    x[1] = np.nan
    with pytest.raises(ValueError, match=r"llr_answer \(test\) contain 1 NaN"):
        lr_report(x, y, *scores(rng, 50, 50), raw_is_llr=True, what="llr_answer")
