"""Metrics as pure functions of per-sample arrays, plus LR calibration, explanation LRs and
claim faithfulness. Conventions: log10 `llrs`, labels 1 = H1 = same person (lir).

- `classification`: accuracy / war, uar, macro_f1, confusion_matrix, mae, per-attribute accuracy.
- `verification`: roc_curve, det_curve, roc_auc, eer, tmr_at_fmr on comparison scores.
- `lr`: cllr, cllr_min, cllr_cal, ECE and Tippett data, PAV and logistic calibrators, logistic
  fusion and the Cllr drop it brings.
- `embedding_lr`: LLRs from explanation texts (Sony et al.: embeddings + PCA + two GMMs).
- `faithfulness`: attribute claims in explanations, checked against ground truth.
- `consistency`: the same claims checked against the model's own per-image answers (no ground
  truth needed), and how well that tracks the ground-truth check.
- `separability`: how far explanation embeddings of mated and non-mated pairs separate.
- `demographics`: per-group match rates and max/min ratios (NIST FRVT Part 3).
"""

from facellm.metrics.classification import (
    accuracy,
    confusion_matrix,
    macro_f1,
    mae,
    mean_accuracy,
    parse_rate,
    per_attribute_accuracy,
    per_class_recall,
    uar,
    war,
)
from facellm.metrics.consistency import (
    ClaimAgreement,
    SameValueDifference,
    SelfCheck,
    Tracking,
    claim_agreement,
    claim_labels,
    differences_section,
    self_check,
    self_contradicting_differences,
    self_contradiction_rate,
    tracking,
)
from facellm.metrics.demographics import Differential, MatchRates, match_rates, max_min_ratio
from facellm.metrics.embedding_lr import EmbeddingLR, SentenceEmbedder
from facellm.metrics.faithfulness import (
    Claim,
    ClaimCheck,
    ClaimCounts,
    claim_facts,
    claims_per_explanation,
    hallucinated_claim_rate,
    hallucinating_explanation_rate,
    parse_claims,
    score_claims,
    supported_claim_rate,
    unverifiable_claim_rate,
)
from facellm.metrics.lr import (
    EceCurve,
    LogisticCalibrator,
    LogisticFusion,
    PavCalibrator,
    TippettData,
    cllr,
    cllr_cal,
    cllr_drop,
    cllr_min,
    ece,
    ece_curve,
    ln_to_log10,
    pav_llrs,
    tippett_data,
)
from facellm.metrics.separability import Separability, fisher_ratio, separability
from facellm.metrics.verification import (
    DetCurve,
    EqualErrorRate,
    OperatingPoint,
    RocCurve,
    det_curve,
    eer,
    eer_point,
    operating_point,
    roc_auc,
    roc_curve,
    tmr_at_fmr,
)

__all__ = [
    "Claim", "ClaimAgreement", "ClaimCheck", "ClaimCounts", "SameValueDifference", "SelfCheck", "Tracking", "DetCurve", "Differential", "EceCurve", "EmbeddingLR", "EqualErrorRate",
    "LogisticCalibrator", "LogisticFusion", "MatchRates", "OperatingPoint", "PavCalibrator", "RocCurve",
    "SentenceEmbedder", "Separability", "TippettData",
    "accuracy", "claim_agreement", "claim_facts", "claim_labels", "claims_per_explanation", "cllr", "cllr_cal", "cllr_drop", "cllr_min", "confusion_matrix",
    "det_curve", "differences_section", "ece", "ece_curve", "eer", "eer_point", "fisher_ratio", "hallucinated_claim_rate",
    "hallucinating_explanation_rate", "ln_to_log10", "macro_f1", "mae", "match_rates",
    "max_min_ratio", "mean_accuracy", "operating_point", "parse_claims", "parse_rate", "pav_llrs",
    "per_attribute_accuracy", "per_class_recall", "roc_auc", "roc_curve", "score_claims", "self_check", "self_contradicting_differences",
    "self_contradiction_rate", "separability",
    "supported_claim_rate", "tippett_data", "tmr_at_fmr", "tracking", "uar", "unverifiable_claim_rate", "war",
]
