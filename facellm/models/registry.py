"""The models facellm knows by name, as data (open_clip's `model_configs/*.json` in Python).

An entry says where the weights are, which transformers class and chat template to use, how
big the processor may make a face image, and which modules LoRA adapts. Example:

    >>> get_model_spec("qwen2_vl_2b").processor_kwargs()
    {'min_pixels': 3136, 'max_pixels': 200704}

The LoRA target regexes follow transformers 5.19's module names (checked on random tiny models
of every family in tests/models/test_registry.py): the language model's attention and MLP
projections only, so the vision tower, the projector, the embeddings and `lm_head` stay frozen,
which is also what vLLM can serve (`--enable-lora`; embedding / lm_head LoRA is not servable).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["qwen2_vl", "qwen2_5_vl", "idefics3", "llava"]
FAMILIES: tuple[Family, ...] = ("qwen2_vl", "qwen2_5_vl", "idefics3", "llava")

# config.json `model_type` -> family. SmolVLM checkpoints on the hub say "idefics3".
FAMILY_OF_MODEL_TYPE: dict[str, Family] = {
    "qwen2_vl": "qwen2_vl",
    "qwen2_5_vl": "qwen2_5_vl",
    "idefics3": "idefics3",
    "smolvlm": "idefics3",
    "llava": "llava",
}

MODEL_CLASSES: dict[Family, str] = {
    "qwen2_vl": "Qwen2VLForConditionalGeneration",
    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration",
    "idefics3": "Idefics3ForConditionalGeneration",
    "llava": "LlavaForConditionalGeneration",
}

# q, k, v, o, gate, up, down of every decoder layer; peft full-matches a string target against
# module names such as `model.language_model.layers.3.self_attn.q_proj`. The vision towers of
# Idefics3 and LLaVA also have `self_attn.q_proj`, hence the anchored language-model path.
_DECODER_LINEAR = r"\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
LORA_TARGETS: dict[Family, str] = {
    "qwen2_vl": r"model\.language_model" + _DECODER_LINEAR,
    "qwen2_5_vl": r"model\.language_model" + _DECODER_LINEAR,
    "idefics3": r"model\.text_model" + _DECODER_LINEAR,
    "llava": r"model\.language_model" + _DECODER_LINEAR,
}

# LoRA on the vision tower (attention and MLP of every block) and the merger (the projector),
# for the families whose vLLM model serves it (`--enable-tower-connector-lora`, vLLM >= 0.32).
VISION_LORA_TARGETS: dict[Family, str] = {
    "qwen2_vl": r"model\.visual\.(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc(1|2))|merger\.mlp\.(0|2))",
}

# Qwen-VL resizes so that pixels lie in [min_pixels, max_pixels] (multiples of 28x28 = one
# merged image token). Faces need few tokens: 448x448 (256 tokens) at most for the hub models.
_QWEN_MIN_PIXELS = 4 * 28 * 28
_QWEN_MAX_PIXELS = 256 * 28 * 28


@dataclass(frozen=True)
class ModelSpec:
    """One model entry.

    name: registry key. hub_id: hub repo id, or a local folder where `{cache}` stands for
        `facellm.models.loading.resolve_cache_dir()`.
    family: architecture family, decides the module names and processor limits.
    model_class: the transformers class the checkpoint loads into.
    chat_template: "model" = the processor's own template, else an explicit Jinja template.
    min_pixels / max_pixels: Qwen-VL image size bounds in pixels.
    longest_edge: Idefics3 / SmolVLM resize target of the longest image side, in pixels.
    image_size: LLaVA's fixed square input size (the CLIP tower's), in pixels.
    lora_target_modules: peft regex of the language-model linear layers.
    vllm_servable: vLLM 0.32 serves the architecture, with LoRA adapters up to max_lora_rank.
    """

    name: str
    hub_id: str
    family: Family
    model_class: str
    description: str
    chat_template: str = "model"
    min_pixels: int | None = None
    max_pixels: int | None = None
    longest_edge: int | None = None
    image_size: int | None = None
    lora_target_modules: str = ""
    vllm_servable: bool = True
    max_lora_rank: int = 64

    def processor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `AutoProcessor.from_pretrained` (and vLLM's
        `--mm-processor-kwargs`) that apply this entry's image limits."""
        if self.family in ("qwen2_vl", "qwen2_5_vl"):
            return {"min_pixels": self.min_pixels, "max_pixels": self.max_pixels}
        if self.family == "idefics3":
            return {"size": {"longest_edge": self.longest_edge}}
        return {}  # LLaVA's CLIP processor always resizes and crops to image_size

    def hf_processor_kwargs(self) -> dict[str, Any]:
        """processor_kwargs() as transformers 5 takes them: Qwen-VL's pixel bounds as
        size={"shortest_edge": min_pixels, "longest_edge": max_pixels} (min_pixels/max_pixels
        are deprecated there and go in v5.23); vLLM keeps the processor_kwargs() form."""
        kwargs = self.processor_kwargs()
        if self.family in ("qwen2_vl", "qwen2_5_vl"):
            return {"size": {"shortest_edge": kwargs["min_pixels"], "longest_edge": kwargs["max_pixels"]}}
        return kwargs

    def is_local(self) -> bool:
        return self.hub_id.startswith(("{cache}", "/", "./", "~"))


