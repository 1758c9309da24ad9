"""transformers (+peft) in-process backend: the reference the vLLM backends are checked against.

Requests run one at a time under a lock (the model and its active adapter are shared state).
LoRA adapters are loaded by name into one peft model; adapter=None runs the base model with
the adapters disabled.

    >>> backend = HFBackend("/tmp/devtiny/model", {"lora_a": "/tmp/devtiny/lora_a"})
    >>> backend.chat([ChatRequest([face], "Describe the face.", max_tokens=32, adapter="lora_a")])
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from transformers import GenerationConfig, TextIteratorStreamer

from facellm.images import DEFAULT_MAX_PIXELS
from facellm.inference.base import (
    MAX_IMAGES,
    ChatRequest,
    ChatResponse,
    ScoreRequest,
    TokenLogprob,
    check_adapter,
    check_images,
    chat_prompt,
    local_scored_span,
    span_logprobs,
)
from facellm.models.loading import load_model


class HFBackend:
    """model: registry name, hub id or folder (facellm.models.loading.load_model). A registry
        name brings its entry's processor limits and chat template, while the vLLM backends
        read a folder's own: compare backends on the same folder (facellm.inference.factory does).
    adapters: name -> peft adapter folder.
    dtype: torch dtype name. device: torch device.
    threads: torch CPU threads (default FACELLM_THREADS, else torch's default).
    max_images / max_image_pixels: limits on a request's images."""

    def __init__(self, model: str | Path, adapters: dict[str, str | Path] | None = None, *,
                 dtype: str = "float32", device: str = "cpu", threads: int | None = None,
                 max_images: int = MAX_IMAGES, max_image_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        threads = threads or int(os.environ.get("FACELLM_THREADS", "0")) or None
        if threads:
            torch.set_num_threads(threads)
        self.model, self.processor = load_model(model, dtype=dtype, device=device)
        self.adapters = tuple(adapters or {})
        if adapters:
            from peft import PeftModel

            (first, path), *rest = adapters.items()
            self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=first).eval()
            for name, path in rest:
                self.model.load_adapter(str(path), adapter_name=name)
        self.device = self.model.device
        self.max_images = max_images
        self.max_image_pixels = max_image_pixels
        self.eos_ids = _eos_ids(self.model)
        self._lock = threading.Lock()

    # ------------------------------------------------------------ Backend

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        return [self._chat_one(request) for request in requests]

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        inputs = self._inputs(request)
        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        with self._lock, self._adapter(request.adapter):
            failure: list[BaseException] = []

            def generate() -> None:
                try:
                    self._generate(inputs, request, streamer=streamer)
                except BaseException as e:  # re-raised below; end the stream so the reader stops
                    failure.append(e)
                    streamer.end()

            worker = threading.Thread(target=generate, daemon=True)
            worker.start()
            try:
                yield from (piece for piece in streamer if piece)
            finally:
                worker.join()
            if failure:
                raise failure[0]

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        return [self._score_one(request) for request in requests]

    def close(self) -> None:
        self.model = None

    # ------------------------------------------------------------ internals

    def _inputs(self, request: ChatRequest | ScoreRequest, text: str | None = None) -> dict[str, torch.Tensor]:
        check_adapter(request.adapter, self.adapters, "the transformers backend")
        images = check_images(request.images, self.max_images, self.max_image_pixels)
        if text is None:
            text = chat_prompt(self.processor, len(images), request.prompt)
        # add_special_tokens=False: the template already wrote every special token
        inputs = self.processor(text=[text], images=images, add_special_tokens=False, return_tensors="pt")
        return {k: v.to(self.device) for k, v in inputs.items()}

    @contextmanager
    def _adapter(self, name: str | None) -> Iterator[None]:
        if not self.adapters:
            yield
        elif name is None:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(name)
            yield

    def _generate(self, inputs: dict[str, torch.Tensor], request: ChatRequest, **kwargs: Any) -> Any:
        sample = request.temperature > 0
        config = GenerationConfig(
            max_new_tokens=request.max_tokens, do_sample=sample,
            temperature=request.temperature if sample else None, top_p=None, top_k=None,
            eos_token_id=self.eos_ids, pad_token_id=self.processor.tokenizer.pad_token_id,
            return_dict_in_generate=True, output_logits=request.wants_logprobs,
        )
        if sample and request.seed is not None:
            torch.manual_seed(request.seed)
        with torch.inference_mode():
            return self.model.generate(**inputs, generation_config=config, **kwargs)

    def _chat_one(self, request: ChatRequest) -> ChatResponse:
        inputs = self._inputs(request)
        with self._lock, self._adapter(request.adapter):
            out = self._generate(inputs, request)
        ids = out.sequences[0, inputs["input_ids"].shape[1]:].tolist()
        tokenizer = self.processor.tokenizer
        response = ChatResponse(
            text=tokenizer.decode(ids, skip_special_tokens=True),
            finish_reason="stop" if ids and ids[-1] in self.eos_ids else "length",
            completion_tokens=len(ids),
        )
        if request.wants_logprobs:
            logprobs = [torch.log_softmax(step[0].float(), dim=-1) for step in out.logits]
            response.token_logprobs = [
                TokenLogprob(tokenizer.decode([t]), float(lp[t]), t) for t, lp in zip(ids, logprobs)
            ]
            if request.top_logprobs:
                values, top_ids = logprobs[0].topk(request.top_logprobs)
                response.first_top_logprobs = [
                    TokenLogprob(tokenizer.decode([t]), v, t) for v, t in zip(values.tolist(), top_ids.tolist())
                ]
        return response

    def _score_one(self, request: ScoreRequest) -> list[float]:
        text, span = local_scored_span(self.processor, request)
        inputs = self._inputs(request, text)
        keep = len(span.token_ids) + span.n_after + 1  # logits at t predict token t + 1
        with self._lock, self._adapter(request.adapter), torch.inference_mode():
            logits = self.model(**inputs, logits_to_keep=keep).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        ids = inputs["input_ids"][0].tolist()
        first_kept = len(ids) - keep
        return span_logprobs(span, ids, lambda p, t: float(logprobs[p - 1 - first_kept, t]))


def _eos_ids(model: Any) -> list[int]:
    eos = model.generation_config.eos_token_id
    return [eos] if isinstance(eos, int) else list(eos or [])
