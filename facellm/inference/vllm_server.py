"""Client backend for OpenAI-compatible servers, above all vLLM's (started by
`facellm.inference.server` or by anyone with `--enable-lora --lora-modules name=path
--chat-template <training template>`), on the official `openai` client.

Chat: POST /v1/chat/completions with the images as PNG data URLs and `"model"` = the adapter
name (or the base model's), greedy or sampled, with `logprobs` / `top_logprobs`; vLLM's own
sampling fields go in `extra_body` and only to a vLLM server (other servers get plain OpenAI
requests). Streaming is the client's.
Scoring (vLLM only) takes two requests per continuation: one text-only POST /tokenize of the
conversation ending right after the continuation (`continue_final_message`), and the chat
request with the images and the whole assistant turn, `add_generation_prompt: false`,
`prompt_logprobs: 0` and `return_token_ids: true` (/v1/completions takes no images). The
continuation's tokens are found at the end of the scored prompt (`locate_span`); the
generation prompt's tokens, which it needs too, are asked for once per distinct prompt.

Retries are the client's (`max_retries`, exponential backoff with jitter): a request the
connection drops (reset, closed without an answer, refused) or the server does not take
(503 while starting; any 5xx or 429) is sent again: generation is greedy or seeded and
scoring reads fixed text, so an answer to a resent request is the same answer. A request that
gets no answer within `timeout_s` is not sent again (RequestTimeout).
Requests in a list run on a thread pool, at most `max_concurrency` at a time, spread over the
replicas (several server URLs serving the same models) by least-busy, ties round-robin.

    >>> backend = VLLMServerBackend("http://127.0.0.1:8000", max_concurrency=32)
    >>> replies = backend.chat([ChatRequest([face], "Describe the face.", adapter="lora_a")] * 100)
    >>> backend = VLLMServerBackend(["http://gpu0:8000", "http://gpu1:8000"], api_key=os.environ["KEY"])
"""

from __future__ import annotations

import base64
import io
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx2
import openai
from PIL import Image

from facellm.images import DEFAULT_MAX_PIXELS
from facellm.inference.base import (
    MAX_IMAGES,
    BackendError,
    BackendUnavailable,
    ChatRequest,
    ChatResponse,
    InvalidImageError,
    ScoredSpan,
    ScoreRequest,
    TokenLogprob,
    UnknownAdapterError,
    build_messages,
    check_adapter,
    check_images,
    span_logprobs,
)

DEFAULT_MAX_IMAGE_BYTES = 20 * 2**20  # of PNG data per image, before base64
Balance = Literal["least_busy", "round_robin"]

# Idle pooled connections are dropped well before vLLM's own keep-alive limit
# (VLLM_HTTP_TIMEOUT_KEEP_ALIVE, 5 s): at equal limits a request sent on a connection the server
# is closing at that moment dies with "Connection reset by peer" (the main job's failure; the
# client's retries resend such a request, this makes it rare).
KEEPALIVE_EXPIRY_S = 2.0

