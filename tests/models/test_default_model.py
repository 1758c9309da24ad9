import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from facellm.models.default import CHAT_TEMPLATE, build_default_model, split_words
from facellm.models.loading import load_model


def _face(seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (112, 112, 3), generator=gen, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def _prompt(processor, n_images: int, text: str) -> str:
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
    return processor.apply_chat_template([{"role": "user", "content": content}],
                                         add_generation_prompt=True, tokenize=False)


def test_same_seed_gives_identical_files(tmp_path: Path, tiny_dir: Path, corpus: list[str]) -> None:
    again = build_default_model(tmp_path / "again", corpus, seed=0, size="test")
    for name in ("model.safetensors", "tokenizer.json", "config.json", "processor_config.json"):
        assert (again / name).read_bytes() == (tiny_dir / name).read_bytes(), name
    other = build_default_model(tmp_path / "other", corpus, seed=1, size="test")
    assert (other / "model.safetensors").read_bytes() != (tiny_dir / "model.safetensors").read_bytes()
    assert (other / "tokenizer.json").read_bytes() == (tiny_dir / "tokenizer.json").read_bytes()


def test_build_parameters_are_recorded(tiny_dir: Path, corpus: list[str]) -> None:
    info = json.loads((tiny_dir / "facellm_model.json").read_text())
    assert info["seed"] == 0 and info["size"] == "test" and info["corpus_texts"] == len(corpus)
    assert 0.3e6 < info["parameters"] < 1.5e6
    assert info["image_tokens_per_112px_face"] == 16


def test_task_words_are_single_tokens(tiny_dir: Path, corpus: list[str]) -> None:
    _, processor = load_model(tiny_dir, device="cpu")
    tokenizer = processor.tokenizer
    assert split_words(tokenizer, corpus) == []
    for word in (" eyeglasses", " happy", "Match", " Non", "yes", " Verdict", "assistant"):
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    assert len(tokenizer(" zebra", add_special_tokens=False).input_ids) > 1  # not in the corpus
    assert 300 < len(tokenizer) <= 2048
    assert tokenizer.convert_ids_to_tokens(tokenizer("<|im_start|>user").input_ids) == ["<|im_start|>", "user"]


def test_too_small_vocabulary_is_an_error(tmp_path: Path, corpus: list[str]) -> None:
    with pytest.raises(ValueError, match="not single tokens with vocab_size=300"):
        build_default_model(tmp_path / "m", corpus, size="test", vocab_size=300)


def test_chat_template_is_qwen2_vl_s_own(tiny_dir: Path) -> None:
    trl_templates = pytest.importorskip("trl").__path__[0] + "/chat_templates"
    assert CHAT_TEMPLATE == Path(trl_templates, "qwen2_5_vl.jinja").read_text().strip("\n")
    assert (tiny_dir / "chat_template.jinja").read_text() == CHAT_TEMPLATE


def test_loads_back_and_generates(tiny_dir: Path) -> None:
    model, processor = load_model(tiny_dir)
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen2VLProcessor" and model.dtype == torch.float32
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")

    one = processor(text=[_prompt(processor, 1, "Is the person smiling?")], images=[_face(0)], return_tensors="pt")
    assert one["image_grid_thw"].tolist() == [[1, 8, 8]]  # 8x8 patches of 14 px
    assert int((one["input_ids"] == image_pad).sum()) == 16
    two = processor(text=[_prompt(processor, 2, "Same person?")], images=[_face(1), _face(2)], return_tensors="pt")
    assert int((two["input_ids"] == image_pad).sum()) == 32

    big = processor(text=[_prompt(processor, 1, "x")], images=[_face(3).resize((224, 224))], return_tensors="pt")
    assert big["image_grid_thw"].tolist() == [[1, 8, 8]]  # larger faces are resized to 112 px

    with torch.no_grad():
        out = model.generate(**two, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > two["input_ids"].shape[1]
