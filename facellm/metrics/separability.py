"""How well explanation embeddings of mated (same person, label 1) and non-mated (label 0)
pairs separate as two clusters, the four numbers Sony et al. report (IWBF 2026,
`ClusterSeparability.py` of their code), on the original embeddings:

- silhouette (sklearn, euclidean): in [-1, 1], higher is better separated;
- Davies-Bouldin (sklearn): >= 0, lower is better;
- Calinski-Harabasz (sklearn): >= 0, higher is better;
- Fisher ratio: |mean_1 - mean_0|^2 / (var_0 + var_1), with var_c the mean squared distance
  of class c's embeddings to their centroid (the trace of its covariance); higher is better.

Example: separability(SentenceEmbedder().encode(texts), labels)
    -> Separability(silhouette=0.21, davies_bouldin=1.9, calinski_harabasz=48.0, fisher_ratio=0.4, ...)
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

from facellm.metrics.lr import check_llrs_labels


class Separability(NamedTuple):
    silhouette: float
    davies_bouldin: float
    calinski_harabasz: float
    fisher_ratio: float
    n_mated: int
    n_nonmated: int


def fisher_ratio(vectors: ArrayLike, labels: ArrayLike) -> float:
    """|mean_1 - mean_0|^2 / (var_0 + var_1) (see the module docstring); inf when both classes
    are single points apart, nan when all vectors are equal."""
    x, y = _check(vectors, labels)
    spread = [np.mean(np.sum((x[y == c] - x[y == c].mean(axis=0)) ** 2, axis=1)) for c in (0, 1)]
    between = float(np.sum((x[y == 1].mean(axis=0) - x[y == 0].mean(axis=0)) ** 2))
    total = float(sum(spread))
    if total == 0:
        return float("nan") if between == 0 else float("inf")
    return between / total


def separability(vectors: ArrayLike, labels: ArrayLike) -> Separability:
    """All four measures; needs at least two vectors per class and not all vectors equal
    (ValueError otherwise, as sklearn's scores need)."""
    x, y = _check(vectors, labels)
    n1 = int(y.sum())
    if min(n1, y.size - n1) < 2:
        raise ValueError(f"separability needs >= 2 vectors per class; got {n1} mated, {y.size - n1} non-mated")
    if np.all(x == x[0]):
        raise ValueError("all vectors are equal: the clusters have no geometry to measure")
    return Separability(float(silhouette_score(x, y)), float(davies_bouldin_score(x, y)),
                        float(calinski_harabasz_score(x, y)), fisher_ratio(x, y), n1, int(y.size - n1))


def _check(vectors: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(vectors, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(f"expected a finite 2-d array of vectors; got shape {x.shape}")
    _, y = check_llrs_labels(np.zeros(len(x)), labels, name="vectors")
    return x, y
