"""Face verification QA on two images, in the answer format of Sony et al. (IWBF 2026):

    Match Verdict: Match
    Similarities: Both faces have brown hair. Both faces have a round face shape.
    Differences: The first face wears eyeglasses, while the second face wears no eyeglasses.
    Overall Reasoning: The identity traits agree; the differences are accessories or expression,
    which change between photos of one person. The FR score of 0.81 also supports a match.

Prompt variants: `images_only`; `score` appends `[Model Scores]\n{"FR": [0.81]}`;
`score_decision` appends `[Model Scores]\n{"FR": [0.81, "Match"]}` where the decision is
`score >= threshold` (the threshold is set on training pairs, see `decision_threshold`).

Targets use only ground truth: attributes both faces share, attributes that differ, and the
identity traits a dataset records in `meta["traits"]` (SynthFace: face shape, skin tone ...).
Pairs without any annotation get "Not annotated." similarities and differences.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from facellm import metrics as M
from facellm.attributes import BINARY_ATTRIBUTES
from facellm.schema import FacePair, Sample
from facellm.tasks.base import (
    Aggregation,
    Conversation,
    Record,
    Scored,
    TaskDefaults,
    accuracy,
    parse_rate,
)

# Attributes that change between photos of one person; the others count as identity evidence.
IMAGE_LEVEL = frozenset({"eyeglasses", "wearing_hat", "wearing_earrings", "wearing_lipstick", "smiling",
                         "mouth_slightly_open", "heavy_makeup", "wearing_necklace", "wearing_necktie"})
FORMAT = ("Answer in this format:\nMatch Verdict: Match or Non-Match\nSimilarities: ...\nDifferences: ...\n"
          "Overall Reasoning: ...")
PROMPTS = (
    "Are these two face images of the same person? " + FORMAT,
    "Compare the two faces and decide whether they show the same person. " + FORMAT,
    "Do the first and the second image show one person or two different people? " + FORMAT,
)
_PLURAL = {"has": "have", "wears": "wear", "is": "are", "looks": "look", "does": "do"}


def _both(clause: str) -> str:
    """'{who} has a beard' -> 'Both faces have a beard'."""
    verb, _, rest = clause.removeprefix("{who} ").partition(" ")
    return f"Both faces {_PLURAL.get(verb, verb)} {rest}"


HAIR_KEYS = frozenset(f"{c}_hair" for c in ("black", "blond", "brown", "gray", "red"))


def describe_pair(first: dict[str, Any], second: dict[str, Any], traits_first: dict[str, str],
                  traits_second: dict[str, str]) -> tuple[list[str], list[str], list[str]]:
    """Similarity and difference sentences from ground truth, and the names of differing identity cues.

    Categorical attributes (`hair_color`, `age_group`) are stated once ("The first face has blond
    hair, while the second face has gray hair.") instead of through their one-hot binary keys.
    """
    same, diff, identity_diffs = [], [], []
    for name in sorted(set(traits_first) & set(traits_second)):
        a, b = traits_first[name], traits_second[name]
        if a == b:
            same.append(f"Both faces have the same {name} ({a}).")
        else:
            diff.append(f"The {name} differs: {a} in the first face, {b} in the second.")
            identity_diffs.append(name)
    covered: set[str] = set()
    hair_a, hair_b = first.get("hair_color"), second.get("hair_color")
    if isinstance(hair_a, str) and isinstance(hair_b, str):
        covered |= HAIR_KEYS
        if hair_a == hair_b:
            same.append(f"Both faces have {hair_a} hair.")
        else:
            diff.append(f"The first face has {hair_a} hair, while the second face has {hair_b} hair.")
            identity_diffs.append("hair colour")
    age_a, age_b = first.get("age_group"), second.get("age_group")
    if isinstance(age_a, str) and isinstance(age_b, str):
        covered.add("young")
        if age_a == age_b:
            same.append(f"Both faces have the same age group ({age_a}).")
        else:
            diff.append(f"The age group differs: {age_a} in the first face, {age_b} in the second.")
            identity_diffs.append("age group")
    for key, attr in BINARY_ATTRIBUTES.items():
        a, b = first.get(key), second.get(key)
        if key in covered or not (isinstance(a, bool) and isinstance(b, bool)):
            continue
        if a and b:
            same.append(_both(attr.has) + ".")
        elif a != b:
            clause_a = (attr.has if a else attr.lacks).format(who="the first face")
            clause_b = (attr.has if b else attr.lacks).format(who="the second face")
            diff.append(f"{clause_a[0].upper()}{clause_a[1:]}, while {clause_b}.")
            if key not in IMAGE_LEVEL:
                identity_diffs.append(attr.noun)
    return same, diff, identity_diffs


def decision_threshold(scores: np.ndarray, same: np.ndarray, fmr: float = 0.01) -> float:
    """The score threshold whose false-match rate on these (training) pairs is at most `fmr`."""
    impostors = np.sort(np.asarray(scores, float)[~np.asarray(same, bool)])
    if len(impostors) == 0:
        raise ValueError("decision_threshold needs impostor pairs")
    k = int(np.floor(fmr * len(impostors)))  # impostors allowed at or above the threshold
    return float(impostors[len(impostors) - k - 1] + 1e-6) if k < len(impostors) else float(impostors[0])


class VerificationTask(TaskDefaults):
    """Metrics per prompt variant ("verification/score"): verdict accuracy; AUC, EER and TMR of
    the answer LLR when likelihood scoring ran; the faithfulness of the explanations' attribute
    claims against ground truth; their self-consistency when it ran."""

    name = "verification"
    variants = ("images_only", "score", "score_decision")
    report_metrics = ("accuracy", "auc", "eer", "tmr_at_fmr_1e2", "tmr_at_fmr_1e3", "parse_rate")

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold

    def applies_to(self, sample: Sample) -> bool:
        return isinstance(sample, FacePair)

    def conversations(self, sample: FacePair, rng: random.Random,
                      variants: tuple[str, ...] | None = None) -> list[Conversation]:
        out = []
        for variant in variants or self.variants:
            if variant not in self.variants:
                raise ValueError(f"verification task has no variant {variant!r}; choose from {self.variants}")
            if variant != "images_only" and sample.fr_score is None:
                continue
            prompt = rng.choice(PROMPTS) + self.score_block(sample.fr_score, variant)
            extras = {"same": sample.same, "fr_score": sample.fr_score, "threshold": self.threshold,
                      "truth_first": sample.first.attributes, "truth_second": sample.second.attributes}
            out.append(Conversation(sample.id, self.name, variant, prompt, self.target(sample, variant),
                                    [sample.first.image, sample.second.image], extras))
        return out

    def score_block(self, score: float | None, variant: str) -> str:
        if variant == "images_only":
            return ""
        entry = [round(score, 2)] if variant == "score" else [round(score, 2), self._decision(score)]
        return "\n[Model Scores]\n" + json.dumps({"FR": entry})

    def _decision(self, score: float) -> str:
        return "Match" if score >= self.threshold else "Non-Match"

    def target(self, pair: FacePair, variant: str) -> str:
        same, diff, identity_diffs = describe_pair(pair.first.attributes, pair.second.attributes,
                                                   pair.first.meta.get("traits", {}),
                                                   pair.second.meta.get("traits", {}))
        annotated = bool(same or diff)
        if pair.same:
            reason = ("The identity traits agree, and the differences are accessories or expression, "
                      "which change between photos of one person." if annotated else
                      "The two faces show the same person.")
        else:
            reason = (f"The faces differ in identity traits ({', '.join(identity_diffs)}), "
                      "which do not change between photos of one person."
                      if identity_diffs else "The two faces show different people.")
        if variant != "images_only" and pair.fr_score is not None:
            agrees = (pair.fr_score >= self.threshold) == pair.same
            verdict_word = "match" if pair.same else "non-match"
            reason += (f" The FR score of {pair.fr_score:.2f} also supports a {verdict_word}." if agrees else
                       f" The FR score of {pair.fr_score:.2f} points the other way, but the visible traits decide.")
        none = "None observed." if annotated else "Not annotated."
        return (f"Match Verdict: {'Match' if pair.same else 'Non-Match'}\n"
                f"Similarities: {' '.join(same) or none}\n"
                f"Differences: {' '.join(diff) or none}\n"
                f"Overall Reasoning: {reason}")

    def parse(self, response: str, conversation: Conversation) -> dict[str, Any]:
        return parse_verification(response)

    def score(self, parsed: dict[str, Any], conversation: Conversation) -> Scored:
        """values: fr_score and fr_threshold (the pair's FR score and the decision threshold,
        when the dataset has them), explanation (everything after the verdict line), claims
        (its attribute claims against ground truth: supported / hallucinated / unverifiable)."""
        extras = conversation.extras
        same, verdict = extras["same"], parsed["verdict"]
        correct = verdict is not None and (verdict == "Match") == same
        check = M.score_claims(M.parse_claims(parsed["explanation"], faces=2), extras["truth_first"],
                               extras["truth_second"])
        return Scored(same, verdict, correct, float(correct),
                      {"fr_score": extras.get("fr_score"), "fr_threshold": extras.get("threshold"),
                       "explanation": parsed["explanation"], "claims": asdict(check.counts())})

    def metric_group(self, variant: str) -> str:
        return f"{self.name}/{variant}"

    def aggregations(self) -> dict[str, Aggregation]:
        return {"accuracy": accuracy, "parse_rate": parse_rate,
                **{name: _on_answer_llr(fn) for name, fn in (
                    ("auc", M.roc_auc), ("eer", M.eer), ("tmr_at_fmr_1e2", lambda y, s: M.tmr_at_fmr(y, s, 1e-2)),
                    ("tmr_at_fmr_1e3", lambda y, s: M.tmr_at_fmr(y, s, 1e-3)))},
                "faithfulness": faithfulness, "self_consistency": self_consistency}

    def prompt_variant(self, prompt: str) -> str | None:
        if not any(prompt.startswith(p) for p in PROMPTS):
            return None
        if "[Model Scores]" not in prompt:
            return "images_only"
        return "score_decision" if '"Match"]' in prompt or '"Non-Match"]' in prompt else "score"

    def answer_text(self, parsed: dict[str, Any]) -> str:
        return parsed["verdict"] or "no verdict"


def _on_answer_llr(metric: Any) -> Aggregation:
    """`metric(labels, scores)` on the answer LLRs; None without them or without both classes."""
    def aggregate(rs: Sequence[Record]) -> float | None:
        labels = np.array([r.label for r in rs], dtype=int)
        if any(r.llrs is None for r in rs) or len(set(labels)) < 2:
            return None
        return metric(labels, np.array([r.llrs.answer for r in rs]))
    return aggregate


def faithfulness(rs: Sequence[Record]) -> dict[str, float]:
    """Pooled claim rates over the records' explanations (facellm.metrics' rates on their claim
    counts); nan for no records."""
    if not rs:
        return dict.fromkeys(("hallucinated_claim_rate", "supported_claim_rate", "claims_per_explanation",
                              "explanations_with_hallucination"), math.nan)
    counts = [M.ClaimCounts(**r.values["claims"]) for r in rs]
    return {"hallucinated_claim_rate": M.hallucinated_claim_rate(counts),
            "supported_claim_rate": M.supported_claim_rate(counts),
            "claims_per_explanation": M.claims_per_explanation(counts),
            "explanations_with_hallucination": M.hallucinating_explanation_rate(counts)}


def self_consistency(rs: Sequence[Record]) -> dict[str, Any] | None:
    """Pooled self-consistency of explanations (`Record.self_check`; None unless every record
    has it): self_contradiction_rate (contradicted / checkable claims), not_checkable_rate
    (claims the model's own answers do not cover / all claims),
    explanations_with_same_value_difference; beside them the ground-truth hallucinated_claim_rate
    and the per-claim agreement of the two (`ClaimAgreement`) over the claims both can check, and
    how the per-explanation rates track each other (`Tracking`)."""
    if not rs or any(r.self_check is None for r in rs):
        return None
    checks = [r.self_check for r in rs]
    totals = {k: sum(getattr(c, k) for c in checks) for k in ("consistent", "contradicted", "not_checkable")}
    checkable, n = totals["consistent"] + totals["contradicted"], sum(totals.values())
    counts = {k: sum(c.agreement[k] for c in checks) for k in ("both", "self_only", "truth_only", "neither")}
    per = [((a["both"] + a["self_only"]) / n_a, (a["both"] + a["truth_only"]) / n_a)
           for a in (c.agreement for c in checks) if (n_a := sum(a.values()))]
    per_explanation = M.tracking([p[0] for p in per], [p[1] for p in per])
    return {"n_claims": n, **{f"n_{k}": v for k, v in totals.items()},
            "self_contradiction_rate": totals["contradicted"] / checkable if checkable else math.nan,
            "not_checkable_rate": totals["not_checkable"] / n if n else math.nan,
            "explanations_with_same_value_difference": float(np.mean([c.same_value_differences > 0 for c in checks])),
            "hallucinated_claim_rate": faithfulness(rs)["hallucinated_claim_rate"],
            "agreement": claim_agreement(counts)._asdict(), "per_explanation": per_explanation._asdict()}


def claim_agreement(counts: Mapping[str, int]) -> M.ClaimAgreement:
    """ClaimAgreement of the counts "both" / "self_only" / "truth_only" / "neither"."""
    return M.claim_agreement([(True, True)] * counts["both"] + [(True, False)] * counts["self_only"]
                             + [(False, True)] * counts["truth_only"] + [(False, False)] * counts["neither"])


# tolerant of markdown emphasis ("**Match Verdict:** Match"), which chat models often add
_VERDICT = re.compile(r"match\s+verdict[\s*_]*:[\s*_]*(non[- ]?match|match|uncertain)", re.IGNORECASE)
_SECTION = re.compile(r"^[\s*_-]*(similarities|differences|overall reasoning)[\s*_]*:[\s*_]*(.*)$",
                      re.IGNORECASE | re.MULTILINE)


def parse_verification(text: str) -> dict[str, Any]:
    """Verdict ("Match" | "Non-Match" | "Uncertain" | None) and the explanation sections.

    `explanation` is everything after the verdict line: what the LR metrics embed and score.
    """
    match = _VERDICT.search(text)
    verdict = None
    if match:
        word = match.group(1).lower().replace(" ", "-")
        verdict = {"match": "Match", "uncertain": "Uncertain"}.get(word, "Non-Match")
    sections = {m.group(1).lower(): m.group(2).strip() for m in _SECTION.finditer(text)}
    explanation = text[match.end():].strip() if match else text.strip()
    return {"verdict": verdict, "similarities": sections.get("similarities"),
            "differences": sections.get("differences"), "reasoning": sections.get("overall reasoning"),
            "explanation": explanation}
