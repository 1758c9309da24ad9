from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from PIL import Image

from facellm.models.loading import load_model
from facellm.models.lora import check_targets, lora_config, merge_adapter
from facellm.models.registry import get_model_spec

SPEC = get_model_spec("facellm_tiny")


def test_lora_config_maps_arguments_explicitly() -> None:
    config = lora_config(SPEC, r=8, alpha=16, dropout=0.1)
    assert (config.r, config.lora_alpha, config.lora_dropout) == (8, 16, 0.1)
    assert config.target_modules == SPEC.lora_target_modules and config.bias == "none"
    assert set(lora_config(["q_proj", "v_proj"]).target_modules) == {"q_proj", "v_proj"}
    assert lora_config(SPEC, target_modules=r".*\.q_proj").target_modules == r".*\.q_proj"
    with pytest.raises(ValueError, match="positive"):
        lora_config(SPEC, r=0)


def test_check_targets(tiny_dir: Path) -> None:
    model, _ = load_model(tiny_dir, device="cpu")
    matched = check_targets(model, lora_config(SPEC))
    assert len(matched) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert all(name.startswith("model.language_model.layers.") for name in matched)

    with pytest.raises(ValueError, match=r"LoRA target '.*text_model.*' matches no module of "
                                         r"Qwen2VLForConditionalGeneration; language-model linear layers "
                                         r"look like model\.language_model\.layers\.0\.self_attn\.q_proj"):
        check_targets(model, lora_config(get_model_spec("smolvlm_256m")))
    with pytest.raises(ValueError, match="matches no module"):
        check_targets(model, lora_config(["query_key_value"]))
    with pytest.raises(ValueError, match="positive"):
        check_targets(model, LoraConfig(r=0, target_modules=["q_proj"]))


def _inputs(processor):
    image = Image.fromarray(torch.randint(0, 256, (112, 112, 3), generator=torch.Generator().manual_seed(0),
                                          dtype=torch.uint8).numpy())
    content = [{"type": "image"}, {"type": "text", "text": "Is the person wearing eyeglasses?"}]
    text = processor.apply_chat_template([{"role": "user", "content": content},
                                          {"role": "assistant", "content": [{"type": "text", "text": "yes"}]}],
                                         tokenize=False)
    return processor(text=[text], images=[image], return_tensors="pt")


def test_merge_matches_the_adapter(tmp_path: Path, tiny_dir: Path) -> None:
    base, processor = load_model(tiny_dir, device="cpu")
    inputs = _inputs(processor)
    with torch.no_grad():
        base_logits = base(**inputs).logits
    config = lora_config(SPEC, r=4, dropout=0.0)
    config.init_lora_weights = False  # random B: the adapter changes the outputs
    torch.manual_seed(0)
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")

    adapted, _ = load_model(tiny_dir, device="cpu", adapter=tmp_path / "adapter")
    assert isinstance(adapted, PeftModel)
    merged_dir = merge_adapter(tiny_dir, tmp_path / "adapter", tmp_path / "merged")
    merged, merged_processor = load_model(merged_dir, device="cpu")
    assert not isinstance(merged, PeftModel)
    assert (merged_dir / "chat_template.jinja").read_text() == (tiny_dir / "chat_template.jinja").read_text()
    with torch.no_grad():
        adapter_logits = adapted(**inputs).logits
        merged_logits = merged(**_inputs(merged_processor)).logits
    assert not torch.allclose(adapter_logits, base_logits, atol=1e-3)
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-5)