# Plain sampling whatever the server's defaults (vLLM takes them from the model's
# generation_config.json, e.g. repetition_penalty=1.05 for Qwen2-VL-Instruct): the other
# backends sample without them, and greedy must mean argmax everywhere.
_PLAIN_SAMPLING = {"top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0}
_PLAIN_SAMPLING_VLLM = {"top_k": 0, "min_p": 0.0, "repetition_penalty": 1.0}
_PROMPT_IDS_CACHE = 4096  # distinct prompts whose generation-prompt tokens are kept


class RequestTimeout(BackendError, TimeoutError):
    """The server took longer than the client's timeout to answer one request."""


@dataclass
class _Replica:
    url: str
    client: openai.OpenAI
    in_flight: int = 0
    sent: int = 0  # requests sent to it, resends included


@dataclass
class _Counter:
    """HTTP requests one replica's transport sent (resends included)."""

    n: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class VLLMServerBackend:
    """url: the server's address, http://host:port (a trailing /v1 is ignored), or a list of
        replicas' addresses that serve the same models.
    model: served name of the base model; None = the one served entry that is not an adapter.
    max_concurrency: most requests in flight at once from one call, over all replicas.
    balance: which replica takes the next request: the one with the fewest in flight (ties in
        turn), or strictly in turn.
    timeout_s: limit for one request's answer (RequestTimeout past it; not sent again).
    connect_timeout_s: limit for opening a connection.
    connect_attempts: a request the connection fails (refused, reset, closed without an answer)
        or the server does not take (5xx, 429) is sent this many times in all, with the openai
        client's backoff (0.5 s, 1 s, 2 s, ... up to 8 s, less up to 25% jitter); then
        BackendUnavailable.
    max_images / max_image_pixels / max_image_bytes: limits checked before anything is sent.
    api_key: the server's --api-key, if it has one."""

    def __init__(self, url: str | Sequence[str], *, model: str | None = None, max_concurrency: int = 32,
                 balance: Balance = "least_busy", timeout_s: float = 300.0, connect_timeout_s: float = 5.0,
                 connect_attempts: int = 5, max_images: int = MAX_IMAGES,
                 max_image_pixels: int = DEFAULT_MAX_PIXELS, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
                 api_key: str | None = None) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise ValueError("no server URL given")
        if balance not in ("least_busy", "round_robin"):
            raise ValueError(f"balance must be least_busy or round_robin, got {balance!r}")
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in urls]
        self.url = self.urls[0] if len(self.urls) == 1 else ", ".join(self.urls)
        self.max_concurrency = max_concurrency
        self.balance = balance
        self.timeout_s = timeout_s
        self.connect_attempts = max(1, connect_attempts)
        self.max_images = max_images
        self.max_image_pixels = max_image_pixels
        self.max_image_bytes = max_image_bytes
        self._model = model
        self._served: list[dict[str, Any]] | None = None
        self._prompt_ids: dict[str, Future[list[int]]] = {}
        self._counter = _Counter()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        timeout = httpx2.Timeout(timeout_s, connect=connect_timeout_s)
        limits = httpx2.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency,
                               keepalive_expiry=KEEPALIVE_EXPIRY_S)
        self._replicas = [_Replica(u, openai.OpenAI(
            base_url=u + "/v1", api_key=api_key or "EMPTY", timeout=timeout, max_retries=self.connect_attempts - 1,
            http_client=openai.DefaultHttpxClient(
                timeout=timeout, transport=_NoTimeoutResend(httpx2.HTTPTransport(limits=limits), u, timeout_s,
                                                            self._counter)),
        )) for u in self.urls]

    @property
    def http_requests(self) -> int:
        """HTTP requests sent so far, resends included (all replicas)."""
        return self._counter.n

    @property
    def requests_per_replica(self) -> dict[str, int]:
        """Requests each replica was given (a resend counts once)."""
        return {r.url: r.sent for r in self._replicas}

    # ------------------------------------------------------------ served models

    def served_models(self, refresh: bool = False) -> list[str]:
        """Names the server answers to (GET /v1/models): the base model, then the adapters.
        With replicas, each is asked and all must serve the same names."""
        if self._served is None or refresh:
            listings = [self._call(r, "GET /v1/models", lambda c: c.models.with_raw_response.list(), ("data",))["data"]
                        for r in self._replicas]
            names = [[e["id"] for e in listing] for listing in listings]
            for replica, served in zip(self._replicas[1:], names[1:]):
                if sorted(served) != sorted(names[0]):
                    raise BackendError(f"the replicas serve different models: {self._replicas[0].url} serves "
                                       f"{names[0]}, {replica.url} serves {served}")
            self._served = listings[0]
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
                raise BackendError(f"{self.url} serves base models {bases}: pass model= (eval: served_model) "
                                   "to pick one")
            self._model = bases[0]
        return self._model

    @property
    def is_vllm(self) -> bool:
        """Whether the server is vLLM (its /v1/models entries say owned_by "vllm"); only then are
        vLLM's own request fields sent."""
        self.served_models()
        return any(e.get("owned_by") == "vllm" for e in self._served)

    # ------------------------------------------------------------ Backend

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        return self._map(self._chat_one, requests)

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        kwargs = self._chat_kwargs(request)
        with self._replica() as replica:
            stream = self._call(replica, "POST /v1/chat/completions",
                                lambda c: c.chat.completions.create(stream=True, **kwargs), model=kwargs["model"])
            try:
                for chunk in stream:
                    if chunk.choices and (delta := chunk.choices[0].delta.content):
                        yield delta
            except openai.APIConnectionError as e:  # a stream cut off is not resent: its start was read
                raise BackendUnavailable(replica.url, f"the connection broke while streaming "
                                         f"({type(e.__cause__ or e).__name__})") from None
            except openai.APIError as e:  # an error event in the stream
                raise BackendError(f"{replica.url} failed while streaming: {_one_line(e.message)}") from None
            finally:
                stream.close()

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return self._map(self._score_one, requests)

    def close(self) -> None:
        for replica in self._replicas:
            replica.client.close()

    # ------------------------------------------------------------ requests

    def _chat_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        messages = self._messages(request.images, request.prompt)  # checked before anything is sent
        kwargs: dict[str, Any] = {
            "model": self._model_name(request.adapter), "messages": messages,
            "max_tokens": request.max_tokens, "temperature": request.temperature, **_PLAIN_SAMPLING,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.wants_logprobs:
            kwargs |= {"logprobs": True, "top_logprobs": request.top_logprobs}
        if self.is_vllm:
            kwargs["extra_body"] = {"return_token_ids": True, **_PLAIN_SAMPLING_VLLM}
        return kwargs

    def _chat_one(self, request: ChatRequest) -> ChatResponse:
        kwargs = self._chat_kwargs(request)
        data = self._post_chat(kwargs, expect=("choices", "usage"))
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
        if not self.is_vllm:
            raise BackendError(f"{self.url} is not a vLLM server: likelihood scoring needs vLLM's prompt_logprobs")
        # Text-only renderings locate the continuation: the tokens after the images do not depend on them.
        prompt_ids = self._generation_prompt_ids(request.prompt)
        open_ids = self._tokenize(build_messages(0, request.prompt, request.continuation), continue_final_message=True)
        data = self._post_chat({
            "model": model, "messages": messages, "max_tokens": 1, "temperature": 0.0,
            "extra_body": {"add_generation_prompt": False, "prompt_logprobs": 0, "return_token_ids": True},
        }, expect=("prompt_logprobs", "prompt_token_ids"))
        logprobs, scored_ids = data["prompt_logprobs"], data["prompt_token_ids"]
        span = locate_span(prompt_ids, open_ids, scored_ids, include_end=request.include_end)
        return span_logprobs(span, scored_ids, lambda p, t: logprobs[p][str(t)]["logprob"])

    def _generation_prompt_ids(self, prompt: str) -> list[int]:
        """The text-only user turn and generation prompt, tokenised; asked once per prompt (the
        first of concurrent scores of a prompt asks, the others wait for its answer)."""
        with self._lock:
            if (pending := self._prompt_ids.get(prompt)) is None:
                if len(self._prompt_ids) >= _PROMPT_IDS_CACHE:
                    self._prompt_ids.clear()
                pending = self._prompt_ids[prompt] = Future()
                asks = True
            else:
                asks = False
        if asks:
            try:
                pending.set_result(self._tokenize(build_messages(0, prompt), add_generation_prompt=True))
            except BaseException as e:  # noqa: BLE001 - Ctrl-C too: the waiting scores must not wait forever
                with self._lock:
                    self._prompt_ids.pop(prompt, None)  # a later score asks again
                pending.set_exception(e)
        return pending.result()

    def _tokenize(self, messages: list[dict[str, Any]], add_generation_prompt: bool = False,
                  continue_final_message: bool = False) -> list[int]:
        body = {"model": self.base_model, "messages": messages, "add_generation_prompt": add_generation_prompt,
                "continue_final_message": continue_final_message}
        with self._replica() as replica:
            # /tokenize is vLLM's, beside /v1: an absolute URL on the same client
            return self._call(replica, "POST /tokenize", lambda c: c.post(
                replica.url + "/tokenize", body=body, cast_to=httpx2.Response), ("tokens",))["tokens"]

    def _post_chat(self, kwargs: dict[str, Any], expect: tuple[str, ...]) -> dict[str, Any]:
        with self._replica() as replica:
            return self._call(replica, "POST /v1/chat/completions",
                              lambda c: c.chat.completions.with_raw_response.create(**kwargs), expect,
                              model=kwargs["model"])

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

    def _map(self, fn: Callable[[Any], Any], requests: Sequence[Any]) -> list[Any]:
        if len(requests) <= 1:
            return [fn(r) for r in requests]
        with ThreadPoolExecutor(min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(fn, requests))

    @contextmanager
    def _replica(self) -> Iterator[_Replica]:
        """The replica that takes the next request, counted busy while it is in flight."""
        with self._lock:
            turn = next(self._turn)
            if self.balance == "round_robin":
                replica = self._replicas[turn % len(self._replicas)]
            else:  # fewest in flight; among those, the next in turn
                n = len(self._replicas)
                replica = min((self._replicas[(turn + i) % n] for i in range(n)), key=lambda r: r.in_flight)
            replica.in_flight += 1
            replica.sent += 1
        try:
            yield replica
        finally:
            with self._lock:
                replica.in_flight -= 1

    def _call(self, replica: _Replica, what: str, send: Callable[[openai.OpenAI], Any],
              expect: tuple[str, ...] = (), model: str | None = None) -> Any:
        """send(client)'s answer: its JSON (a raw response; BackendError, naming the URL, when it
        is not JSON or lacks, or has empty, a field of `expect`: an address that is no vLLM server)
        or the object itself (a stream). The client's errors become facellm's, on one line."""
        start = time.monotonic()
        try:
            answer = send(replica.client)
        except openai.APIStatusError as e:
            if e.status_code == 503 or e.status_code == 429:
                raise BackendUnavailable(replica.url, f"{what} failed {self.connect_attempts} times over "
                                         f"{time.monotonic() - start:.1f} s (last: {e.status_code})") from None
            message = _error_message(e.response)
            if e.status_code == 404 and model is not None and "does not exist" in message:
                raise UnknownAdapterError(model, self.served_models(refresh=True), replica.url) from None
            method, path = what.split(" ", 1)
            raise BackendError(f"{method} {replica.url}{path} answered {e.status_code}: {message}") from None
        except openai.APIConnectionError as e:  # APITimeoutError included: a connect or pool timeout
            cause = e.__cause__ or e
            raise BackendUnavailable(replica.url, f"{what} failed {self.connect_attempts} times over "
                                     f"{time.monotonic() - start:.1f} s (last: {type(cause).__name__}: "
                                     f"{_one_line(str(cause))})") from None
        raw = getattr(answer, "http_response", answer)  # with_raw_response's wrapper, or a response
        if not isinstance(raw, httpx2.Response):
            return answer  # a stream
        method, path = what.split(" ", 1)
        return _json_answer(raw, f"{method} {replica.url}{path}", expect)


class _NoTimeoutResend(httpx2.BaseTransport):
    """The HTTP transport of one replica: counts requests, and turns a read or write timeout
    into RequestTimeout, which the openai client does not resend (it resends timeouts like
    connection errors: a request that ran past timeout_s would run past it again, each time).
    Connect and pool timeouts stay the client's to resend."""

    def __init__(self, inner: httpx2.BaseTransport, url: str, timeout_s: float, counter: _Counter) -> None:
        self._inner, self._url, self._timeout_s, self._counter = inner, url, timeout_s, counter

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        with self._counter.lock:
            self._counter.n += 1
        try:
            response = self._inner.handle_request(request)
        except (httpx2.ReadTimeout, httpx2.WriteTimeout) as e:
            raise self._timeout(request, e) from e
        return httpx2.Response(response.status_code, headers=response.headers, extensions=response.extensions,
                               stream=_TimedStream(response.stream, lambda e: self._timeout(request, e)))

    def _timeout(self, request: httpx2.Request, e: Exception) -> RequestTimeout:
        return RequestTimeout(f"{request.method} {self._url}{request.url.path} got no answer within "
                              f"{self._timeout_s} s (timeout_s): {type(e).__name__}")

    def close(self) -> None:
        self._inner.close()


class _TimedStream(httpx2.SyncByteStream):
    """A response body whose read timeout is a RequestTimeout (vLLM's answer can stall mid-body)."""

    def __init__(self, inner: Any, error: Callable[[Exception], RequestTimeout]) -> None:
        self._inner, self._error = inner, error

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except httpx2.ReadTimeout as e:
            raise self._error(e) from e

    def close(self) -> None:
        self._inner.close()


def locate_span(prompt_ids: Sequence[int], open_ids: Sequence[int], scored_ids: Sequence[int],
                include_end: bool = True) -> ScoredSpan:
    """The scored tokens in the server's tokenised conversation (images expanded), from two
    text-only tokenisations: the generation prompt alone and the conversation ending right after
    the continuation (`continue_final_message`). What the template writes after the
    continuation (its end-of-turn token, then n_after tokens) is found where the continuation's
    tokens, preceded by the generation prompt's last tokens, end in `scored_ids`, one token for
    the end of turn before what follows. Raises ValueError where a token straddles a boundary."""
    prompt_ids, open_ids = list(prompt_ids), list(open_ids)
    if open_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the continuation's first token merges with the template's generation prompt "
                         "(does it start with whitespace?): it cannot be scored token by token")
    tokens = open_ids[len(prompt_ids):]
    if not tokens:
        raise ValueError("the continuation is empty")
    # the generation prompt's tail: after the images, however short the user's text is
    anchor = prompt_ids[-3:] + tokens
    length = len(scored_ids)
    for n_after in range(length - len(anchor)):
        stop = length - n_after - 1  # the end-of-turn token's position
        if list(scored_ids[stop - len(anchor):stop]) == anchor:
            if include_end:
                return ScoredSpan(tuple(tokens) + (scored_ids[stop],), n_after)
            return ScoredSpan(tuple(tokens), n_after + 1)
    raise ValueError("the continuation's tokens are not followed by an end-of-turn token in the server's "
                     "rendering (does it end with whitespace, or does the template write none?): it cannot be "
                     "scored token by token")


def _json_answer(response: httpx2.Response, where: str, expect: tuple[str, ...]) -> dict[str, Any]:
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


def _error_message(response: httpx2.Response) -> str:
    try:
        return _one_line(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return _snippet(response.text)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _snippet(text: str, limit: int = 200) -> str:
    """A body's start on one line, for an error message."""
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))
