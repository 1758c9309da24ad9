"""facellm's server client against connections that fail the way the main job's did (keep-alive
races: "[Errno 104] Connection reset by peer") and against addresses that are no vLLM server,
on a small pure-Python OpenAI-compatible server (tests/inference/fake_openai_server.py)."""

from __future__ import annotations

import time

import pytest

from facellm.inference.base import (
    BackendError,
    BackendUnavailable,
    ChatRequest,
    ScoreRequest,
)
from facellm.inference.vllm_server import VLLMServerBackend
from tests.inference.fake_openai_server import FakeOpenAIServer


def test_dropped_and_reset_connections_are_resent_and_every_reply_arrives(faces):
    # The server closes connections idle 0.2 s (the client keeps them 2 s) and resets or closes
    # some requests after reading them: each must be sent again, none may end the run.
    with FakeOpenAIServer(idle_timeout_s=0.2, reset_every=5, close_every=7) as fake:
        backend = VLLMServerBackend(fake.url, max_concurrency=4)
        replies = []
        for round_ in range(4):
            requests = [ChatRequest(faces[:1], f"round {round_} row {i}", max_tokens=4) for i in range(40)]
            replies += backend.chat(requests)
            time.sleep(0.3)  # every pooled connection goes idle past the server's limit
        backend.close()
    assert [r.text for r in replies] == ["Yes"] * 160
    assert fake.resets > 0 and fake.closes > 0
    assert sorted(fake.prompts) == sorted(f"round {r} row {i}" for r in range(4) for i in range(40))


def test_a_connection_that_always_resets_is_reported_after_bounded_retries(faces):
    with FakeOpenAIServer(reset_every=1, persistent=True) as fake:
        backend = VLLMServerBackend(fake.url, connect_attempts=3)
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"failed 3 times .*ReadError.*Connection reset by peer"):
            backend.chat([ChatRequest(faces[:1], "Glasses?")])
    assert time.monotonic() - start < 5.0
    assert fake.resets == 3


@pytest.mark.parametrize("body, message", [
    ("not_json", r"GET http://127\.0\.0\.1:\d+/v1/models answered with a body that is not JSON"),
    ("no_choices", r"POST http://127\.0\.0\.1:\d+/v1/chat/completions answered JSON without choices, usage"),
])
def test_an_answer_that_is_no_vllm_answer_is_a_one_line_error(faces, body, message):
    with FakeOpenAIServer(body=body) as fake:
        backend = VLLMServerBackend(fake.url, connect_attempts=1)
        with pytest.raises(BackendError, match=message) as e:
            backend.chat([ChatRequest(faces[:1], "Glasses?")])
    assert "\n" not in str(e.value)


def test_streaming_arrives_in_pieces(faces):
    with FakeOpenAIServer(reply="No glasses.") as fake:
        backend = VLLMServerBackend(fake.url)
        pieces = list(backend.stream_chat(ChatRequest(faces[:1], "Glasses?")))
    assert pieces == list("No glasses.")


@pytest.mark.parametrize("balance", ["least_busy", "round_robin"])
def test_requests_are_spread_over_replicas_and_every_reply_arrives(faces, balance):
    with FakeOpenAIServer(reply="A", delay_s=0.05) as a, FakeOpenAIServer(reply="B", delay_s=0.05, reset_every=6) as b:
        backend = VLLMServerBackend([a.url, b.url], max_concurrency=8, balance=balance)
        requests = [ChatRequest(faces[:1], f"row {i}", max_tokens=4) for i in range(60)]
        replies = backend.chat(requests)
        backend.close()
    assert len(replies) == 60 and {r.text for r in replies} == {"A", "B"}
    assert a.answered + b.answered == 60 and b.resets > 0
    assert sorted(a.prompts + b.prompts) == sorted(f"row {i}" for i in range(60))
    assert min(a.answered, b.answered) >= 60 // 2 - 8  # neither replica idles
    assert backend.requests_per_replica == {a.url: a.answered, b.url: b.answered}


def test_replicas_that_serve_different_models_are_refused(faces):
    with FakeOpenAIServer(adapters=("lora_a",)) as a, FakeOpenAIServer() as b:
        backend = VLLMServerBackend([a.url, b.url])
        with pytest.raises(BackendError, match="the replicas serve different models"):
            backend.served_models()


def test_an_openai_compatible_server_gets_plain_requests_and_the_api_key(faces):
    with FakeOpenAIServer(owned_by="someone-else") as fake:
        backend = VLLMServerBackend(fake.url, api_key="sk-test")
        [reply] = backend.chat([ChatRequest(faces[:1], "Glasses?")])
        with pytest.raises(BackendError, match="not a vLLM server: likelihood scoring needs"):
            backend.continuation_logprobs([ScoreRequest(faces[:1], "Glasses?", "yes")])
    assert reply.text == "Yes" and fake.authorization == {"Bearer sk-test"}
    assert not {"top_k", "min_p", "repetition_penalty", "return_token_ids"} & set(fake.payloads[0])


def test_vllm_gets_its_own_sampling_fields(faces):
    with FakeOpenAIServer(owned_by="vllm") as fake:
        VLLMServerBackend(fake.url).chat([ChatRequest(faces[:1], "Glasses?")])
    assert fake.payloads[0]["top_k"] == 0 and fake.payloads[0]["return_token_ids"] is True


def test_locate_span_finds_what_three_tokenisations_find():
    from facellm.inference.base import ScoredSpan, scored_span
    from facellm.inference.vllm_server import locate_span

    prompt, open_, closed = [1, 2, 3, 4], [1, 2, 3, 4, 10, 11], [1, 2, 3, 4, 10, 11, 99, 5]
    served = [1, 8, 7, 7, 7, 9, 2, 3, 4, 10, 11, 99, 5]  # images expanded inside the user turn
    for include_end in (True, False):
        span = locate_span(prompt, open_, served, include_end)
        assert span == scored_span(prompt, open_, closed, include_end)
        assert [served[p] for p in span.positions(len(served))] == list(span.token_ids)
    assert locate_span(prompt, open_, served) == ScoredSpan((10, 11, 99), 1)
    assert locate_span(prompt, open_, [1, 2, 3, 4, 10, 11, 99]) == ScoredSpan((10, 11, 99), 0)
    with pytest.raises(ValueError, match="merges with the template's generation prompt"):
        locate_span(prompt, [1, 2, 3, 12, 11], served)
    with pytest.raises(ValueError, match="empty"):
        locate_span(prompt, prompt, served)
    with pytest.raises(ValueError, match="not followed by an end-of-turn token"):
        locate_span(prompt, open_, [1, 2, 3, 4, 10, 13, 5])  # the last token merged with what follows
