"""Self-consistency of explanations: claims against the model's own per-image answers, differences
that name one value twice, per-claim agreement with ground truth, tracking over cells."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facellm.metrics import (
    Claim,
    claim_agreement,
    claim_labels,
    parse_claims,
    score_claims,
    self_check,
    self_contradicting_differences,
    self_contradiction_rate,
    tracking,
)

EXPLANATION = """Match Verdict: Non-Match
Similarities: Both faces have brown hair.
Differences: The first face wears eyeglasses, while the second face wears no eyeglasses. Only the second face has a beard.
Overall Reasoning: The beard differs."""


def test_claims_against_the_models_own_answers():
    claims = parse_claims(EXPLANATION, faces=2)
    assert claims == [Claim("brown_hair", "both", True), Claim("eyeglasses", "first", True),
                      Claim("eyeglasses", "second", False), Claim("beard", "second", True),
                      Claim("beard", "first", False)]
    # the model, asked about each face alone: glasses on neither, beard on the second, no hair answer for face 2
    first = {"brown_hair": True, "eyeglasses": False, "beard": False}
    second = {"eyeglasses": False, "beard": True}
    check = self_check(claims, first, second)
    assert check.contradicted == (Claim("eyeglasses", "first", True),)
    assert check.not_checkable == (Claim("brown_hair", "both", True),)  # no answer about face 2's hair
    assert set(check.consistent) == {Claim("eyeglasses", "second", False), Claim("beard", "second", True),
                                     Claim("beard", "first", False)}
    assert self_contradiction_rate([check]) == pytest.approx(1 / 4)


def test_self_contradiction_rate_pools_claims_and_is_nan_without_checkable_ones():
    a = self_check(parse_claims("Similarities: Both faces wear a hat.", faces=2), {"wearing_hat": True},
                   {"wearing_hat": False})  # "both" contradicted by face 2
    b = self_check(parse_claims("Differences: The first face is smiling, while the second face is not smiling.",
                                faces=2), {"smiling": True}, {"smiling": False})
    assert (len(a.contradicted), len(b.consistent)) == (1, 2)
    assert self_contradiction_rate([a, b]) == pytest.approx(1 / 3)
    assert math.isnan(self_contradiction_rate([self_check(parse_claims("No claims here.", faces=2), {}, {})]))
    assert math.isnan(self_contradiction_rate([]))


def test_a_difference_naming_one_value_twice_contradicts_itself():
    text = ("Match Verdict: Non-Match\nSimilarities: Both faces have black hair.\n"
            "Differences: The first face has black hair, while the second face has black hair. "
            "The first face wears a hat, while the second face wears no hat. "
            "The face shape differs: round in the first face, round in the second. "
            "The eye colour differs: blue in the first face, brown in the second.\n"
            "Overall Reasoning: The hair differs.")
    found = self_contradicting_differences(text)
    assert [(d.attribute, d.value) for d in found] == [("black_hair", "yes"), ("face shape", "round")]
    assert found[0].sentence == "The first face has black hair, while the second face has black hair."
    # the same sentence under Similarities is no difference; a real difference is not flagged
    assert self_contradicting_differences("Similarities: The first face has black hair, and the second face "
                                          "has black hair.") == []
    assert self_contradicting_differences("Differences: Neither face wears glasses.")[0].value == "no"


def test_claim_agreement_against_a_hand_count():
    # 3 both, 1 self only, 2 truth only, 4 neither
    pairs = [(True, True)] * 3 + [(True, False)] + [(False, True)] * 2 + [(False, False)] * 4
    a = claim_agreement(pairs)
    assert (a.n, a.n_both, a.n_self_only, a.n_truth_only, a.n_neither) == (10, 3, 1, 2, 4)
    assert a.agreement == pytest.approx(0.7)
    assert a.precision == pytest.approx(3 / 4) and a.recall == pytest.approx(3 / 5)
    expected = 0.4 * 0.5 + 0.6 * 0.5
    assert a.kappa == pytest.approx((0.7 - expected) / (1 - expected))
    empty = claim_agreement([])
    assert empty.n == 0 and math.isnan(empty.agreement) and math.isnan(empty.kappa)
    assert math.isnan(claim_agreement([(False, False)] * 3).kappa)  # one label only: kappa undefined


def test_claim_labels_keep_claims_checkable_both_ways():
    claims = parse_claims(EXPLANATION, faces=2)
    own = self_check(claims, {"brown_hair": True, "eyeglasses": False, "beard": False},
                     {"eyeglasses": False, "beard": True})
    truth = score_claims(claims, {"hair_color": "brown", "eyeglasses": True, "beard": False},
                         {"hair_color": "black", "eyeglasses": False})  # face 2's beard unlabelled
    # brown_hair: own not checkable; beard second: truth not checkable
    assert claim_labels(claims, own, truth) == [(True, False), (False, False), (False, False)]


def test_tracking_matches_numpy_and_ranks():
    x, y = [0.1, 0.4, 0.2, 0.8, float("nan")], [0.2, 0.5, 0.1, 0.9, 0.3]
    t = tracking(x, y)
    assert t.n_cells == 4
    assert t.pearson == pytest.approx(np.corrcoef(x[:4], y[:4])[0, 1])
    ranks_x, ranks_y = np.argsort(np.argsort(x[:4])), np.argsort(np.argsort(y[:4]))
    assert t.spearman == pytest.approx(np.corrcoef(ranks_x, ranks_y)[0, 1])
    assert math.isnan(tracking([0.1, 0.2], [0.3, 0.4]).pearson)  # fewer than 3 cells
    assert math.isnan(tracking([0.1, 0.1, 0.1], [0.3, 0.4, 0.5]).spearman)  # no spread
