"""One real vLLM server (conftest `server`), driven by the official openai client and by
facellm's client: concurrency, errors, streaming, and that it renders the training template."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import io
import time

import httpx
import openai
import pytest
from PIL import Image

from facellm.inference.base import (
    BackendError,
    BackendUnavailable,
    ChatRequest,
    InvalidImageError,
    ScoreRequest,
    UnknownAdapterError,
    chat_prompt,
)
from facellm.inference.server import free_port
from facellm.inference.vllm_server import RequestTimeout, VLLMServerBackend


def data_url(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def openai_messages(images, prompt, continuation=None):
    content = [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
    messages = [{"role": "user", "content": content + [{"type": "text", "text": prompt}]}]
    if continuation is not None:
        messages.append({"role": "assistant", "content": continuation})
    return messages


def test_openai_client_chat_matches_facellm_client(server, server_backend, faces):
    client = openai.OpenAI(base_url=server.api_url, api_key="unused")
    served = [m.id for m in client.models.list().data]
    assert served[1:] == ["lora_a", "lora_b"]
    completion = client.chat.completions.create(
        model="lora_a", messages=openai_messages(faces[:2], "Same person?"), max_tokens=6,
        temperature=0, logprobs=True, top_logprobs=3,
    )
    [reply] = server_backend.chat([ChatRequest(faces[:2], "Same person?", max_tokens=6, adapter="lora_a",
                                               top_logprobs=3)])
    choice = completion.choices[0]
    assert choice.message.content == reply.text
    assert [t.logprob for t in choice.logprobs.content] == [t.logprob for t in reply.token_logprobs]
    assert [t.token for t in choice.logprobs.content[0].top_logprobs] == [t.token for t in reply.first_top_logprobs]


def test_openai_client_prompt_logprobs_match_facellm_scoring(server, server_backend, faces):
    client = openai.OpenAI(base_url=server.api_url, api_key="unused")
    explanation = "Match Verdict: Non-Match\nDifferences: The nose shape differs."
    completion = client.chat.completions.create(
        model="lora_b", messages=openai_messages(faces[1:3], "Same person?", explanation), max_tokens=1,
        temperature=0, extra_body={"prompt_logprobs": 0, "add_generation_prompt": False, "return_token_ids": True},
    )
    ids, logprobs = completion.prompt_token_ids, completion.prompt_logprobs
    [scores] = server_backend.continuation_logprobs([ScoreRequest(faces[1:3], "Same person?", explanation, "lora_b")])
    # the scored tokens are the continuation and <|im_end|>; the template's final "\n" follows them
    expected = [logprobs[p][str(ids[p])]["logprob"] for p in range(len(ids) - 1 - len(scores), len(ids) - 1)]
    assert scores == expected


def test_a_score_takes_two_requests_and_a_prompt_one_more_once(server, faces):
    backend = VLLMServerBackend(server.url)
    backend.served_models()
    prompts = ["Same person?", "Is the person wearing glasses?"]
    requests = [ScoreRequest([faces[i % 3]], prompts[i % 2], f"Answer {i}.", include_end=i % 3 > 0) for i in range(12)]
    before = backend.http_requests
    scores = backend.continuation_logprobs(requests)
    assert backend.http_requests - before == 2 * len(requests) + len(prompts)  # was 4 per score
    assert [len(s) for s in scores] == [len(backend.continuation_logprobs([r])[0]) for r in requests]
    backend.close()


def test_200_concurrent_requests_complete(server_backend, faces):
    adapters = [None, "lora_a", "lora_b"]
    requests = [ChatRequest([faces[i % 3]], f"Describe face {i}.", max_tokens=4, adapter=adapters[i % 3])
                for i in range(200)]
    replies = server_backend.chat(requests)
    assert len(replies) == 200
    assert all(r.completion_tokens == 4 or r.finish_reason == "stop" for r in replies)


def test_200_concurrent_requests_with_the_async_openai_client(server, faces):
    async def run() -> list:
        client = openai.AsyncOpenAI(base_url=server.api_url, api_key="unused", max_retries=0, timeout=120)
        messages = openai_messages(faces[:1], "Glasses?")
        calls = [client.chat.completions.create(model="lora_b", messages=messages, max_tokens=4, temperature=0)
                 for _ in range(200)]
        try:
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()

    # a thread of its own: an earlier test's framework (Playwright's sync API) may hold this thread's loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        results = pool.submit(asyncio.run, run()).result()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert failures == []
    assert len({r.choices[0].message.content for r in results}) == 1  # greedy: one answer


def test_streaming_gives_the_greedy_text(server_backend, faces):
    request = ChatRequest(faces[:1], "Describe the face.", max_tokens=12, adapter="lora_a")
    [reply] = server_backend.chat([request])
    assert "".join(server_backend.stream_chat(request)) == reply.text


def test_server_renders_the_training_template(server, server_backend, hf_backend, faces):
    response = httpx.post(server.api_url + "/chat/completions", timeout=60, json={
        "model": "lora_a", "messages": openai_messages(faces[:2], "Same person?"), "max_tokens": 1,
        "return_prompt_text": True,
    })
    assert response.json()["prompt_text"] == chat_prompt(hf_backend.processor, 2, "Same person?")


def test_unknown_adapter_lists_the_served_names(server_backend, faces):
    with pytest.raises(UnknownAdapterError) as e:
        server_backend.chat([ChatRequest(faces[:1], "Glasses?", adapter="lora_z")])
    assert e.value.available == ("lora_a", "lora_b")
    assert "lora_a, lora_b" in str(e.value) and server_backend.url in str(e.value)


def test_bad_images_are_refused_before_sending(faces):
    # a port nothing listens on: a check that sent anything would raise BackendUnavailable instead
    backend = VLLMServerBackend(f"http://127.0.0.1:{free_port()}", connect_attempts=1, max_image_pixels=100_000,
                                max_image_bytes=40_000)
    truncated = io.BytesIO()
    faces[0].save(truncated, format="PNG")
    cases = [
        ([Image.new("RGB", (400, 400))], "oversized image, 400x400 pixels"),
        ([Image.effect_noise((300, 300), 100).convert("RGB")], "bytes as PNG, more than the limit"),
        ([Image.open(io.BytesIO(truncated.getvalue()[:100]))], "cannot be decoded"),
        (["/data/face.jpg"], "expected a PIL image"),
        (faces, "expected 1-2 images per request, got 3"),
    ]
    for images, message in cases:
        with pytest.raises(InvalidImageError, match=message):
            backend.chat([ChatRequest(images, "Glasses?")])
        with pytest.raises(InvalidImageError, match=message):
            backend.continuation_logprobs([ScoreRequest(images, "Glasses?", "yes")])


def test_server_rejects_what_it_cannot_decode(server_backend):
    with pytest.raises(BackendError, match="answered 400"):
        server_backend._post_chat({
            "model": "lora_a", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "Glasses?"}]}],
        }, expect=("choices",))


def test_server_down_is_reported_with_its_url_after_bounded_retries(faces):
    url = f"http://127.0.0.1:{free_port()}"
    backend = VLLMServerBackend(url, connect_attempts=4)
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match=f"{url} is unavailable: .* failed 4 times") as e:
        backend.chat([ChatRequest(faces[:1], "Glasses?")])
    elapsed = time.monotonic() - start
    assert e.value.url == url
    assert 0.75 * (0.5 + 1 + 2) <= elapsed < 5.0  # the openai client's backoff, less its jitter


def test_slow_answer_raises_request_timeout(server, faces):
    # 10 ms: less than any answer with an image takes, however soon the model stops
    backend = VLLMServerBackend(server.url, timeout_s=0.01)
    start = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"no answer within 0.01 s \(timeout_s\)"):
        backend.chat([ChatRequest(faces[:1], "Describe the face.", max_tokens=1500)])
    assert time.monotonic() - start < 2.0


def test_server_log_holds_no_prompts_or_images(server, server_backend, faces):
    marker = "zebra-marker-31415"
    server_backend.chat([ChatRequest(faces[:1], marker, max_tokens=2)])
    server_backend.continuation_logprobs([ScoreRequest(faces[:1], marker, marker)])
    log = server.log_path.read_text(errors="replace")
    assert "Application startup complete" in log
    assert marker not in log and "base64" not in log
