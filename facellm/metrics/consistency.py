"""Faithfulness without ground truth: does a model contradict its own explanation?

A pairwise explanation claims attributes of two faces ("the first face wears eyeglasses, while
the second wears none"). Asked about each face on its own (the attributes task's describe or
yes/no prompts), the same model gives its per-image answers. A claim the model's own answers
contradict is a self-contradiction; the rate of them needs no labels, so it applies to real
photos. On SynthFace it is validated against the exact ground truth (`claim_agreement`,
`tracking`).

    claims = parse_claims("Differences: The first face wears eyeglasses, while the second does not.", faces=2)
    check = self_check(claims, {"eyeglasses": False}, {"eyeglasses": False})
    check.contradicted == (Claim("eyeglasses", "first", True),)
    self_contradiction_rate([check]) == 0.5

A "difference" can also contradict itself, with no answers at all: "The first face has black
hair, while the second face has black hair" under `Differences:` names one value for both faces
(`self_contradicting_differences`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from facellm.metrics.faithfulness import Claim, ClaimCheck, parse_claims, score_claims


@dataclass(frozen=True)
class SelfCheck:
    """Claims of one explanation against the model's own per-image answers. consistent: every
    face the claim covers got the claimed value; contradicted: at least one got the opposite;
    not_checkable: no contradiction, but the model gave no answer for a covered face."""

    consistent: tuple[Claim, ...] = ()
    contradicted: tuple[Claim, ...] = ()
    not_checkable: tuple[Claim, ...] = ()


def self_check(claims: Sequence[Claim], answers_first: Mapping[str, bool],
               answers_second: Mapping[str, bool] | None = None) -> SelfCheck:
    """Check claims against the model's answers about each face ({"eyeglasses": True, ...},
    `parse_attributes` / `parse_yes_no` of its replies); the rules of `score_claims`."""
    check: ClaimCheck = score_claims(claims, dict(answers_first), dict(answers_second or {}))
    return SelfCheck(check.supported, check.hallucinated, check.unverifiable)


def self_contradiction_rate(checks: Sequence[SelfCheck]) -> float:
    """Contradicted / checkable (consistent + contradicted) claims, pooled; nan if none."""
    bad = sum(len(c.contradicted) for c in checks)
    checkable = bad + sum(len(c.consistent) for c in checks)
    return bad / checkable if checkable else math.nan


# ---------------------------------------------------------------- self-contradicting differences

_DIFFERENCES_RE = re.compile(r"^[\s*_#>-]*differences[\s*_]*:(?P<body>.*?)(?=^[\s*_#>-]*(?:match\s+verdict|similarities"
                             r"|overall\s+reasoning)[\s*_]*:|\Z)", re.IGNORECASE | re.MULTILINE | re.DOTALL)
# the verification targets' trait sentence: "The face shape differs: round in the first face, round in the second."
_TRAIT_RE = re.compile(r"\bthe\s+(?P<name>[a-z ]+?)\s+differs?\s*:\s*(?P<a>[\w -]+?)\s+in\s+the\s+first(?:\s+face)?\s*,"
                       r"\s*(?P<b>[\w -]+?)\s+in\s+the\s+second\b", re.IGNORECASE)


class SameValueDifference(NamedTuple):
    """A difference that names one value for both faces: attribute (a vocabulary key, or the
    trait's name), the value both are given, and the sentence that says so."""

    attribute: str
    value: str
    sentence: str


def differences_section(text: str) -> str:
    """The text of an explanation's `Differences:` section ("" when it has none)."""
    match = _DIFFERENCES_RE.search(text)
    return match.group("body").strip() if match else ""


def self_contradicting_differences(text: str) -> list[SameValueDifference]:
    """Differences of an explanation (its `Differences:` section) that name the same value for
    both faces, so contradict themselves whatever the images show: attribute claims that give
    the first and the second face one value ("black hair, while the second face has black
    hair"; "both faces have a beard" under Differences) and trait sentences with one value twice
    ("The face shape differs: round in the first face, round in the second")."""
    out = []
    for sentence in re.split(r"(?<=[.!?;])\s+|\n", differences_section(text)):
        values: dict[str, dict[int, bool]] = {}
        for claim in parse_claims("Differences: " + sentence, faces=2):
            faces = {"first": (0,), "second": (1,)}.get(claim.subject, (0, 1))
            value = claim.value if claim.subject in ("first", "second", "both") else not claim.value
            for face in faces:
                values.setdefault(claim.attribute, {}).setdefault(face, value)
        out += [SameValueDifference(key, "yes" if v[0] else "no", sentence.strip())
                for key, v in values.items() if len(v) == 2 and v[0] == v[1]]
        for m in _TRAIT_RE.finditer(sentence):
            if m.group("a").strip().lower() == m.group("b").strip().lower():
                out.append(SameValueDifference(m.group("name").strip().lower(), m.group("a").strip().lower(),
                                               sentence.strip()))
    return out


# ---------------------------------------------------------------- validation against ground truth


class ClaimAgreement(NamedTuple):
    """Per-claim agreement of self-contradiction with hallucination, over the claims both the
    model's answers and the ground truth can check. n_both: self-contradicted and hallucinated;
    n_self_only, n_truth_only, n_neither likewise. precision: of the self-contradicted claims,
    the share hallucinated; recall: of the hallucinated claims, the share self-contradicted;
    kappa: Cohen's kappa of the two labels (nan when undefined)."""

    n: int
    n_both: int
    n_self_only: int
    n_truth_only: int
    n_neither: int
    agreement: float
    precision: float
    recall: float
    kappa: float


def claim_agreement(pairs: Sequence[tuple[bool, bool]]) -> ClaimAgreement:
    """pairs: (self-contradicted, hallucinated) for each claim that both can check."""
    both = sum(s and t for s, t in pairs)
    self_only = sum(s and not t for s, t in pairs)
    truth_only = sum(t and not s for s, t in pairs)
    n = len(pairs)
    neither = n - both - self_only - truth_only
    ratio = lambda a, b: a / b if b else math.nan
    observed = ratio(both + neither, n)
    p_self, p_truth = ratio(both + self_only, n), ratio(both + truth_only, n)
    expected = p_self * p_truth + (1 - p_self) * (1 - p_truth)
    kappa = (observed - expected) / (1 - expected) if n and expected < 1 else math.nan
    return ClaimAgreement(n, both, self_only, truth_only, neither, observed, ratio(both, both + self_only),
                          ratio(both, both + truth_only), kappa)


def claim_labels(claims: Sequence[Claim], own: SelfCheck, truth: ClaimCheck) -> list[tuple[bool, bool]]:
    """(self-contradicted, hallucinated) of each claim checkable both ways, in claim order."""
    own_ok, own_bad = set(own.consistent), set(own.contradicted)
    truth_ok, truth_bad = set(truth.supported), set(truth.hallucinated)
    return [(c in own_bad, c in truth_bad) for c in claims
            if c in own_ok | own_bad and c in truth_ok | truth_bad]


class Tracking(NamedTuple):
    """How one rate tracks another over cells (systems x prompt variants): Pearson's r and
    Spearman's rho over the cells where both are defined (nan with fewer than 3, or no spread)."""

    n_cells: int
    pearson: float
    spearman: float


def tracking(xs: Sequence[float], ys: Sequence[float]) -> Tracking:
    from scipy.stats import pearsonr, spearmanr

    pairs = [(x, y) for x, y in zip(xs, ys) if not (math.isnan(x) or math.isnan(y))]
    if len(pairs) < 3:
        return Tracking(len(pairs), math.nan, math.nan)
    x, y = np.array(pairs, float).T
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return Tracking(len(pairs), math.nan, math.nan)
    return Tracking(len(pairs), float(pearsonr(x, y)[0]), float(spearmanr(x, y)[0]))
