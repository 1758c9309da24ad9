"""What every inference backend (transformers, vLLM in-process, vLLM server) agrees on.

A backend answers chat requests (1-2 face images + a user prompt) and scores a given assistant
continuation token by token. Prompts are built here, once, in the training layout of
docs/design.md (image parts, then one text part) and rendered by the model's own chat template,
so training, the in-process backends and the server see the same text:

    >>> from facellm.inference.hf import HFBackend
    >>> backend = HFBackend("/tmp/devtiny/model", adapters={"lora_a": "/tmp/devtiny/lora_a"})
    >>> [reply] = backend.chat([ChatRequest([face], "Is the person smiling?", max_tokens=8)])
    >>> reply.text, reply.finish_reason
    ('Yes.', 'stop')
    >>> backend.continuation_logprobs([ScoreRequest([face], "Is the person smiling?", "Yes.")])
    [[-0.02, -0.001, -0.0003]]          # "Yes", ".", "<|im_end|>"
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from facellm.images import DEFAULT_MAX_PIXELS, to_rgb

MAX_IMAGES = 2  # the tasks ask about one face or a pair

# vLLM reports usage to its maker's server unless told not to; every vLLM the project starts
# (the server's environment, the in-process engine's os.environ) carries these.
NO_USAGE_STATS = {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}


@dataclass(frozen=True)
class ChatRequest:
    """One user turn to answer.

    images: 1-2 PIL images, in the order of the image parts.
    prompt: the user text (the template adds the image placeholders).
    max_tokens: most tokens to generate.
    temperature: 0 = greedy decoding, else sampling at this temperature.
    adapter: name of a LoRA adapter the backend serves; None = the base model.
    logprobs: return the log-probability of every generated token.
    top_logprobs: return the k most likely tokens at the first generated position (implies logprobs).
    seed: sampling seed when temperature > 0.
    """

    images: Sequence[Image.Image]
    prompt: str
    max_tokens: int = 256
    temperature: float = 0.0
    adapter: str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None

    @property
    def wants_logprobs(self) -> bool:
        return self.logprobs or self.top_logprobs > 0


@dataclass(frozen=True)
class ScoreRequest:
    """An assistant continuation to score given the images and the user prompt.

    continuation: the assistant text, tokenised as the chat template renders the assistant turn.
    include_end: also score the end-of-turn token that closes the turn ("<|im_end|>" for Qwen),
        as training does: it says the answer is complete.
    """

    images: Sequence[Image.Image]
    prompt: str
    continuation: str
    adapter: str | None = None
    include_end: bool = True


@dataclass(frozen=True)
class TokenLogprob:
    """token: the token's text. token_id: its id where the backend reports it (the server gives
    no ids for the top-k alternatives). logprob: natural log-probability under the raw model."""

    token: str
    logprob: float
    token_id: int | None = None


@dataclass
class ChatResponse:
    """text: the generated text (no end-of-turn token). finish_reason: "stop" (end token) or
    "length" (max_tokens). completion_tokens: tokens generated.
    token_logprobs: one entry per generated token, when asked.
    first_top_logprobs: the k most likely tokens at the first generated position, best first."""

    text: str
    finish_reason: str
    completion_tokens: int
    token_logprobs: list[TokenLogprob] | None = None
    first_top_logprobs: list[TokenLogprob] | None = None


@runtime_checkable
class Backend(Protocol):
    """adapters: names of the LoRA adapters a request may pick (None = base model)."""

    adapters: tuple[str, ...]

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]: ...

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        """The text of the reply in pieces, as it is generated."""
        ...

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """Per request, the log-probability of each scored continuation token."""
        ...

    def close(self) -> None: ...


class BackendError(RuntimeError):
    """A backend could not answer."""


class BackendUnavailable(BackendError):
    """The server at `url` did not answer (down, not ready, or unreachable)."""

    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        super().__init__(f"vLLM server at {url} is unavailable: {detail}")


class UnknownAdapterError(BackendError, LookupError):
    """A request named an adapter the backend does not serve."""

    def __init__(self, adapter: str, available: Sequence[str], where: str) -> None:
        self.adapter = adapter
        self.available = tuple(available)
        names = ", ".join(self.available) or "none"
        super().__init__(f"adapter {adapter!r} is not served by {where}; served: {names} "
                         "(adapter=None selects the base model)")

    def __str__(self) -> str:  # LookupError would quote the message
        return self.args[0]


class InvalidImageError(ValueError):
    """An image a request carries cannot be sent to a model."""


# ---------------------------------------------------------------- requests


def check_adapter(adapter: str | None, available: Sequence[str], where: str) -> None:
    """Raise UnknownAdapterError unless adapter is None or one of `available`."""
    if adapter is not None and adapter not in available:
        raise UnknownAdapterError(adapter, available, where)


def check_images(images: Sequence[Any], max_images: int = MAX_IMAGES,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Image.Image]:
    """The request's images as decoded RGB PIL images, or InvalidImageError saying which image
    is wrong and why: not a PIL image, empty, more than `max_pixels` pixels, undecodable, or
    a count outside 1..max_images."""
    if isinstance(images, Image.Image) or not isinstance(images, Sequence):
        raise InvalidImageError(f"images must be a list of 1-{max_images} PIL images, "
                                f"got {type(images).__name__}")
    if not 1 <= len(images) <= max_images:
        raise InvalidImageError(f"expected 1-{max_images} images per request, got {len(images)}")
    checked = []
    for i, image in enumerate(images, 1):
        where = f"image {i} of {len(images)}"
        if not isinstance(image, Image.Image):
            raise InvalidImageError(f"{where}: expected a PIL image, got {type(image).__name__} "
                                    "(open files with facellm.images.load_image)")
        width, height = image.size
        if width == 0 or height == 0:
            raise InvalidImageError(f"{where}: empty image ({width}x{height} pixels)")
        if width * height > max_pixels:
            raise InvalidImageError(f"{where}: oversized image, {width}x{height} pixels, more than "
                                    f"the limit of {max_pixels:,} (max_image_pixels)")
        try:
            image.load()
            checked.append(image if image.mode == "RGB" else to_rgb(image))
        except Exception as e:  # truncated or corrupt data surfaces only when decoded
            raise InvalidImageError(f"{where}: cannot be decoded ({type(e).__name__}: {e})") from e
    return checked


def build_messages(n_images: int, prompt: str, continuation: str | None = None) -> list[dict[str, Any]]:
    """The conversation in the training layout: a user turn of `n_images` image parts and one
    text part, then, if given, an assistant turn of one text part."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in range(n_images)]
    messages = [{"role": "user", "content": content + [{"type": "text", "text": prompt}]}]
    if continuation is not None:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": continuation}]})
    return messages


