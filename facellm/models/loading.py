"""Load a model and its processor from a registry name, a hub id or a local folder.

    >>> model, processor = load_model("facellm_tiny")                  # registry name
    >>> model, processor = load_model("/runs/sft/merged", adapter=None)  # local folder
    >>> model, processor = load_model("Qwen/Qwen2-VL-2B-Instruct", adapter="/runs/sft/adapter")

The folder's config.json `model_type` must be one of the supported families'; transformers'
Auto classes then build the model and processor, and a processor that comes back as a bare
tokenizer fails here and not at the first image.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from transformers import AutoModelForImageTextToText, AutoProcessor, PreTrainedModel, ProcessorMixin

from facellm.models.registry import FAMILY_OF_MODEL_TYPE, MODELS, Family, ModelSpec

_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
# What a hub download fetches: configs, weights, tokenizer and template files, no ONNX/GGUF copies.
_HUB_FILES = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]


def resolve_cache_dir() -> Path:
    """facellm's cache folder: $FACELLM_HOME, else ~/.cache/facellm."""
    return Path(os.environ.get("FACELLM_HOME") or Path.home() / ".cache" / "facellm").expanduser()


def _not_found(name: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"model {name!r} {why}; pass a local path or build the offline default with "
        "`facellm models build-default`")


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot of `repo_id` from the hub cache, downloading it if the hub answers."""
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        cached = Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
        if (cached / "config.json").is_file() and any(cached.glob("*.safetensors")):
            return cached
    except LocalEntryNotFoundError:
        pass
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise _not_found(repo_id, "is not in the local hub cache and HF_HUB_OFFLINE is set")
    try:  # a cheap probe: a download would retry for ~25 s before failing offline
        huggingface_hub.model_info(repo_id, timeout=10)
    except GatedRepoError as err:
        raise _not_found(repo_id, "is gated on the hub: accept its licence there and log in") from err
    except RepositoryNotFoundError as err:
        raise _not_found(repo_id, "is neither a local folder nor a model on the hub") from err
    except Exception as err:  # DNS, connection and HTTP errors all mean: no hub here
        raise _not_found(repo_id, "not found locally and the hub is unreachable") from err
    return Path(huggingface_hub.snapshot_download(repo_id, allow_patterns=_HUB_FILES))


def resolve_model_path(name_or_path: str | Path) -> tuple[Path, ModelSpec | None]:
    """The local folder holding `name_or_path` (registry name, hub id or folder) and its
    registry entry, if it is one."""
    spec = MODELS.get(str(name_or_path))
    source = spec.hub_id.format(cache=resolve_cache_dir()) if spec else str(name_or_path)
    path = Path(source).expanduser()
    if path.is_dir():
        return path, spec
    if spec and spec.name == "facellm_tiny":  # not built or installed here yet: the copy that ships
        from facellm.models.shipped import SHIPPED_BASE

        if (SHIPPED_BASE / "config.json").is_file():
            return SHIPPED_BASE, spec
    if spec and spec.is_local():
        raise _not_found(spec.name, f"is registered at {path}, which does not exist")
    if not _HUB_ID.fullmatch(source):
        raise _not_found(source, "is not a registry name, a hub id or an existing folder")
    return _hub_snapshot(source), spec


def model_family(path: Path) -> Family:
    """The family (see `facellm.models.registry.FAMILIES`) of the checkpoint in `path`."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} does not exist: {path} is not a transformers model folder")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in FAMILY_OF_MODEL_TYPE:
        raise ValueError(f"{config_file}: model_type {model_type!r} is not supported; facellm loads "
                         f"{', '.join(sorted(FAMILY_OF_MODEL_TYPE))}")
    return FAMILY_OF_MODEL_TYPE[model_type]


def load_processor(path: Path, spec: ModelSpec | None = None) -> ProcessorMixin:
    """The multimodal processor of `path`, with `spec`'s image limits if given."""
    kwargs = spec.hf_processor_kwargs() if spec else {}
    processor = AutoProcessor.from_pretrained(path, **kwargs)
    if not isinstance(processor, ProcessorMixin):
        # AutoProcessor falls back to the bare tokenizer when it cannot build the processor
        # (no processor_config.json, or e.g. Qwen2-VL's video processor missing torchvision).
        raise TypeError(f"AutoProcessor returned a {type(processor).__name__}, not a multimodal processor, "
                        f"for {path}: check its processor_config.json and that torchvision imports")
    if spec and spec.chat_template != "model":
        processor.chat_template = spec.chat_template
    return processor


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_model(name_or_path: str | Path, dtype: torch.dtype | str | None = None,
               device: torch.device | str | None = None,
               adapter: str | Path | None = None) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load (model, processor) in eval mode.

    name_or_path: a registry name (`facellm.models.registry.MODELS`), a hub id or a local folder.
    dtype: torch dtype or its name; float32 on CPU and bfloat16 on GPU by default.
    device: defaults to the GPU if there is one, else the CPU.
    adapter: a peft adapter folder; the model is then a `peft.PeftModel` (unmerged).
    """
    path, spec = resolve_model_path(name_or_path)
    model_family(path)  # unsupported architectures fail here, before any weights load
    device = torch.device(device) if device is not None else default_device()
    if dtype is None:
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype, device_map=str(device))
    processor = load_processor(path, spec)
    if adapter is not None:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{adapter} is not a peft adapter folder (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval(), processor
