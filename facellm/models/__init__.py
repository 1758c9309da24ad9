"""Model registry (`ModelSpec` data), loading, LoRA helpers and the offline default builder.

The registry imports nothing heavy (so `facellm ls` stays fast); the loading and LoRA names
below import torch, transformers and peft on first use. The builder lives in
`facellm.models.default`.
"""

from importlib import import_module
from typing import Any

from facellm.models.registry import MODELS, ModelSpec, get_model_spec

_LAZY = {
    "load_model": "loading", "load_processor": "loading", "resolve_cache_dir": "loading",
    "resolve_model_path": "loading",
    "check_targets": "lora", "lora_config": "lora", "merge_adapter": "lora",
}

__all__ = ["MODELS", "ModelSpec", "get_model_spec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"facellm.models.{_LAZY[name]}"), name)
