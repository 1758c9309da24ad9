import os
import random

import numpy as np
import pytest

from facellm.metrics.embedding_lr import EmbeddingLR, SentenceEmbedder
from facellm.metrics.lr import cllr
from facellm.metrics.verification import roc_auc

TRAITS = ["brown hair", "black hair", "blond hair", "a beard", "eyeglasses", "a round face", "an oval face",
          "a wide nose", "thin eyebrows", "a pointed chin"]
GENUINE = ["Match. Both faces have {a} and {b}; the features agree.",
           "Same person: both share {a} and {b}, a consistent identity.",
           "The two faces look alike, both with {a} and {b}."]
IMPOSTOR = ["Non-Match. The first face has {a} while the second has {b}; the features differ.",
            "Different people: one has {a}, the other {b}, an inconsistent identity.",
            "The faces do not look alike: {a} versus {b}."]


def explanations(n: int, rng: random.Random) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    for i in range(n):
        a, b = rng.sample(TRAITS, 2)
        genuine = i % 2 == 0
        texts.append(rng.choice(GENUINE if genuine else IMPOSTOR).format(a=a, b=b))
        labels.append(int(genuine))
    return texts, labels


@pytest.fixture(scope="module")
def embedder():
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"  # the packaged model must load without the hub
    try:
        yield SentenceEmbedder()
    finally:
        if old is None:
            del os.environ["HF_HUB_OFFLINE"]
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def test_two_topic_explanations_separate_on_held_out_texts(embedder):
    rng = random.Random(0)
    train_texts, train_labels = explanations(48, rng)
    test_texts, test_labels = explanations(24, rng)
    train_vectors = embedder.encode(train_texts)
    model = EmbeddingLR(embedder, reg_covar=1e-3, seed=0).fit(train_vectors, train_labels)
    llrs = model.transform(test_texts)  # texts in, through the embedder
    labels = np.array(test_labels)
    assert llrs.shape == (24,)
    assert llrs[labels == 1].min() > 0 > llrs[labels == 0].max()
    assert roc_auc(labels, llrs) == pytest.approx(1.0)
    assert cllr(llrs, labels) < 0.1
    # deterministic: a second model on the same data gives the same LLRs
    again = EmbeddingLR(reg_covar=1e-3, seed=0).fit(train_vectors, train_labels)
    assert again.transform(embedder.encode(test_texts)) == pytest.approx(llrs, rel=1e-9, abs=1e-9)


def test_embedder_output(embedder):
    vectors = embedder.encode(["Both faces have brown hair.", "The faces differ."])
    assert vectors.shape == (2, 384)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], rel=1e-5)
    with pytest.raises(TypeError):
        embedder.encode("one string")


def gaussian_classes(seed: int, n_genuine: int, n_impostor: int, dim: int = 6):
    rng = np.random.default_rng(seed)
    x = np.r_[rng.normal(1.0, 1.0, (n_genuine, dim)), rng.normal(-1.0, 1.0, (n_impostor, dim))]
    return x, np.r_[np.ones(n_genuine, int), np.zeros(n_impostor, int)]


def test_llr_is_the_log10_density_ratio_of_the_mixtures():
    x, y = gaussian_classes(1, 200, 200)
    model = EmbeddingLR(seed=0).fit(x, y)
    z = model.pca_.transform(x[:5])
    expected = (model.gmm_genuine_.score_samples(z) - model.gmm_impostor_.score_samples(z)) / np.log(10)
    assert model.transform(x[:5]) == pytest.approx(expected)
    assert model.pca_.explained_variance_ratio_.sum() >= 0.95
    assert model.n_components_ == {"genuine": 4, "impostor": 4}


def test_components_shrink_for_small_classes():
    x, y = gaussian_classes(2, 30, 9, dim=4)
    model = EmbeddingLR(seed=0).fit(x, y)
    d = model.pca_.n_components_
    assert model.n_components_ == {"genuine": min(4, max(1, 30 // (d + 1))), "impostor": max(1, 9 // (d + 1))}
    assert np.isfinite(model.transform(x)).all()


def test_errors():
    x, y = gaussian_classes(3, 10, 1)
    with pytest.raises(ValueError, match="at least 2 impostor"):
        EmbeddingLR().fit(x, y)
    with pytest.raises(ValueError, match="no H2"):
        EmbeddingLR().fit(x[:10], y[:10])
    with pytest.raises(RuntimeError, match="before fit"):
        EmbeddingLR().transform(x)


def test_texts_without_an_embedder_build_the_default_one(monkeypatch):
    built = []

    class FakeEmbedder:
        def __init__(self):
            built.append(self)

        def encode(self, texts):
            return np.array([[len(t), t.count("a"), t.count("e"), t.count("o")] for t in texts], dtype=float)

    monkeypatch.setattr("facellm.metrics.embedding_lr.SentenceEmbedder", FakeEmbedder)
    texts, labels = explanations(40, random.Random(1))
    model = EmbeddingLR(seed=0).fit(texts, labels)
    assert len(built) == 1 and model.embedder is built[0]
    assert model.transform(texts[:3]) == pytest.approx(model.transform(FakeEmbedder().encode(texts[:3])))
