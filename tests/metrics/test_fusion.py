"""Logistic fusion of the FR score with an explanation LR (the evidence an explanation adds
beyond the score), against a hand computation, and on the eval path (`lr_systems` ->
`fusion_metrics`): an uninformative explanation does not beat the FR score on held-out pairs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize

from facellm.evaluation import fusion_metrics, lr_systems
from facellm.metrics.lr import LogisticFusion, cllr, cllr_drop
from facellm.tasks.base import PairLLRs, Record


def pairs(rng: np.random.Generator, n: int, explanation: str) -> list[Record]:
    """Verification records: an FR score that separates the classes; an explanation LLR that is
    random ("random"), or evidence independent of the score ("informative")."""
    labels = rng.integers(0, 2, n)
    out = []
    for i, y in enumerate(labels):
        fr = float(np.clip(rng.normal(0.62 if y else 0.5, 0.05), 0, 1))
        llr = float(rng.normal(0, 1)) if explanation == "random" else float(rng.normal(1.0 if y else -1.0, 1.0))
        out.append(Record(f"p{i}", "verification", "score", "", "", bool(y), None, False, 0.0,
                          {"fr_score": fr, "explanation": ""}, llrs=PairLLRs(llr, llr, llr)))
    return out


def hand_fusion(x: np.ndarray, y: np.ndarray, C: float = 1.0) -> tuple[np.ndarray, float]:
    """The fusion from its definition: z-score each column, minimise the class-balanced
    log loss (weights n / (2 n_c)) plus |w|^2 / (2 C), map back to raw log10 units."""
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / std
    weight = np.where(y == 1, len(y) / (2 * y.sum()), len(y) / (2 * (len(y) - y.sum())))
    sign = 2 * y - 1

    def loss(theta: np.ndarray) -> float:
        logit = z @ theta[:-1] + theta[-1]
        return float(np.sum(weight * np.logaddexp(0, -sign * logit)) + theta[:-1] @ theta[:-1] / (2 * C))

    theta = minimize(loss, np.zeros(x.shape[1] + 1), method="BFGS", options={"gtol": 1e-10}).x
    w = theta[:-1] / std / math.log(10)
    return w, float((theta[-1] - theta[:-1] @ (mean / std)) / math.log(10))


def test_fusion_matches_the_hand_computation():
    rng = np.random.default_rng(0)
    recs = pairs(rng, 400, "informative")
    x = np.array([[r.values["fr_score"], r.llrs.answer] for r in recs])
    y = np.array([r.label for r in recs], dtype=int)
    fusion = LogisticFusion().fit(x, y)
    w, b = hand_fusion(x, y)
    # sklearn's lbfgs stops at its default tolerance (1e-4): agreement to ~1e-3
    assert fusion.weights == pytest.approx(w, rel=1e-3)
    assert fusion.intercept == pytest.approx(b, rel=1e-3)
    assert fusion.transform(x) == pytest.approx(x @ w + b, rel=1e-3, abs=1e-3)


def test_one_input_fusion_is_the_logistic_calibration_eval_reports():
    rng = np.random.default_rng(1)
    test, cal = pairs(rng, 200, "random"), pairs(rng, 300, "random")
    kinds = lr_systems(test, cal, None)
    fused = fusion_metrics(kinds)
    assert set(fused) == {"verdict", "answer", "explanation"}
    assert fused["answer"]["cllr_fr_score"] == pytest.approx(kinds["fr_score"].metrics["cllr_logistic"], rel=1e-6)


def test_cllr_drop_and_its_standard_error_by_hand():
    before = np.array([1.0, -0.5, 2.0, 0.3, -1.0, 0.2])
    after = np.array([2.0, 0.5, 1.0, -0.7, -2.0, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0])
    cost = [math.log2(1 + 10 ** (-v if t else v)) for v, t in zip(before, y)]
    cost_after = [math.log2(1 + 10 ** (-v if t else v)) for v, t in zip(after, y)]
    d = np.subtract(cost, cost_after)
    drop, se = cllr_drop(before, after, y)
    assert drop == pytest.approx(cllr(before, y) - cllr(after, y))
    assert drop == pytest.approx(0.5 * (d[:3].mean() + d[3:].mean()))
    assert se == pytest.approx(0.5 * math.sqrt(d[:3].var(ddof=1) / 3 + d[3:].var(ddof=1) / 3))


def test_cllr_drop_with_an_infinite_cost_has_no_standard_error():
    drop, se = cllr_drop([-math.inf, -1.0, 1.0], [1.0, -1.0, 1.0], [1, 0, 1])
    assert drop == math.inf and math.isnan(se)


@pytest.mark.parametrize("seed", range(5))
def test_a_random_explanation_does_not_beat_the_fr_score_on_held_out_pairs(seed):
    rng = np.random.default_rng(seed)
    test, cal = pairs(rng, 1000, "random"), pairs(rng, 1000, "random")
    report = fusion_metrics(lr_systems(test, cal, None))["explanation"]
    assert report["cllr_drop"] < 2 * report["cllr_drop_se"] + 1e-3  # within noise
    assert abs(report["weight_llr"]) < 0.1  # the fit puts almost no weight on it


def test_an_independent_explanation_adds_evidence():
    rng = np.random.default_rng(7)
    test, cal = pairs(rng, 1000, "informative"), pairs(rng, 1000, "informative")
    report = fusion_metrics(lr_systems(test, cal, None))["explanation"]
    assert report["cllr_drop"] > 4 * report["cllr_drop_se"] > 0
    assert report["cllr_fusion"] < report["cllr_fr_score"]
    assert report["weight_llr"] > 0.2


def test_no_fr_score_no_fusion():
    rng = np.random.default_rng(3)
    test, cal = pairs(rng, 50, "random"), pairs(rng, 50, "random")
    for r in (*test, *cal):
        r.values["fr_score"] = None
    assert fusion_metrics(lr_systems(test, cal, None)) == {}


def test_fusion_rejects_non_finite_inputs():
    with pytest.raises(ValueError, match="non-finite"):
        LogisticFusion().fit(np.array([[0.1, np.inf], [0.2, 1.0]]), [0, 1])