def chat_prompt(processor: Any, n_images: int, prompt: str, continuation: str | None = None,
                open_end: bool = False) -> str:
    """The prompt text every local backend feeds the model, rendered by the processor's chat
    template (the one saved with the model and given to the server with --chat-template).

    Without a continuation: the user turn and the generation prompt ("<|im_start|>assistant\\n").
    With one: the whole assistant turn as training renders it (its end-of-turn token and what the
    template writes after it); open_end=True stops right after the continuation text instead.
    """
    messages = build_messages(n_images, prompt, continuation)
    return processor.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=continuation is None,
        continue_final_message=open_end,
    )


# ---------------------------------------------------------------- likelihood scoring


@dataclass(frozen=True)
class ScoredSpan:
    """Where the scored continuation tokens lie in the rendered conversation, counted from the
    end, so that it holds whatever the images expand to: in a sequence of L tokens they are
    positions L - n_after - len(token_ids) .. L - n_after - 1.

    token_ids: the scored tokens (the continuation's, then the end-of-turn token if included).
    n_after: tokens the template writes after them (Qwen: the "\\n" after "<|im_end|>").
    """

    token_ids: tuple[int, ...]
    n_after: int

    def positions(self, length: int) -> range:
        stop = length - self.n_after
        return range(stop - len(self.token_ids), stop)


