"""LoRA configs, target checks and merging for the registry's models.

The convention (field.md): freeze the vision tower and projector, adapt the language model's
linear layers. Adapters saved by peft with these targets are what vLLM serves with
`--enable-lora --lora-modules name=path --max-lora-rank R`.

    >>> config = lora_config(get_model_spec("qwen2_vl_2b"), r=16)
    >>> check_targets(model, config)[:1]
    ['model.language_model.layers.0.self_attn.q_proj']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel
from peft.tuners.tuners_utils import check_target_module_exists

from facellm.models.loading import load_model
from facellm.models.registry import ModelSpec

# Module names of vision towers and projectors across the supported families.
_VISION = re.compile(r"(^|\.)(visual|vision_model|vision_tower|connector|multi_modal_projector)(\.|$)")


def lora_config(spec_or_targets: ModelSpec | str | Sequence[str], r: int = 16, alpha: int = 32,
                dropout: float = 0.05, target_modules: str | Sequence[str] | None = None) -> LoraConfig:
    """A peft LoraConfig for a causal VLM.

    spec_or_targets: a registry entry (its `lora_target_modules`), or peft targets directly:
        a regex full-matched against module names, or a list of module-name suffixes.
    r, alpha, dropout: LoRA rank, scaling numerator (scale = alpha / r) and dropout.
    target_modules: overrides the targets of `spec_or_targets`.
    """
    if r <= 0:
        raise ValueError(f"LoRA rank r must be a positive integer, got {r}")
    if target_modules is None:
        target_modules = (spec_or_targets.lora_target_modules if isinstance(spec_or_targets, ModelSpec)
                          else spec_or_targets)
    if not isinstance(target_modules, str):
        target_modules = list(target_modules)
    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=target_modules,
                      bias="none", task_type="CAUSAL_LM")


def lora_targets(spec: ModelSpec, vision: bool = False) -> str:
    """The peft target regex for `spec`: its language-model layers, plus the vision tower and
    merger when `vision` (a ValueError for families without servable vision LoRA)."""
    from facellm.models.registry import VISION_LORA_TARGETS

    if not vision:
        return spec.lora_target_modules
    if spec.family not in VISION_LORA_TARGETS:
        raise ValueError(f"vision-tower LoRA is not supported for {spec.family} models (only "
                         f"{', '.join(VISION_LORA_TARGETS)}): vLLM cannot serve it")
    return f"({spec.lora_target_modules})|({VISION_LORA_TARGETS[spec.family]})"


def _language_model_linears(model: torch.nn.Module) -> list[str]:
    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in name and not _VISION.search(name)]


def check_targets(model: torch.nn.Module, config: LoraConfig) -> list[str]:
    """The names of the modules `config` adapts in `model`; a ValueError if there are none or
    the rank is not positive (peft would accept r=0 and only fail later)."""
    if config.r <= 0:
        raise ValueError(f"LoRA rank r must be a positive integer, got {config.r}")
    base = model.get_base_model() if isinstance(model, PeftModel) else model
    if isinstance(config.target_modules, str) and config.target_modules.lower() == "all-linear":
        from peft.tuners.tuners_utils import _maybe_include_all_linear_layers

        config = _maybe_include_all_linear_layers(config, base)
    matched = [name for name, _ in base.named_modules() if name and check_target_module_exists(config, name)]
    if not matched:
        examples = _language_model_linears(base)[:3]
        raise ValueError(
            f"LoRA target {config.target_modules!r} matches no module of {type(base).__name__}; "
            f"language-model linear layers look like {', '.join(examples) or '(none found)'}")
    return matched


def merge_adapter(base_dir: str | Path, adapter_dir: str | Path, out_dir: str | Path,
                  dtype: torch.dtype | str | None = None, device: torch.device | str | None = None) -> Path:
    """Fold the adapter into the base weights and write a full model + processor to `out_dir`.

    base_dir: anything `load_model` accepts (registry name, hub id, folder).
    dtype, device: as in `load_model`; merge in float32 on CPU (the default there) for the
        closest match to the unmerged adapter.
    """
    model, processor = load_model(base_dir, dtype=dtype, device=device, adapter=adapter_dir)
    merged = model.merge_and_unload()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    processor.save_pretrained(out)
    return out