def _spec(name: str, hub_id: str, family: Family, description: str, **fields: Any) -> ModelSpec:
    return ModelSpec(name=name, hub_id=hub_id, family=family, model_class=MODEL_CLASSES[family],
                     description=description, lora_target_modules=LORA_TARGETS[family], **fields)


_QWEN = {"min_pixels": _QWEN_MIN_PIXELS, "max_pixels": _QWEN_MAX_PIXELS}
# SmolVLM's vision encoder sees 512x512 tiles; a face fits one tile (64 image tokens).
_SMOLVLM = {"longest_edge": 512}

MODELS: dict[str, ModelSpec] = {s.name: s for s in (
    _spec("facellm_tiny", "{cache}/models/facellm_tiny", "qwen2_vl",
          "Offline default: small Qwen2-VL built by `facellm models build-default`, trained on SynthFace.",
          min_pixels=112 * 112, max_pixels=112 * 112),
    _spec("qwen2_vl_2b", "Qwen/Qwen2-VL-2B-Instruct", "qwen2_vl", "Qwen2-VL 2B Instruct.", **_QWEN),
    _spec("qwen2_vl_7b", "Qwen/Qwen2-VL-7B-Instruct", "qwen2_vl", "Qwen2-VL 7B Instruct.", **_QWEN),
    _spec("qwen2_5_vl_3b", "Qwen/Qwen2.5-VL-3B-Instruct", "qwen2_5_vl", "Qwen2.5-VL 3B Instruct.", **_QWEN),
    _spec("qwen2_5_vl_7b", "Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", "Qwen2.5-VL 7B Instruct.", **_QWEN),
    _spec("smolvlm_256m", "HuggingFaceTB/SmolVLM-256M-Instruct", "idefics3",
          "SmolVLM 256M Instruct (Idefics3 architecture).", **_SMOLVLM),
    _spec("smolvlm_500m", "HuggingFaceTB/SmolVLM-500M-Instruct", "idefics3",
          "SmolVLM 500M Instruct (Idefics3 architecture).", **_SMOLVLM),
    _spec("llava_1_5_7b", "llava-hf/llava-1.5-7b-hf", "llava", "LLaVA 1.5 7B (CLIP ViT-L/14-336 + Vicuna).",
          image_size=336),
)}


def get_model_spec(name: str) -> ModelSpec:
    """The registry entry `name`; a KeyError naming close matches otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(MODELS), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Known: {', '.join(sorted(MODELS))}."
        raise KeyError(f"unknown model {name!r}.{hint}") from None
