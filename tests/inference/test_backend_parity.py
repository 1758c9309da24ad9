"""transformers, vLLM in-process and the vLLM server give the same numbers in float32: per-token
continuation log-probabilities, the first token's top-k, and greedy text, base and LoRA."""

from __future__ import annotations

import pytest

from facellm.inference.base import ChatRequest, ScoreRequest

TOLERANCE = 1e-4  # per token, float32

EXPLANATIONS = [
    ("Do these two faces show the same person?",
     "Match Verdict: Match\nSimilarities: Both have brown hair.\nDifferences: None.\n"
     "Overall Reasoning: The similarities outweigh the differences."),
    ("Is the person wearing glasses? Answer yes or no.", "yes"),
    ("What is the facial expression?", "The person looks happy."),
]


def score_requests(faces) -> list[ScoreRequest]:
    requests = []
    for adapter in (None, "lora_a", "lora_b"):
        for i, (prompt, explanation) in enumerate(EXPLANATIONS):
            images = faces[:2] if i == 0 else [faces[i]]
            requests.append(ScoreRequest(images, prompt, explanation, adapter))
    return requests


@pytest.fixture(scope="module")
def scores(faces, hf_backend, local_backend, server_backend) -> dict[str, list[list[float]]]:
    requests = score_requests(faces)
    return {
        "hf": hf_backend.continuation_logprobs(requests),
        "vllm_local": local_backend.continuation_logprobs(requests),
        "vllm_server": server_backend.continuation_logprobs(requests),
    }


@pytest.mark.parametrize("backend", ["vllm_local", "vllm_server"])
def test_continuation_logprobs_match_transformers(scores, backend):
    worst = 0.0
    for reference, other in zip(scores["hf"], scores[backend]):
        assert len(other) == len(reference)
        worst = max(worst, max(abs(x - y) for x, y in zip(reference, other)))
    assert worst < TOLERANCE
    print(f"\n{backend} vs transformers: largest per-token difference {worst:.2e}")


def test_adapters_change_the_scores(scores):
    n = len(EXPLANATIONS)
    base, lora_a = scores["hf"][:n], scores["hf"][n:2 * n]
    assert all(max(abs(x - y) for x, y in zip(b, a)) > 1e-3 for b, a in zip(base, lora_a))


@pytest.mark.parametrize("adapter", [None, "lora_a", "lora_b"])
def test_greedy_text_and_first_token_top_logprobs_agree(faces, hf_backend, local_backend, server_backend,
                                                         adapter):
    request = ChatRequest(faces[:2], "Do these two faces show the same person?", max_tokens=8,
                          adapter=adapter, top_logprobs=5)
    [hf], [local], [served] = (b.chat([request]) for b in (hf_backend, local_backend, server_backend))
    # an answer cut inside a multi-byte character: transformers decodes the partial bytes as U+FFFD,
    # vLLM holds them back; the token ids below are the exact comparison
    assert hf.text.rstrip("\ufffd") == local.text.rstrip("\ufffd") == served.text.rstrip("\ufffd")
    assert [t.token_id for t in hf.token_logprobs] == [t.token_id for t in local.token_logprobs] \
        == [t.token_id for t in served.token_logprobs]
    worst = max(abs(a.logprob - b.logprob) for other in (local, served)
                for a, b in zip(hf.token_logprobs + hf.first_top_logprobs,
                                other.token_logprobs + other.first_top_logprobs))
    print(f"\nadapter {adapter}: largest generated/top-5 logprob difference to transformers {worst:.2e}")
    for other in (local, served):
        assert [t.logprob for t in other.token_logprobs] == pytest.approx(
            [t.logprob for t in hf.token_logprobs], abs=TOLERANCE)
        assert [t.logprob for t in other.first_top_logprobs] == pytest.approx(
            [t.logprob for t in hf.first_top_logprobs], abs=TOLERANCE)
    # ids: transformers vs vLLM; the server names its top-k by text, as vLLM decodes them
    assert [t.token_id for t in local.first_top_logprobs] == [t.token_id for t in hf.first_top_logprobs]
    assert [t.token for t in served.first_top_logprobs] == [t.token for t in local.first_top_logprobs]
