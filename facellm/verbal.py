"""Likelihood ratios in words, as forensic reports state them (ENFSI Guideline for Evaluative
Reporting in Forensic Science, 2015):

    LR                    log10 LR    wording
    1 - 10                0 - 1       weak support
    10 - 100              1 - 2       moderate support
    100 - 1,000           2 - 3       moderately strong support
    1,000 - 10,000        3 - 4       strong support
    10,000 - 1,000,000    4 - 6       very strong support
    above 1,000,000       6 -         extremely strong support

for H1 (the same person) rather than H2 (different persons). Each band includes its lower
bound: LR = 10 is "moderate support". An LR below 1 supports H2 as strongly as 1/LR supports
H1 and is worded the same way "for different persons"; LR = 1 supports neither.

    >>> verbal_scale(2.5)
    'moderately strong support for the same person'
    >>> verbal_scale(-0.3), format_lr(-0.3)
    ('weak support for different persons', '0.501')
"""

from __future__ import annotations

import math

H1, H2 = "the same person", "different persons"
# (least |log10 LR|, words), strongest first
SCALE: tuple[tuple[float, str], ...] = (
    (6.0, "extremely strong support"),
    (4.0, "very strong support"),
    (3.0, "strong support"),
    (2.0, "moderately strong support"),
    (1.0, "moderate support"),
    (0.0, "weak support"),
)
NEUTRAL = "no support for either proposition"


def verbal_scale(log10_lr: float) -> str:
    """The wording of a log10 LR, e.g. "moderate support for the same person"; +-inf is
    extremely strong support. Raises ValueError for NaN."""
    if math.isnan(log10_lr):
        raise ValueError("a NaN log10 LR has no verbal equivalent")
    if log10_lr == 0:
        return NEUTRAL
    strength = abs(log10_lr)
    words = next(words for lower, words in SCALE if strength >= lower)
    return f"{words} for {H1 if log10_lr > 0 else H2}"


def format_lr(log10_lr: float) -> str:
    """The LR as a number people read, without overflow: "0.501", "45.7", "12,300",
    "3.2 × 10^7", "∞". Raises ValueError for NaN."""
    if math.isnan(log10_lr):
        raise ValueError("a NaN log10 LR is not a number to show")
    if math.isinf(log10_lr):
        return "∞" if log10_lr > 0 else "0"
    if -3 <= log10_lr < 6:
        lr = 10.0 ** log10_lr
        return f"{lr:,.0f}" if lr >= 999.5 else f"{lr:.3g}"
    exponent = math.floor(log10_lr)
    mantissa = round(10.0 ** (log10_lr - exponent), 1)
    if mantissa >= 10:  # 9.96 rounds up to the next power
        mantissa, exponent = 1.0, exponent + 1
    return f"{mantissa:.1f} × 10^{exponent}"
