import math

import numpy as np
import pytest
from lir.algorithms.isotonic_regression import IsotonicCalibrator
from lir.algorithms.logistic_regression import LogitCalibrator
from lir.data.models import LLRData
from lir.metrics import cllr as lir_cllr
from lir.metrics import cllr_min as lir_cllr_min
from lir.plotting.expected_calibration_error import calculate_ece as lir_calculate_ece

from facellm.metrics.lr import (
    LogisticCalibrator,
    PavCalibrator,
    cllr,
    cllr_cal,
    cllr_min,
    ece,
    ece_curve,
    ln_to_log10,
    tippett_data,
)

INF = math.inf


def random_llrs(seed: int, n: int = 300, shift: float = 1.0, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    llrs = scale * (rng.normal(0.0, 1.0, n) + shift * (2 * labels - 1))
    return llrs, labels


def slow_cllr(llrs, labels) -> float:
    """Pure-Python Cllr from its definition (moderate and infinite LLRs)."""
    def cost(llr: float) -> float:  # log2(1 + 10**llr)
        if llr == INF:
            return INF
        if llr == -INF:
            return 0.0
        return math.log2(1.0 + 10.0 ** llr)
    h1 = [cost(-x) for x, y in zip(llrs, labels) if y == 1]
    h2 = [cost(x) for x, y in zip(llrs, labels) if y == 0]
    return 0.5 * (sum(h1) / len(h1) + sum(h2) / len(h2))


# --- Cllr: known values --------------------------------------------------------------------

def test_cllr_of_uninformative_llrs_is_one():
    assert cllr([0.0, 0.0, 0.0, 0.0], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert cllr(np.zeros(7), [0, 1, 1, 1, 0, 1, 1]) == pytest.approx(1.0)


def test_cllr_hand_computed():
    # each sample is one order of magnitude on the right side: log2(1 + 1/10) for both classes
    assert cllr([1.0, -1.0], [1, 0]) == pytest.approx(math.log2(1.1))
    # H1: llr 2 and 0 -> log2(1.01), 1; H2: llr -1 -> log2(1.1)
    expected = 0.5 * ((math.log2(1.01) + 1.0) / 2 + math.log2(1.1))
    assert cllr([2.0, 0.0, -1.0], [1, 1, 0]) == pytest.approx(expected)


def test_cllr_perfect_and_wrong_infinite_llrs():
    assert cllr([-INF, -INF, INF, INF], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert cllr([INF, -1.0, 1.0, 2.0], [0, 0, 1, 1]) == INF
    assert cllr([-1.0, -1.0, -INF, 2.0], [0, 0, 1, 1]) == INF


def test_cllr_accepts_bool_labels():
    assert cllr([1.0, -1.0], [True, False]) == pytest.approx(math.log2(1.1))


# --- Cllr against lir and the slow reference -----------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cllr_matches_lir_and_slow_reference(seed):
    llrs, labels = random_llrs(seed)
    expected = lir_cllr(LLRData(features=llrs, labels=labels))
    assert cllr(llrs, labels) == pytest.approx(expected, rel=1e-12)
    assert cllr(llrs, labels) == pytest.approx(slow_cllr(llrs, labels), rel=1e-12)


def test_cllr_matches_lir_with_infinite_llrs():
    llrs, labels = random_llrs(3, n=50)
    first = np.arange(50) < 10
    llrs = np.where(first & (labels == 1), INF, np.where(first & (labels == 0), -INF, llrs))
    assert np.isposinf(llrs).any() and np.isneginf(llrs).any()
    assert cllr(llrs, labels) == pytest.approx(lir_cllr(LLRData(features=llrs, labels=labels)))
    assert cllr(llrs, labels) == pytest.approx(slow_cllr(llrs, labels))


def test_cllr_stays_finite_where_lir_overflows():
    llrs, labels = np.array([400.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1])
    expected = 0.5 * ((400 * math.log2(10) + math.log2(1.1)) / 2 + (math.log2(1.1) + math.log2(1.01)) / 2)
    assert cllr(llrs, labels) == pytest.approx(expected, rel=1e-12)
    with pytest.warns(RuntimeWarning, match="overflow"):
        assert lir_cllr(LLRData(features=llrs, labels=labels)) == INF


@pytest.mark.parametrize("seed", [0, 1])
def test_cllr_min_matches_lir(seed):
    llrs, labels = random_llrs(seed, scale=3.0, shift=0.5)
    expected = lir_cllr_min(LLRData(features=llrs, labels=labels))
    assert cllr_min(llrs, labels) == pytest.approx(expected, rel=1e-12)
    assert cllr_min(llrs, labels) <= cllr(llrs, labels)
    assert cllr_cal(llrs, labels) == pytest.approx(cllr(llrs, labels) - expected)
    assert cllr_cal(llrs, labels) > 0.5  # LLRs scaled by 3 are badly calibrated


def test_cllr_min_known_values():
    assert cllr_min([0.0, 0.0, 0.0, 0.0], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert cllr_min([-3.0, -2.0, 0.5, 4.0], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert cllr_min([-INF, -1.0, 0.0, 1.0, INF], [0, 0, 1, 1, 1]) == pytest.approx(0.0)
    # a wrong-signed infinite LLR is pooled by PAV: Cllr_min stays finite while Cllr is inf
    llrs, labels = [-INF, -1.0, 0.0, 1.0, INF], [0, 0, 1, 1, 0]
    assert cllr(llrs, labels) == INF
    assert cllr_min(llrs, labels) == pytest.approx(lir_cllr_min(LLRData(features=np.array(llrs),
                                                                        labels=np.array(labels))))


# --- input rules ---------------------------------------------------------------------------

@pytest.mark.parametrize("fn", [cllr, cllr_min, cllr_cal, ece_curve, tippett_data])
def test_empty_class_is_an_error(fn):
    with pytest.raises(ValueError, match="no H2"):
        fn([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="no H1"):
        fn([1.0, 2.0], [0, 0])


@pytest.mark.parametrize("fn", [cllr, cllr_min, ece_curve, tippett_data])
def test_nan_and_bad_labels_are_errors(fn):
    with pytest.raises(ValueError, match="NaN"):
        fn([math.nan, 1.0], [0, 1])
    with pytest.raises(ValueError, match="labels must be 0"):
        fn([0.0, 1.0], [0, 2])
    with pytest.raises(ValueError, match="one length"):
        fn([0.0, 1.0, 2.0], [0, 1])


@pytest.mark.parametrize("calibrator", [PavCalibrator, LogisticCalibrator])
def test_calibrators_reject_an_empty_class_and_nan(calibrator):
    with pytest.raises(ValueError, match="no H1"):
        calibrator().fit([0.0, 1.0], [0, 0])
    with pytest.raises(ValueError, match="NaN"):
        calibrator().fit([0.0, math.nan], [0, 1])
    with pytest.raises(RuntimeError, match="before fit"):
        calibrator().transform([0.0])


def test_log_conversions():
    assert ln_to_log10(math.log(10.0)) == pytest.approx(1.0)
    assert ln_to_log10(np.array([0.0, math.log(1000.0)])) == pytest.approx([0.0, 3.0])
    assert ln_to_log10(2.5) == pytest.approx(2.5 / math.log(10.0))
    assert ln_to_log10(INF) == INF


# --- calibrators ---------------------------------------------------------------------------

def test_pav_calibrator_is_lirs_isotonic_calibrator():
    scores, labels = random_llrs(4, n=120)
    scores = np.r_[scores, -INF, INF]
    labels = np.r_[labels, 0, 1]
    ours = PavCalibrator().fit_transform(scores, labels)
    theirs = IsotonicCalibrator().fit_transform(scores, labels)
    assert ours == pytest.approx(theirs)
    assert ours[-2] == -INF and ours[-1] == INF
    ordered = ours[np.argsort(scores, kind="stable")]
    assert np.all(ordered[1:] >= ordered[:-1])  # monotone (np.diff would give inf - inf)


def test_pav_transform_clips_and_handles_infinity():
    cal = PavCalibrator().fit([-2.0, -1.0, 0.0, 1.0, 2.0], [0, 0, 1, 0, 1])
    out = cal.transform([-INF, -5.0, 0.5, 5.0, INF])
    assert out == pytest.approx([-INF, -INF, math.log10(1.5), INF, INF])  # the 0, 1, 0, 1 block: LR 1.5
    # add_misleading keeps every output finite
    finite = PavCalibrator(add_misleading=1).fit([-2.0, -1.0, 0.0, 1.0, 2.0], [0, 0, 1, 0, 1])
    assert np.isfinite(finite.transform([-INF, 0.0, INF])).all()


def test_logistic_calibrator_matches_lir_and_recovers_the_slope():
    rng = np.random.default_rng(5)
    n = 4000
    labels = np.r_[np.ones(n, int), np.zeros(n, int)]
    scores = np.r_[rng.normal(1.0, 1.0, n), rng.normal(-1.0, 1.0, n)]  # true ln LR = 2 * score
    cal = LogisticCalibrator(C=np.inf).fit(scores, labels)
    theirs = LogitCalibrator(C=np.inf).fit(scores, labels)
    x = np.array([-INF, -1.0, 0.0, 2.0, INF])
    assert cal.transform(x) == pytest.approx(theirs.transform(x))
    slope, intercept = cal.coef
    assert slope == pytest.approx(2.0 / math.log(10.0), rel=0.05)
    assert intercept == pytest.approx(0.0, abs=0.03)


def test_logistic_calibration_repairs_overconfident_llrs():
    llrs, labels = random_llrs(6, n=2000, scale=10.0)  # informative but 10x too large
    calibrated = LogisticCalibrator().fit_transform(llrs, labels)
    assert cllr(calibrated, labels) < 0.7 < cllr(llrs, labels)
    assert cllr(calibrated, labels) == pytest.approx(cllr_min(llrs, labels), abs=0.05)


def test_logistic_calibrator_infinite_inputs():
    scores = np.array([-INF, -1.0, -0.5, 0.3, 0.0, 1.0, 2.0, INF])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    out = LogisticCalibrator().fit(scores, labels).transform(scores)
    assert out[0] == -INF and out[-1] == INF and np.isfinite(out[1:-1]).all()
    with pytest.raises(ValueError, match="inf found for H2"):
        LogisticCalibrator().fit([INF, -1.0, 1.0, 2.0], [0, 0, 1, 1])
    with pytest.raises(ValueError, match="no H1"):  # every H1 score infinite: nothing to fit a slope on
        LogisticCalibrator().fit([-1.0, 0.0, INF, INF], [0, 0, 1, 1])


# --- ECE -----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_ece_matches_lir(seed):
    llrs, labels = random_llrs(seed, n=200)
    log_odds = np.linspace(-3, 3, 61)
    priors = 1.0 / (1.0 + 10.0 ** -log_odds)
    expected = lir_calculate_ece(10.0 ** llrs, labels, priors)
    assert ece(llrs, labels, log_odds) == pytest.approx(expected, rel=1e-10)


def test_ece_curve_known_points():
    llrs, labels = random_llrs(7, n=200)
    curve = ece_curve(llrs, labels)
    assert len(curve.log_prior_odds) == 601
    mid = 300
    assert curve.log_prior_odds[mid] == pytest.approx(0.0)
    assert curve.ece[mid] == pytest.approx(cllr(llrs, labels))
    assert curve.ece_pav[mid] == pytest.approx(cllr_min(llrs, labels))
    # LR = 1 leaves the prior's entropy
    p = 1.0 / (1.0 + 10.0 ** -curve.log_prior_odds)
    assert curve.ece_reference == pytest.approx(-(p * np.log2(p) + (1 - p) * np.log2(1 - p)))
    assert np.all(curve.ece_pav <= curve.ece + 1e-12)


def test_ece_with_infinite_llrs():
    curve = ece_curve([-INF, -INF, INF, INF], [0, 0, 1, 1], log_prior_odds=[-1.0, 0.0, 1.0])
    assert curve.ece == pytest.approx([0.0, 0.0, 0.0])
    wrong = ece([INF, -1.0, 1.0, 2.0], [0, 0, 1, 1], [-1.0, 0.0, 1.0])
    assert np.all(wrong == INF)


def test_ece_stays_finite_for_large_misleading_llrs():
    llrs, labels = np.array([20.0, -1.0, 1.0, 2.0]), np.array([0, 0, 1, 1])
    assert np.isfinite(ece(llrs, labels, [0.0])).all()
    assert ece(llrs, labels, [0.0])[0] == pytest.approx(cllr(llrs, labels))
    with np.errstate(all="ignore"):  # lir: 1 - p rounds to 0, so the misleading LR costs inf
        assert lir_calculate_ece(10.0 ** llrs, labels, np.array([0.5]))[0] == INF


# --- Tippett -------------------------------------------------------------------------------

def test_tippett_data_known_values():
    data = tippett_data([1.0, 2.0, 2.0, -1.0, INF, -0.5], [1, 1, 1, 0, 0, 1])
    assert data.llrs_h1 == pytest.approx([-0.5, 1.0, 2.0])
    assert data.proportion_h1 == pytest.approx([1.0, 3 / 4, 2 / 4])  # >= -0.5, >= 1, >= 2 of 4
    assert data.llrs_h2 == pytest.approx([-1.0, INF])
    assert data.proportion_h2 == pytest.approx([1.0, 0.5])
    assert data.misleading_h1 == pytest.approx(0.25)
    assert data.misleading_h2 == pytest.approx(0.5)


def test_tippett_data_matches_slow_reference():
    llrs, labels = random_llrs(8, n=80)
    llrs = np.round(llrs, 1)  # ties
    data = tippett_data(llrs, labels)
    for values, proportions, cls in ((data.llrs_h1, data.proportion_h1, 1), (data.llrs_h2, data.proportion_h2, 0)):
        mine = [x for x, y in zip(llrs, labels) if y == cls]
        assert list(values) == sorted(set(mine))
        for v, p in zip(values, proportions):
            assert p == pytest.approx(sum(x >= v for x in mine) / len(mine))
