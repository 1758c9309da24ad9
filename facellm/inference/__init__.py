"""Inference backends behind one interface (`Backend`): transformers in-process (`hf`), vLLM
in-process (`vllm_local`), a vLLM OpenAI-compatible server (`vllm_server`), and the server
launcher (`server`). The backends import torch / vLLM, so they load on first use:

    >>> from facellm.inference import ChatRequest, VLLMServerBackend, start_server
"""

from __future__ import annotations

import importlib
from typing import Any

from facellm.inference.base import (
    Backend,
    BackendError,
    BackendUnavailable,
    ChatRequest,
    ChatResponse,
    InvalidImageError,
    ScoreRequest,
    TokenLogprob,
    UnknownAdapterError,
    build_messages,
    chat_prompt,
)

_LAZY = {
    "HFBackend": "facellm.inference.hf",
    "VLLMLocalBackend": "facellm.inference.vllm_local",
    "VLLMServerBackend": "facellm.inference.vllm_server",
    "RequestTimeout": "facellm.inference.vllm_server",
    "start_server": "facellm.inference.server",
    "ServerHandle": "facellm.inference.server",
    "ServerStartError": "facellm.inference.server",
}

__all__ = [
    "Backend", "BackendError", "BackendUnavailable", "ChatRequest", "ChatResponse", "InvalidImageError",
    "ScoreRequest", "TokenLogprob", "UnknownAdapterError", "build_messages", "chat_prompt", *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facellm.inference' has no attribute {name!r}")
