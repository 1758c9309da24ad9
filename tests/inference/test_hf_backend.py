"""The transformers backend on its own: adapters by name, streaming, scoring."""

from __future__ import annotations

import pytest

from facellm.inference.base import ChatRequest, ScoreRequest, UnknownAdapterError


@pytest.mark.parametrize("adapter", [None, "lora_a"])
def test_streaming_gives_the_greedy_text(hf_backend, faces, adapter):
    request = ChatRequest(faces[:1], "Describe the face.", max_tokens=12, adapter=adapter)
    [reply] = hf_backend.chat([request])
    pieces = list(hf_backend.stream_chat(request))
    assert "".join(pieces) == reply.text
    assert reply.completion_tokens == 12 or reply.finish_reason == "stop"


def test_adapters_are_picked_by_name_and_none_is_the_base(hf_backend, faces):
    score = ScoreRequest(faces[:2], "Same person?", "Match Verdict: Match")
    base, lora_a, lora_b, base_again = hf_backend.continuation_logprobs([
        score, ScoreRequest(**{**score.__dict__, "adapter": "lora_a"}),
        ScoreRequest(**{**score.__dict__, "adapter": "lora_b"}), score,
    ])
    assert base == base_again  # the adapters are disabled again after a LoRA request
    assert max(abs(x - y) for x, y in zip(base, lora_a)) > 1e-3
    assert max(abs(x - y) for x, y in zip(lora_a, lora_b)) > 1e-3


def test_include_end_adds_the_end_of_turn_token(hf_backend, faces):
    with_end, without_end = hf_backend.continuation_logprobs([
        ScoreRequest(faces[:1], "Glasses?", "yes"), ScoreRequest(faces[:1], "Glasses?", "yes", include_end=False),
    ])
    assert len(with_end) == len(without_end) + 1
    assert with_end[:-1] == pytest.approx(without_end, abs=1e-6)


def test_unknown_adapter(hf_backend, faces):
    with pytest.raises(UnknownAdapterError, match="'lora_z' is not served .* served: lora_a, lora_b"):
        hf_backend.chat([ChatRequest(faces[:1], "Glasses?", adapter="lora_z")])