def scored_span(prompt_ids: Sequence[int], open_ids: Sequence[int], closed_ids: Sequence[int],
                include_end: bool = True) -> ScoredSpan:
    """The scored tokens from three tokenised renderings of one conversation: the generation
    prompt alone, the conversation ending right after the continuation (open_end), and the
    whole conversation. Raises ValueError where a token straddles a boundary, since then the
    continuation is not a sequence of whole tokens in the rendered turn."""
    prompt_ids, open_ids, closed_ids = list(prompt_ids), list(open_ids), list(closed_ids)
    if open_ids[: len(prompt_ids)] != prompt_ids:
        raise ValueError("the continuation's first token merges with the template's generation prompt "
                         "(does it start with whitespace?): it cannot be scored token by token")
    if len(open_ids) == len(prompt_ids):
        raise ValueError("the continuation is empty")
    if closed_ids[: len(open_ids)] != open_ids:
        raise ValueError("the continuation's last token merges with what the template writes after it "
                         "(does it end with whitespace?): it cannot be scored token by token")
    stop = len(open_ids) + (1 if include_end else 0)
    if stop > len(closed_ids):
        raise ValueError("the chat template writes no end-of-turn token after the assistant turn")
    return ScoredSpan(tuple(closed_ids[len(prompt_ids):stop]), len(closed_ids) - stop)


def local_scored_span(processor: Any, request: ScoreRequest) -> tuple[str, ScoredSpan]:
    """(the text of the whole conversation, its ScoredSpan) for a backend that holds the processor."""
    n, prompt, continuation = len(request.images), request.prompt, request.continuation
    texts = (chat_prompt(processor, n, prompt),
             chat_prompt(processor, n, prompt, continuation, open_end=True),
             chat_prompt(processor, n, prompt, continuation))
    ids = [processor.tokenizer(text, add_special_tokens=False)["input_ids"] for text in texts]
    return texts[2], scored_span(*ids, include_end=request.include_end)


def span_logprobs(span: ScoredSpan, input_ids: Sequence[int],
                  logprob_at: Callable[[int, int], float]) -> list[float]:
    """The scored tokens' log-probabilities in a tokenised conversation (images expanded).
    logprob_at(position, token_id) reads one from the backend's output. Raises BackendError if
    the sequence does not end with the expected tokens, i.e. the backend rendered differently."""
    positions = span.positions(len(input_ids))
    found = tuple(input_ids[p] for p in positions)
    if positions.start < 1 or found != span.token_ids:
        raise BackendError(f"the scored tokens {list(span.token_ids)} are not where expected in the "
                           f"backend's prompt (found {list(found)}): it rendered the chat differently")
    return [logprob_at(p, input_ids[p]) for p in positions]


# ---------------------------------------------------------------- adapters

# The LoRA ranks vLLM 0.32 accepts for --max-lora-rank.
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
# vLLM worker extension that fixes base-model requests batched with LoRA requests on CPU
# (see facellm/inference/vllm_cpu_lora.py).
VLLM_CPU_LORA_FIX = "facellm.inference.vllm_cpu_lora.CPULoRAFix"


def adapter_rank(path: str | Path) -> int:
    """The largest LoRA rank in a peft adapter folder (r and any rank_pattern override)."""
    config_path = Path(path) / "adapter_config.json"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{config_path}: no adapter_config.json: not a peft adapter folder") from None
    return max([int(config["r"]), *map(int, (config.get("rank_pattern") or {}).values())])


def adapts_vision(adapter_paths: Sequence[str | Path]) -> bool:
    """Whether any adapter has LoRA layers on the vision tower or its merger (Qwen2-VL's
    `visual.`), which vLLM serves only with --enable-tower-connector-lora."""
    for path in adapter_paths:
        targets = json.loads((Path(path) / "adapter_config.json").read_text()).get("target_modules") or ()
        if any("visual" in t for t in ([targets] if isinstance(targets, str) else targets)):
            return True
    return False


def vllm_lora_rank(adapter_paths: Sequence[str | Path]) -> int:
    """The smallest --max-lora-rank vLLM accepts that fits every adapter."""
    rank = max((adapter_rank(p) for p in adapter_paths), default=1)
    for allowed in VLLM_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest --max-lora-rank {VLLM_LORA_RANKS[-1]}")

