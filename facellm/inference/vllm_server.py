"""Client backend for vLLM's OpenAI-compatible server (started by `facellm.inference.server`
or by anyone with `--enable-lora --lora-modules name=path --chat-template <training template>`).

Chat: POST /v1/chat/completions with the images as PNG data URLs and `"model"` = the adapter
name (or the base model's), greedy or sampled, with `logprobs` / `top_logprobs`.
Scoring: the same endpoint with the assistant turn included, `add_generation_prompt: false`,
`prompt_logprobs: 0` and `return_token_ids: true` (vLLM extensions; /v1/completions takes no
images); the server renders the conversation with its template, and three text-only
POST /tokenize calls locate the continuation's tokens at its end (`base.scored_span`).
Requests in a list run on a thread pool, at most `max_concurrency` at a time. A request the
connection drops (reset, closed without an answer, refused) is sent again: generation is greedy
or seeded and scoring reads fixed text, so an answer to a resent request is the same answer.

    >>> backend = VLLMServerBackend("http://127.0.0.1:8000", max_concurrency=32)
    >>> replies = backend.chat([ChatRequest([face], "Describe the face.", adapter="lora_a")] * 100)
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from PIL import Image

from facellm.images import DEFAULT_MAX_PIXELS
from facellm.inference.base import (
    MAX_IMAGES,
    BackendError,
    BackendUnavailable,
    ChatRequest,
    ChatResponse,
    InvalidImageError,
    ScoreRequest,
    TokenLogprob,
    UnknownAdapterError,
    build_messages,
    check_adapter,
    check_images,
    scored_span,
    span_logprobs,
)

DEFAULT_MAX_IMAGE_BYTES = 20 * 2**20  # of PNG data per image, before base64

# Idle pooled connections are dropped well before vLLM's own keep-alive limit
# (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s): at equal limits a request sent on a connection the server
# is closing at that moment dies with "Connection reset by peer".
KEEPALIVE_EXPIRY_S = 2.0
# Failures of the connection, not of the request: sending the request again is safe.
TRANSIENT_ERRORS = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.ConnectTimeout)

# Plain sampling whatever the server's defaults (vLLM takes them from the model's
# generation_config.json, e.g. repetition_penalty=1.05 for Qwen2-VL-Instruct): the other
# backends sample without them, and greedy must mean argmax everywhere.
_PLAIN_SAMPLING = {"top_p": 1.0, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0,
                   "presence_penalty": 0.0, "frequency_penalty": 0.0}


class RequestTimeout(BackendError, TimeoutError):
    """The server took longer than the client's timeout to answer one request."""


