"""The forensic likelihood-ratio layer, in lir's language.

`llrs` are log10 likelihood ratios, `labels` are 1 for H1 (same person) and 0 for H2.
Metrics: `cllr`, `cllr_min` (Cllr after PAV), `cllr_cal = cllr - cllr_min`; data for ECE and
Tippett plots; calibrators with `fit(x, labels)` / `transform(x) -> llrs`.

Input rules, the same for every function here:
- NaN anywhere -> ValueError (lir would silently return nan).
- Both classes are required -> ValueError naming the missing class. Cllr, ECE, PAV and
  Tippett proportions are per-class averages, so with one class empty they are undefined, and
  an error at the call site beats a nan in a report table.
- +-inf LLRs are valid: a correctly signed infinite LLR costs 0, a wrongly signed one costs
  inf (so Cllr of a perfectly separating infinite set is 0, and one `+inf` under H2 makes it inf).

PAV (`cllr_min`, `PavCalibrator`, the PAV line of the ECE curve) and the logistic calibrator
are lir's own code. Cllr and ECE are written here in a log-domain form,
`log2(1 + 10**x) = logaddexp(0, x ln 10) / ln 2`, because lir computes `10**llr` first: it
overflows (a RuntimeWarning and Cllr = inf) for |llr| > 308, and its ECE turns a misleading LLR
above ~16 into inf (1 - p rounds to 0). Raw GMM LLRs (`EmbeddingLR`) reach those sizes. The tests
check both against lir on ordinary LLRs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from lir.algorithms.isotonic_regression import IsotonicCalibrator
from lir.algorithms.logistic_regression import LogitCalibrator
from lir.util import check_misleading_finite
from lir.util import ln_to_log10 as _lir_ln_to_log10
from numpy.typing import ArrayLike
from scipy.special import expit

_LN10 = np.log(10.0)
_LN2 = np.log(2.0)


def ln_to_log10(ln_values: ArrayLike) -> np.ndarray | float:
    """Natural-log values (e.g. GMM log-likelihood differences) -> log10 (lir's unit)."""
    return _lir_ln_to_log10(np.asarray(ln_values, dtype=float))


def check_llrs_labels(llrs: ArrayLike, labels: ArrayLike, *, name: str = "llrs",
                      both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies: (float array, int array of 0/1). Raises ValueError on bad input."""
    x = np.asarray(llrs, dtype=float)
    y = np.asarray(labels)
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"{name} and labels must be 1-d arrays of one length; got shapes {x.shape} and {y.shape}")
    if np.isnan(x).any():
        raise ValueError(f"{name} contain {int(np.isnan(x).sum())} NaN value(s)")
    if y.dtype == bool:
        y = y.astype(int)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (H2, different person) or 1 (H1, same person); found {np.unique(y)}")
    y = y.astype(int)
    if both_classes:
        n_h1 = int(y.sum())
        if n_h1 == 0 or n_h1 == y.size:
            missing = "H1 (label 1, same person)" if n_h1 == 0 else "H2 (label 0, different person)"
            raise ValueError(f"no {missing} samples among {y.size}: the metric needs both classes")
    return x, y


def _mean_log2_1p_pow10(x: np.ndarray) -> float:
    """mean(log2(1 + 10**x)), without overflow; +inf -> inf, -inf -> 0."""
    return float(np.mean(np.logaddexp(0.0, x * _LN10)) / _LN2)


def cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Log-likelihood-ratio cost (Bruemmer & du Preez 2006), in bits; 1 for a system that always says LR = 1.

    Equal to lir's `lir.metrics.cllr` with weights (1, 1), but overflow-free.
    """
    x, y = check_llrs_labels(llrs, labels)
    return 0.5 * (_mean_log2_1p_pow10(x[y == 0]) + _mean_log2_1p_pow10(-x[y == 1]))


def pav_llrs(llrs: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """The LLRs after the PAV transform fitted on themselves (lir's `IsotonicCalibrator`)."""
    x, y = check_llrs_labels(llrs, labels)
    return IsotonicCalibrator().fit_transform(x, y)


def cllr_min(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Cllr after the best monotone recalibration (PAV): the discrimination part of Cllr."""
    x, y = check_llrs_labels(llrs, labels)
    return cllr(pav_llrs(x, y), y)


def cllr_cal(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Cllr - Cllr_min: the part of the cost that calibration could remove."""
    return cllr(llrs, labels) - cllr_min(llrs, labels)


# ---------------------------------------------------------------------------------------------
# Calibrators


class PavCalibrator:
    """Scores or LLRs -> log10 LLRs by isotonic regression (PAV), lir's `IsotonicCalibrator`.

    Inputs outside the fitted range are clipped to it; +-inf is accepted in `fit` and
    `transform` and handled as lir does (the PAV line's ends may be +-inf LLRs).
    add_misleading: lir's option to add that many misleading points at both ends, which keeps
        the output LLRs finite.
    """

    def __init__(self, add_misleading: int = 0):
        self.add_misleading = add_misleading
        self._pav: IsotonicCalibrator | None = None

    def fit(self, x: ArrayLike, labels: ArrayLike) -> PavCalibrator:
        x, y = check_llrs_labels(x, labels, name="scores")
        self._pav = IsotonicCalibrator(add_misleading=self.add_misleading).fit(x, y)
        return self

    def transform(self, x: ArrayLike) -> np.ndarray:
        if self._pav is None:
            raise RuntimeError("PavCalibrator.transform called before fit")
        return self._pav.transform(_check_scores(x))

    def fit_transform(self, x: ArrayLike, labels: ArrayLike) -> np.ndarray:
        return self.fit(x, labels).transform(x)


class LogisticCalibrator:
    """Scores or LLRs -> log10 LLRs by logistic regression, lir's `LogitCalibrator` (class-balanced).

    The output is `a * x + b` in log10 units; +-inf inputs map to +-inf. In `fit`, correctly signed
    infinite inputs are dropped (they carry no slope information) and misleading ones
    (+inf under H2, -inf under H1) raise ValueError, as in lir.
    C: inverse L2 strength of sklearn's LogisticRegression. 1.0 is lir's default (it shrinks
        towards LR = 1 on small sets and keeps perfectly separable data finite); `np.inf` gives
        the unregularised maximum-likelihood fit.
    """

    def __init__(self, C: float = 1.0):
        self.C = C
        self._logit: LogitCalibrator | None = None

    def fit(self, x: ArrayLike, labels: ArrayLike) -> LogisticCalibrator:
        x, y = check_llrs_labels(x, labels, name="scores")
        check_misleading_finite(x, y)
        finite = np.isfinite(x)
        check_llrs_labels(x[finite], y[finite], name="finite scores")
        self._logit = LogitCalibrator(C=self.C).fit(x, y)
        return self

    def transform(self, x: ArrayLike) -> np.ndarray:
        if self._logit is None:
            raise RuntimeError("LogisticCalibrator.transform called before fit")
        return self._logit.transform(_check_scores(x))

    def fit_transform(self, x: ArrayLike, labels: ArrayLike) -> np.ndarray:
        return self.fit(x, labels).transform(x)

    @property
    def coef(self) -> tuple[float, float]:
        """(slope, intercept) of the map x -> log10 LR."""
        if self._logit is None:
            raise RuntimeError("LogisticCalibrator is not fitted")
        logit = self._logit._logit
        return float(ln_to_log10(logit.coef_[0, 0])), float(ln_to_log10(logit.intercept_[0]))


def _check_scores(x: ArrayLike) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-d array of scores; got shape {x.shape}")
    if np.isnan(x).any():
        raise ValueError(f"scores contain {int(np.isnan(x).sum())} NaN value(s)")
    return x


# ---------------------------------------------------------------------------------------------
# Data for ECE and Tippett plots


@dataclass(frozen=True)
class EceCurve:
    """Empirical cross-entropy (bits) over a grid of prior log10 odds of H1.

    ece: for the LLRs as given; ece_reference: for LR = 1 everywhere (the prior's entropy);
    ece_pav: for the LLRs after PAV (the best calibration). At log odds 0, `ece` equals Cllr
    and `ece_pav` equals Cllr_min.
    """

    log_prior_odds: np.ndarray
    ece: np.ndarray
    ece_reference: np.ndarray
    ece_pav: np.ndarray


def ece(llrs: ArrayLike, labels: ArrayLike, log_prior_odds: ArrayLike) -> np.ndarray:
    """ECE in bits at each prior log10 odds (lir's `calculate_ece`, in the log domain)."""
    x, y = check_llrs_labels(llrs, labels)
    lo = np.asarray(log_prior_odds, dtype=float).reshape(-1, 1)
    p_h1 = expit(lo[:, 0] * _LN10)
    # posterior log odds = llr + prior log odds; cost of H2 samples log2(1 + odds), of H1 log2(1 + 1/odds)
    cost_h2 = np.logaddexp(0.0, (x[y == 0] + lo) * _LN10).mean(axis=1) / _LN2
    cost_h1 = np.logaddexp(0.0, -(x[y == 1] + lo) * _LN10).mean(axis=1) / _LN2
    return p_h1 * cost_h1 + (1.0 - p_h1) * cost_h2


def ece_curve(llrs: ArrayLike, labels: ArrayLike, log_prior_odds: ArrayLike | None = None) -> EceCurve:
    """Data for an ECE plot; `log_prior_odds` defaults to 601 points on [-3, 3] (lir's range)."""
    x, y = check_llrs_labels(llrs, labels)
    grid = np.linspace(-3.0, 3.0, 601) if log_prior_odds is None else np.asarray(log_prior_odds, dtype=float)
    return EceCurve(log_prior_odds=grid, ece=ece(x, y, grid), ece_reference=ece(np.zeros_like(x), y, grid),
                    ece_pav=ece(pav_llrs(x, y), y, grid))


@dataclass(frozen=True)
class TippettData:
    """Empirical Tippett curves: for each class, the sorted LLRs and the fraction of that
    class's LLRs that are >= each value (lir's `tippett` plot_type 1, without its 100-point grid).

    misleading_h1: fraction of H1 LLRs < 0; misleading_h2: fraction of H2 LLRs > 0
    (rates of misleading evidence).
    """

    llrs_h1: np.ndarray
    proportion_h1: np.ndarray
    llrs_h2: np.ndarray
    proportion_h2: np.ndarray
    misleading_h1: float
    misleading_h2: float


def _survival(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and the fraction of `values` >= each."""
    distinct, first = np.unique(np.sort(values), return_index=True)
    return distinct, (values.size - first) / values.size


def tippett_data(llrs: ArrayLike, labels: ArrayLike) -> TippettData:
    """Data for a Tippett plot (+-inf kept as values; the plot puts them at the axis edges)."""
    x, y = check_llrs_labels(llrs, labels)
    h1, h2 = x[y == 1], x[y == 0]
    x1, p1 = _survival(h1)
    x2, p2 = _survival(h2)
    return TippettData(llrs_h1=x1, proportion_h1=p1, llrs_h2=x2, proportion_h2=p2,
                       misleading_h1=float(np.mean(h1 < 0)), misleading_h2=float(np.mean(h2 > 0)))


# ---------------------------------------------------------------------------------------------
# Fusion: the evidence one system adds to another


class LogisticFusion:
    """Several systems' scores or LLRs on the same pairs -> one log10 LLR by class-balanced
    logistic regression on the stacked inputs (BOSARIS `train_linear_fuser`; lir's logistic
    calibrator is one-dimensional). The output is `weights @ x + intercept` in log10 units.

    Each input column is standardised on the fit data first (z-scores), as `lr_report` does for
    one system: the L2 penalty then acts alike on an FR similarity in [0.4, 0.8] and an LLR
    in [-50, 50]. `weights` and `intercept` are reported back in raw input units.
    C: inverse L2 strength of sklearn's LogisticRegression (1.0, lir's default).
    """

    def __init__(self, C: float = 1.0):
        self.C = C
        self._model = None
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    @staticmethod
    def _columns(x: ArrayLike) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        x = x.reshape(-1, 1) if x.ndim == 1 else x
        if x.ndim != 2 or not np.isfinite(x).all():
            raise ValueError(f"expected a finite (n, k) array of scores; got shape {x.shape} "
                             f"with {int((~np.isfinite(x)).sum())} non-finite value(s)")
        return x

    def fit(self, x: ArrayLike, labels: ArrayLike) -> LogisticFusion:
        from sklearn.linear_model import LogisticRegression

        x = self._columns(x)
        _, y = check_llrs_labels(np.zeros(len(x)), labels, name="scores")
        self._mean, std = x.mean(axis=0), x.std(axis=0)
        self._std = np.where(std > 0, std, 1.0)
        self._model = LogisticRegression(C=self.C, class_weight="balanced").fit((x - self._mean) / self._std, y)
        return self

    def transform(self, x: ArrayLike) -> np.ndarray:
        """log10 LLRs of the fused systems."""
        if self._model is None:
            raise RuntimeError("LogisticFusion.transform called before fit")
        x = self._columns(x)
        # class-balanced weights: the log odds are the log LR at equal priors
        return self._model.decision_function((x - self._mean) / self._std) / _LN10

    def fit_transform(self, x: ArrayLike, labels: ArrayLike) -> np.ndarray:
        return self.fit(x, labels).transform(x)

    @property
    def weights(self) -> np.ndarray:
        """log10 LR per unit of each raw input."""
        if self._model is None:
            raise RuntimeError("LogisticFusion is not fitted")
        return self._model.coef_[0] / self._std / _LN10

    @property
    def intercept(self) -> float:
        if self._model is None:
            raise RuntimeError("LogisticFusion is not fitted")
        return float((self._model.intercept_[0] - self._model.coef_[0] @ (self._mean / self._std)) / _LN10)


def _costs(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample Cllr costs in bits: log2(1 + 10**-llr) under H1, log2(1 + 10**llr) under H2."""
    signed = np.where(y == 1, -x, x)
    return np.logaddexp(0.0, signed * _LN10) / _LN2


def cllr_drop(llrs_before: ArrayLike, llrs_after: ArrayLike, labels: ArrayLike) -> tuple[float, float]:
    """(Cllr(before) - Cllr(after), its standard error) on the same pairs: how much a second
    system (fused into `after`) lowers the cost. Cllr is a class-balanced mean of per-pair costs,
    so the drop is the same mean of per-pair cost differences, and its standard error is
    0.5 * sqrt(var_H1 / n_H1 + var_H2 / n_H2) of those differences (nan with fewer than two
    pairs of a class or an infinite cost). It treats the systems as fixed: fitted elsewhere."""
    before, y = check_llrs_labels(llrs_before, labels)
    after, _ = check_llrs_labels(llrs_after, labels)
    drop = cllr(before, y) - cllr(after, y)
    cost_before, cost_after = _costs(before, y), _costs(after, y)
    if not (np.isfinite(cost_before).all() and np.isfinite(cost_after).all()) or min(y.sum(), (1 - y).sum()) < 2:
        return drop, float("nan")
    d = cost_before - cost_after
    se = 0.5 * np.sqrt(np.var(d[y == 1], ddof=1) / y.sum() + np.var(d[y == 0], ddof=1) / (1 - y).sum())
    return drop, float(se)
