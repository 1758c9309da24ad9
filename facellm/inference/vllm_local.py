"""vLLM in-process backend (`vllm.LLM`): batched offline generation and likelihood scoring.

Each call hands the whole list to vLLM, which batches it; LoRA adapters are picked per request
by name (`LoRARequest`). Scoring feeds the whole conversation (prompt, continuation, end-of-turn
token, as the template renders it) and reads vLLM's `prompt_logprobs` of the scored tokens.
vLLM spawns worker processes: a script that builds this backend needs an
`if __name__ == "__main__":` guard.

    >>> backend = VLLMLocalBackend("/tmp/devtiny/model", {"lora_a": "/tmp/devtiny/lora_a"})
    >>> backend.continuation_logprobs([ScoreRequest([face], "Is the person smiling?", "Yes.", "lora_a")])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from transformers import AutoProcessor

from facellm.images import DEFAULT_MAX_PIXELS
from facellm.inference.base import (
    MAX_IMAGES,
    NO_USAGE_STATS,
    VLLM_CPU_LORA_FIX,
    ChatRequest,
    ChatResponse,
    ScoreRequest,
    TokenLogprob,
    adapts_vision,
    chat_prompt,
    check_adapter,
    check_images,
    local_scored_span,
    span_logprobs,
    vllm_lora_rank,
)

os.environ.update(NO_USAGE_STATS)  # before vLLM is imported (in VLLMLocalBackend), which reads it


class VLLMLocalBackend:
    """model: folder or hub id. adapters: name -> peft adapter folder.
    dtype: vLLM dtype; None = "float32" on CPU, "auto" elsewhere.
    max_model_len: longest prompt + reply in tokens.
    cpu_kvcache_space_gib: KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE), set before vLLM starts.
    seed: the engine's seed. engine_kwargs: further `vllm.LLM` arguments.
    max_images / max_image_pixels: limits on a request's images."""

    def __init__(self, model: str | Path, adapters: dict[str, str | Path] | None = None, *,
                 dtype: str | None = None, max_model_len: int = 4096, cpu_kvcache_space_gib: int = 1,
                 seed: int = 0, max_images: int = MAX_IMAGES, max_image_pixels: int = DEFAULT_MAX_PIXELS,
                 engine_kwargs: dict[str, Any] | None = None) -> None:
        from vllm import LLM
        from vllm.lora.request import LoRARequest
        from vllm.platforms import current_platform

        on_cpu = current_platform.is_cpu()
        if on_cpu:  # read by the engine's worker processes when they start
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kvcache_space_gib)
        adapters = {name: str(path) for name, path in (adapters or {}).items()}
        lora_args: dict[str, Any] = {}
        if adapters:
            lora_args = dict(enable_lora=True, max_loras=len(adapters),
                             max_lora_rank=vllm_lora_rank(list(adapters.values())),
                             enable_tower_connector_lora=adapts_vision(list(adapters.values())))
            if on_cpu:
                lora_args["worker_extension_cls"] = VLLM_CPU_LORA_FIX
        self.processor = AutoProcessor.from_pretrained(model)
        self.llm = LLM(
            model=str(model), dtype=dtype or ("float32" if on_cpu else "auto"),
            max_model_len=max_model_len, limit_mm_per_prompt={"image": max_images}, seed=seed,
            **lora_args, **(engine_kwargs or {}),
        )
        self.adapters = tuple(adapters)
        self._lora = {name: LoRARequest(name, i, path) for i, (name, path) in enumerate(adapters.items(), 1)}
        self.max_images = max_images
        self.max_image_pixels = max_image_pixels

    # ------------------------------------------------------------ Backend

    def chat(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        from vllm import SamplingParams

        prompts = [self._prompt(r, None) for r in requests]
        params = [
            SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed,
                           logprobs=r.top_logprobs if r.wants_logprobs else None)
            for r in requests
        ]
        outputs = self._generate(prompts, params, [r.adapter for r in requests])
        return [_response(out.outputs[0], r.top_logprobs if r.wants_logprobs else None)
                for out, r in zip(outputs, requests)]

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        """The whole reply as one piece: `vllm.LLM` has no streaming (the server backend streams)."""
        [response] = self.chat([request])
        yield response.text

    def continuation_logprobs(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        from vllm import SamplingParams

        spans, prompts = [], []
        for request in requests:
            text, span = local_scored_span(self.processor, request)
            spans.append(span)
            prompts.append(self._prompt(request, text))
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        outputs = self._generate(prompts, params, [r.adapter for r in requests])
        return [
            span_logprobs(span, out.prompt_token_ids,
                          lambda p, t, lps=out.prompt_logprobs: lps[p][t].logprob)
            for span, out in zip(spans, outputs)
        ]

    def close(self) -> None:
        """Stop vLLM's engine process now rather than at interpreter exit."""
        if self.llm is not None:
            self.llm.llm_engine.engine_core.shutdown()
            self.llm = None

    # ------------------------------------------------------------ internals

    def _prompt(self, request: ChatRequest | ScoreRequest, text: str | None) -> dict[str, Any]:
        check_adapter(request.adapter, self.adapters, "the in-process vLLM backend")
        images = check_images(request.images, self.max_images, self.max_image_pixels)
        if text is None:
            text = chat_prompt(self.processor, len(images), request.prompt)
        return {"prompt": text, "multi_modal_data": {"image": images}}

    def _generate(self, prompts: list[dict[str, Any]], params: Any, adapters: list[str | None]) -> list[Any]:
        if not prompts:
            return []
        return self.llm.generate(
            prompts, params, use_tqdm=False,
            lora_request=[self._lora[a] if a else None for a in adapters],
            # the template already wrote every special token, as in training and on the server
            tokenization_kwargs={"add_special_tokens": False},
        )


def _response(completion: Any, top_k: int | None) -> ChatResponse:
    response = ChatResponse(text=completion.text, finish_reason=completion.finish_reason or "length",
                            completion_tokens=len(completion.token_ids))
    if top_k is not None:
        response.token_logprobs = [
            TokenLogprob(step[t].decoded_token or "", step[t].logprob, t)
            for t, step in zip(completion.token_ids, completion.logprobs)
        ]
        if top_k:
            first = sorted(completion.logprobs[0].items(), key=lambda item: item[1].rank)[:top_k]
            response.first_top_logprobs = [TokenLogprob(lp.decoded_token or "", lp.logprob, t) for t, lp in first]
    return response
