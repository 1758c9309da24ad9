from pathlib import Path

import pytest

from facellm.attributes import BINARY_ATTRIBUTES
from facellm.schema import EXPRESSIONS


def task_corpus() -> list[str]:
    """Prompts and targets shaped like the tasks' (attributes, expression, verification)."""
    texts = []
    for a in BINARY_ATTRIBUTES.values():
        texts += [f"{a.question} Answer yes or no.", "yes", "no",
                  a.has.format(who="The person") + ".", a.lacks.format(who="The person") + "."]
    texts += [f"What is the facial expression? Answer with one of: {', '.join(EXPRESSIONS)}.", *EXPRESSIONS]
    texts += [
        "Do these two faces show the same person?",
        '[Model Scores]\n{"FR": [0.72, "Match"]}',
        "Match Verdict: Non-Match\nSimilarities: Both have brown hair.\nDifferences: The nose shape differs.\n"
        "Overall Reasoning: The differences outweigh the similarities.",
    ]
    return texts


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return task_corpus()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    """The offline default at size "test" (~0.7M parameters), built once per session."""
    from facellm.models.default import build_default_model

    return build_default_model(tmp_path_factory.mktemp("tiny") / "model", corpus, seed=0, size="test")