class VLLMServerBackend:
    """url: the server's address, http://host:port (a trailing /v1 is ignored).
    model: served name of the base model; None = the one served entry that is not an adapter.
    max_concurrency: most requests in flight at once from one call.
    timeout_s: limit for one request's answer (RequestTimeout past it).
    connect_timeout_s: limit for opening a connection.
    connect_attempts / backoff_s: a request the connection fails (refused, reset, closed
        without an answer) or the server does not take (503 while starting) is sent this many
        times in all, waiting backoff_s, 2*backoff_s, ... in between; then BackendUnavailable.
    max_images / max_image_pixels / max_image_bytes: limits checked before anything is sent.
    api_key: the server's --api-key, if it has one."""

    def __init__(self, url: str, *, model: str | None = None, max_concurrency: int = 32,
                 timeout_s: float = 300.0, connect_timeout_s: float = 5.0, connect_attempts: int = 5,
                 backoff_s: float = 0.5,
                 max_images: int = MAX_IMAGES, max_image_pixels: int = DEFAULT_MAX_PIXELS,
                 max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES, api_key: str | None = None) -> None:
        self.url = url.rstrip("/").removesuffix("/v1")
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.connect_attempts = max(1, connect_attempts)
        self.backoff_s = backoff_s
        self.max_images = max_images
        self.max_image_pixels = max_image_pixels
        self.max_image_bytes = max_image_bytes
        self._model = model
        self._served: list[dict[str, Any]] | None = None
        self._client = httpx.Client(
            base_url=self.url, timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            limits=httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency,
                                keepalive_expiry=KEEPALIVE_EXPIRY_S),
            headers={"Authorization": f"Bearer {api_key}"} if api_key else None,
        )

    # ------------------------------------------------------------ served models

    def served_models(self, refresh: bool = False) -> list[str]:
        """Names the server answers to (GET /v1/models): the base model, then the adapters."""
        if self._served is None or refresh:
            self._served = self._json("GET", "/v1/models", expect=("data",))["data"]
        return [entry["id"] for entry in self._served]

    @property
    def adapters(self) -> tuple[str, ...]:
        """The LoRA adapters the server serves (asks the server on first use)."""
        self.served_models()
        return tuple(e["id"] for e in self._served if e.get("parent"))

    @property
    def base_model(self) -> str:
        if self._model is None:
            self.served_models()
            bases = [e["id"] for e in self._served if not e.get("parent")]
            if len(bases) != 1:
                raise BackendError(f"{self.url} serves base models {bases}: pass model= to pick one")
            self._model = bases[0]
        return self._model

    # ------------------------------------------------------------ Backend

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        return self._map(self._chat_one, requests)

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        payload = self._chat_payload(request) | {"stream": True}
        response = self._send("POST", "/v1/chat/completions", payload, stream=True)
        try:
            if response.status_code != 200:
                response.read()
                self._raise_for(response, payload["model"])
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise BackendError(f"{self.url} failed while streaming: {chunk['error'].get('message')}")
                if chunk.get("choices") and (delta := chunk["choices"][0]["delta"].get("content")):
                    yield delta
        finally:
            response.close()

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return self._map(self._score_one, requests)

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------ requests

    def _chat_payload(self, request: ChatRequest) -> dict[str, Any]:
        messages = self._messages(request.images, request.prompt)  # checked before anything is sent
        payload = {
            "model": self._model_name(request.adapter), "messages": messages,
            "max_tokens": request.max_tokens, "temperature": request.temperature,
            "seed": request.seed, "return_token_ids": True, **_PLAIN_SAMPLING,
        }
        if request.wants_logprobs:
            payload |= {"logprobs": True, "top_logprobs": request.top_logprobs}
        return payload

    def _chat_one(self, request: ChatRequest) -> ChatResponse:
        payload = self._chat_payload(request)
        data = self._json("POST", "/v1/chat/completions", payload, expect=("choices", "usage"))
        choice = data["choices"][0]
        ids = choice.get("token_ids") or []
        response = ChatResponse(
            text=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason") or "length",
            completion_tokens=data["usage"]["completion_tokens"],
        )
        if request.wants_logprobs:
            steps = (choice.get("logprobs") or {}).get("content") or []
            response.token_logprobs = [
                TokenLogprob(s["token"], s["logprob"], ids[i] if i < len(ids) else None) for i, s in enumerate(steps)
            ]
            if request.top_logprobs and steps:
                response.first_top_logprobs = [TokenLogprob(t["token"], t["logprob"]) for t in steps[0]["top_logprobs"]]
        return response

    def _score_one(self, request: ScoreRequest) -> list[float]:
        messages = self._messages(request.images, request.prompt, request.continuation)
        model = self._model_name(request.adapter)
        # Text-only renderings locate the continuation: the tokens after the images do not depend on them.
        ids = [
            self._tokenize(build_messages(0, request.prompt), add_generation_prompt=True),
            self._tokenize(build_messages(0, request.prompt, request.continuation), continue_final_message=True),
            self._tokenize(build_messages(0, request.prompt, request.continuation)),
        ]
        span = scored_span(*ids, include_end=request.include_end)
        data = self._json("POST", "/v1/chat/completions", {
            "model": model, "messages": messages, "add_generation_prompt": False,
            "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0, "return_token_ids": True,
        }, expect=("prompt_logprobs", "prompt_token_ids"))
        logprobs = data["prompt_logprobs"]
        return span_logprobs(span, data["prompt_token_ids"], lambda p, t: logprobs[p][str(t)]["logprob"])

    def _tokenize(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                  continue_final_message: bool = False) -> list[int]:
        return self._json("POST", "/tokenize", {
            "model": self.base_model, "messages": messages, "add_generation_prompt": add_generation_prompt,
            "continue_final_message": continue_final_message,
        }, expect=("tokens",))["tokens"]

    def _model_name(self, adapter: str | None) -> str:
        if adapter is None:
            return self.base_model
        if adapter not in self.adapters:
            self.served_models(refresh=True)  # adapters can be loaded at run time
            check_adapter(adapter, self.adapters, self.url)
        return adapter

    def _messages(self, images: Sequence[Image.Image], prompt: str, continuation: str | None = None
                  ) -> list[dict[str, Any]]:
        """build_messages' conversation with each image part carrying its image as a data URL."""
        urls = iter([self._data_url(i, image) for i, image in enumerate(
            check_images(images, self.max_images, self.max_image_pixels), 1)])
        messages = build_messages(len(images), prompt, continuation)
        messages[0]["content"] = [
            {"type": "image_url", "image_url": {"url": next(urls)}} if part["type"] == "image" else part
            for part in messages[0]["content"]
        ]
        return messages

    def _data_url(self, index: int, image: Image.Image) -> str:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        if buffer.tell() > self.max_image_bytes:
            raise InvalidImageError(f"image {index}: {buffer.tell():,} bytes as PNG, more than the limit of "
                                    f"{self.max_image_bytes:,} (max_image_bytes)")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    # ------------------------------------------------------------ transport

    def _map(self, fn: Any, requests: Sequence[Any]) -> list[Any]:
        if len(requests) <= 1:
            return [fn(r) for r in requests]
        with ThreadPoolExecutor(min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(fn, requests))

    def _json(self, method: str, path: str, payload: dict[str, Any] | None = None,
              expect: tuple[str, ...] = ()) -> dict[str, Any]:
        """The server's JSON answer; BackendError, naming the URL, when it is an error, is not
        JSON, or lacks (or has empty) a field of `expect`: an address that is not a vLLM server."""
        response = self._send(method, path, payload)
        if response.status_code != 200:
            self._raise_for(response, (payload or {}).get("model"))
        where = f"{method} {self.url}{path}"
        try:
            data = response.json()
        except ValueError:
            raise BackendError(f"{where} answered with a body that is not JSON ({_snippet(response.text)}): "
                               "is this a vLLM server?") from None
        missing = [key for key in expect if not (isinstance(data, dict) and data.get(key))]
        if missing:
            raise BackendError(f"{where} answered JSON without {', '.join(missing)} "
                               f"({_snippet(response.text)}): is this a vLLM server?")
        return data

    def _send(self, method: str, path: str, payload: dict[str, Any] | None = None,
              stream: bool = False) -> httpx.Response:
        """The server's response, retrying what it did not take; BackendUnavailable when it never does."""
        start, delay, cause = time.monotonic(), self.backoff_s, ""
        for attempt in range(1, self.connect_attempts + 1):
            try:
                request = self._client.build_request(method, path, json=payload)
                response = self._client.send(request, stream=stream)
            except TRANSIENT_ERRORS as e:
                cause = f"{type(e).__name__}: {e}"
            except httpx.TimeoutException as e:
                raise RequestTimeout(f"{method} {self.url}{path} got no answer within {self.timeout_s} s "
                                     f"(timeout_s): {type(e).__name__}") from e
            else:
                if response.status_code != 503:
                    return response
                response.close()
                cause = "503 Service Unavailable"
            if attempt < self.connect_attempts:
                time.sleep(delay)
                delay *= 2
        raise BackendUnavailable(self.url, f"{method} {path} failed {self.connect_attempts} times over "
                                           f"{time.monotonic() - start:.1f} s (last: {cause})")

    def _raise_for(self, response: httpx.Response, model: str | None) -> None:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = _snippet(response.text)
        if response.status_code == 404 and model is not None and "does not exist" in message:
            raise UnknownAdapterError(model, self.served_models(refresh=True), self.url)
        raise BackendError(f"{response.request.method} {self.url}{response.request.url.path} answered "
                           f"{response.status_code}: {message}")


def _snippet(text: str, limit: int = 200) -> str:
    """A body's start on one line, for an error message."""
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))
