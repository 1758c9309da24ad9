"""Classification metrics as pure functions of per-sample labels and predictions (lm-eval style).

A prediction is whatever the task's parser returned: a class (str, bool, int) or `None` when
the response could not be parsed. `None`, and any prediction outside `classes`, counts as
wrong and never raises. Labels must be real classes. Empty input raises ValueError.

Example: expression labels ["happy", "sad", "sad"], predictions ["happy", None, "sad"]
-> accuracy 2/3, uar = mean(recall happy 1, recall sad 1/2) = 0.75.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

Prediction = Hashable | None


def _check(labels: Sequence[Hashable], preds: Sequence[Prediction]) -> None:
    if len(labels) != len(preds):
        raise ValueError(f"{len(labels)} labels but {len(preds)} predictions")
    if len(labels) == 0:
        raise ValueError("no samples")
    if any(label is None for label in labels):
        raise ValueError("labels contain None; drop unlabelled samples before scoring")


def _hits(labels: Sequence[Hashable], preds: Sequence[Prediction]) -> np.ndarray:
    return np.array([p is not None and p == t for t, p in zip(labels, preds)], dtype=bool)


def accuracy(labels: Sequence[Hashable], preds: Sequence[Prediction]) -> float:
    """Fraction of predictions equal to the label."""
    _check(labels, preds)
    return float(_hits(labels, preds).mean())


def war(labels: Sequence[Hashable], preds: Sequence[Prediction]) -> float:
    """Weighted average recall (the expression-recognition name for accuracy)."""
    return accuracy(labels, preds)


def parse_rate(preds: Sequence[Prediction]) -> float:
    """Fraction of predictions that were parsed (not None)."""
    if len(preds) == 0:
        raise ValueError("no predictions")
    return sum(p is not None for p in preds) / len(preds)


def _classes(labels: Sequence[Hashable], classes: Sequence[Hashable] | None) -> list[Hashable]:
    if classes is not None:
        return list(classes)
    return sorted(set(labels), key=str)


def per_class_recall(labels: Sequence[Hashable], preds: Sequence[Prediction],
                     classes: Sequence[Hashable] | None = None) -> dict[Hashable, float]:
    """Recall of each class that occurs among the labels (classes without support are left out)."""
    _check(labels, preds)
    hits = _hits(labels, preds)
    truth = np.array(labels, dtype=object)
    out = {}
    for c in _classes(labels, classes):
        support = truth == c
        if support.any():
            out[c] = float(hits[support].mean())
    return out


def uar(labels: Sequence[Hashable], preds: Sequence[Prediction],
        classes: Sequence[Hashable] | None = None) -> float:
    """Unweighted average recall: the mean per-class recall over classes with support."""
    return float(np.mean(list(per_class_recall(labels, preds, classes).values())))


def macro_f1(labels: Sequence[Hashable], preds: Sequence[Prediction],
             classes: Sequence[Hashable] | None = None) -> float:
    """Mean F1 over `classes` (default: the classes among the labels).

    A class with neither support nor predictions has no F1 and is left out; one that is only
    predicted scores 0. Unparsed predictions are false negatives of the true class.
    """
    _check(labels, preds)
    scores = []
    for c in _classes(labels, classes):
        tp = sum(t == c and p == c for t, p in zip(labels, preds))
        fp = sum(t != c and p is not None and p == c for t, p in zip(labels, preds))
        fn = sum(t == c and not (p is not None and p == c) for t, p in zip(labels, preds))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    if not scores:
        raise ValueError("no class has support or predictions")
    return float(np.mean(scores))


def confusion_matrix(labels: Sequence[Hashable], preds: Sequence[Prediction], classes: Sequence[Hashable],
                     *, unparsed_column: bool = False) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class, in the order of `classes`.

    Predictions that are None or not in `classes` fall in no column, so a row can sum to less
    than the class support; with `unparsed_column=True` they are counted in an extra last column.
    """
    _check(labels, preds)
    index = {c: i for i, c in enumerate(classes)}
    unknown = [t for t in labels if t not in index]
    if unknown:
        raise ValueError(f"labels {sorted(set(map(str, unknown)))} are not among classes {list(classes)}")
    matrix = np.zeros((len(classes), len(classes) + int(unparsed_column)), dtype=int)
    for t, p in zip(labels, preds):
        j = index.get(p) if p is not None else None
        if j is not None:
            matrix[index[t], j] += 1
        elif unparsed_column:
            matrix[index[t], -1] += 1
    return matrix


def mae(targets: Sequence[float], preds: Sequence[float | None], *, fallback: float | None = None) -> float:
    """Mean absolute error (e.g. age in years).

    An unparsed prediction (None) has no error size: it is replaced by `fallback` when given
    (e.g. the training mean age), else left out; report `parse_rate` next to the MAE. Returns
    nan if nothing is left to score.
    """
    if len(targets) != len(preds):
        raise ValueError(f"{len(targets)} targets but {len(preds)} predictions")
    errors = [abs(float(p if p is not None else fallback) - float(t)) for t, p in zip(targets, preds)
              if p is not None or fallback is not None]
    if any(math.isnan(e) for e in errors):
        raise ValueError("targets or predictions contain NaN")
    return float(np.mean(errors)) if errors else float("nan")


def per_attribute_accuracy(truths: Sequence[Mapping[str, object]], preds: Sequence[Mapping[str, object]],
                           *, balanced: bool = False) -> dict[str, float]:
    """Accuracy of each attribute over the samples whose ground truth has it.

    truths / preds: one dict per sample, attribute key -> value (`FaceRecord.attributes` and the
    parsed answer); a key missing from a prediction counts as unparsed. balanced: use the mean
    recall over the attribute's values instead (CelebA attributes are very unbalanced).
    """
    if len(truths) != len(preds):
        raise ValueError(f"{len(truths)} ground truths but {len(preds)} predictions")
    keys = sorted({k for t in truths for k, v in t.items() if v is not None})
    out = {}
    for key in keys:
        pairs = [(t[key], p.get(key)) for t, p in zip(truths, preds) if t.get(key) is not None]
        labels, predicted = [t for t, _ in pairs], [p for _, p in pairs]
        out[key] = uar(labels, predicted) if balanced else accuracy(labels, predicted)
    return out


def mean_accuracy(per_attribute: Mapping[str, float]) -> float:
    """The mean over attributes (CelebA "mAcc") of `per_attribute_accuracy`'s output."""
    if not per_attribute:
        raise ValueError("no attributes to average")
    return float(np.mean(list(per_attribute.values())))
