import re

import pytest
import torch
import transformers

from facellm.models.lora import lora_config
from facellm.models.registry import (
    FAMILIES,
    FAMILY_OF_MODEL_TYPE,
    LORA_TARGETS,
    MODEL_CLASSES,
    MODELS,
    get_model_spec,
)

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_entry_is_well_formed(name: str) -> None:
    spec = MODELS[name]
    assert spec.name == name
    assert spec.family in FAMILIES
    assert spec.model_class == MODEL_CLASSES[spec.family]
    assert hasattr(transformers, spec.model_class)
    assert spec.is_local() or re.fullmatch(r"[\w.-]+/[\w.-]+", spec.hub_id)
    assert spec.chat_template == "model" or "{%" in spec.chat_template
    assert spec.lora_target_modules == LORA_TARGETS[spec.family]
    re.compile(spec.lora_target_modules)
    assert spec.max_lora_rank in VLLM_LORA_RANKS
    assert spec.description
    kwargs = spec.processor_kwargs()
    if spec.family in ("qwen2_vl", "qwen2_5_vl"):
        assert 0 < spec.min_pixels <= spec.max_pixels
        assert kwargs == {"min_pixels": spec.min_pixels, "max_pixels": spec.max_pixels}
    elif spec.family == "idefics3":
        assert kwargs == {"size": {"longest_edge": spec.longest_edge}} and spec.longest_edge > 0
    else:
        assert spec.image_size == 336 and kwargs == {}


def test_model_classes_are_what_transformers_auto_loads() -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as AUTO

    assert set(FAMILY_OF_MODEL_TYPE.values()) == set(FAMILIES)
    assert all(AUTO[family] == MODEL_CLASSES[family] for family in FAMILIES)


def test_get_model_spec_suggests_close_names() -> None:
    assert get_model_spec("qwen2_vl_2b").hub_id == "Qwen/Qwen2-VL-2B-Instruct"
    with pytest.raises(KeyError, match="Did you mean qwen2_vl_2b"):
        get_model_spec("qwen2vl_2b")


def _text(**extra) -> dict:
    return dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=1, **extra)


def _tiny_model(model_type: str) -> torch.nn.Module:
    """A random model of `model_type` with the real module layout and tiny sizes, on meta."""
    mrope = {"rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}}
    if model_type == "qwen2_vl":
        config = transformers.Qwen2VLConfig(
            text_config=_text(**mrope),
            vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2))
    elif model_type == "qwen2_5_vl":
        config = transformers.Qwen2_5_VLConfig(
            text_config=_text(**mrope),
            vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2,
                               out_hidden_size=32, fullatt_block_indexes=[1]))
    elif model_type in ("idefics3", "smolvlm"):
        config_class = transformers.Idefics3Config if model_type == "idefics3" else transformers.SmolVLMConfig
        config = config_class(
            text_config=_text(model_type="llama"), scale_factor=2,
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, image_size=64, patch_size=16))
    else:
        config = transformers.LlavaConfig(
            text_config=_text(model_type="llama"),
            vision_config=dict(model_type="clip_vision_model", hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=2, image_size=28,
                               patch_size=14, projection_dim=32))
    with torch.device("meta"):
        return transformers.AutoModelForImageTextToText.from_config(config)


@pytest.mark.parametrize("model_type", sorted(FAMILY_OF_MODEL_TYPE))
def test_lora_targets_are_exactly_the_language_model_linears(model_type: str) -> None:
    family = FAMILY_OF_MODEL_TYPE[model_type]
    model = _tiny_model(model_type)
    assert model.config.model_type == model_type
    language_model = model.get_decoder()  # the text decoder, whatever the family calls it
    expected = {f"{prefix}.{name}" for prefix, m in model.named_modules() if m is language_model
                for name, sub in m.named_modules()
                if isinstance(sub, torch.nn.Linear) and name.endswith(DECODER_LINEARS)}
    assert len(expected) == 2 * len(DECODER_LINEARS)
    matched = {n for n, _ in model.named_modules() if re.fullmatch(LORA_TARGETS[family], n)}
    assert matched == expected
    # The vision towers of Idefics3 and LLaVA have q_proj too: none of them may match.
    assert not any(re.search(r"vision|visual|connector|projector|lm_head|embed", n) for n in matched)
    assert any("vision" in n or "visual" in n for n, _ in model.named_modules())


@pytest.mark.parametrize("family", FAMILIES)
def test_peft_adapts_only_the_language_model(family: str) -> None:
    from peft import get_peft_model

    model = _tiny_model(family)  # each family's name is also a model type
    spec = next(s for s in MODELS.values() if s.family == family)
    peft_model = get_peft_model(model, lora_config(spec, r=4))
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert len(trainable) == 2 * 2 * len(DECODER_LINEARS)  # lora_A and lora_B per layer and linear
    assert all("lora_" in n and ".layers." in n for n in trainable)
    language_model = {"idefics3": "text_model"}.get(family, "language_model")
    assert all(f"model.{language_model}.layers." in n for n in trainable)
