"""Build the offline default model: a randomly initialised Qwen2-VL with a local tokenizer.

No hub access is needed: the architecture is `Qwen2VLForConditionalGeneration` (the class and
code path of Qwen2-VL-7B, only smaller), the tokenizer is a byte-level BPE trained here on the
caller's corpus with Qwen2's normaliser and pre-tokeniser, the chat template is Qwen2-VL's own,
and the processor is Qwen2-VL's with the PIL image processor limited to 112x112 pixels
(8x8 patches of 14 px -> 16 image tokens per face). The folder loads with transformers'
Auto classes and with vLLM 0.32 (CPU). Training it on SynthFace happens elsewhere.

    >>> build_default_model("/tmp/tiny", task_texts, size="test")   # ~0.8M parameters, ~1 s
    PosixPath('/tmp/tiny')
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import tokenizers
import torch
import transformers
from tokenizers import Regex, decoders, normalizers, pre_tokenizers, trainers
from transformers import (
    Qwen2Tokenizer,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

Size = Literal["test", "small"]

# Qwen2-VL's special tokens, in Qwen's id order, appended after the BPE vocabulary as in Qwen.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

# Qwen2-VL-7B-Instruct's chat template, verbatim (TRL ships the same text as
# trl/chat_templates/qwen2_5_vl.jinja; Qwen2.5-VL kept Qwen2-VL's template).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# The words the template itself writes, so that they are single tokens too.
TEMPLATE_TEXTS: tuple[str, ...] = (
    "system\nYou are a helpful assistant.", "user\n", "assistant\n", "Picture 1: ", "Video 1: ",
)

FACE_PIXELS = 112 * 112  # a 112x112 face -> 8x8 patches of 14 px -> 4x4 = 16 merged tokens
MAX_POSITIONS = 4096


@dataclass(frozen=True)
class ArchSize:
    """Text decoder and vision tower dimensions (Qwen2-VL names in the comments)."""

    hidden: int  # text_config.hidden_size, also the vision merger's output size
    intermediate: int  # text_config.intermediate_size
    layers: int  # text_config.num_hidden_layers
    heads: int  # text_config.num_attention_heads
    kv_heads: int  # text_config.num_key_value_heads
    vision_dim: int  # vision_config.embed_dim
    vision_depth: int  # vision_config.depth
    vision_heads: int  # vision_config.num_heads
    vision_mlp_ratio: int  # vision_config.mlp_ratio


# Both keep head dims of 32 / 64, which vLLM's CPU attention supports, and Qwen2-VL-7B's
# shape: grouped-query attention, MLP 4x hidden, mrope sections in the ratio 2:3:3.
# "small" is ~5.8M parameters with the ~900-token task vocabulary. Full fine-tuning, batch 8,
# 112 px faces, on 2 cores (2 / 1 threads): 0.13 / 0.23 s per step with one image, 0.25 / 0.58 s
# with two (verification). A 12M variant (hidden 384, vision 192) took 0.24 / 0.42 and
# 0.52 / 0.92 s, a 17.8M one (hidden 512) 0.39 / 0.69 and 0.75 / 1.30 s. stack.md found
# ~2k steps needed for glasses to reach 0.98 and no gain from size up to 17M on expression,
# so the step count, not the width, is what the 10-15 minute budget must buy: ~3-5k steps here.
SIZES: dict[str, ArchSize] = {
    "test": ArchSize(hidden=128, intermediate=256, layers=2, heads=4, kv_heads=2,
                     vision_dim=64, vision_depth=2, vision_heads=2, vision_mlp_ratio=2),
    "small": ArchSize(hidden=256, intermediate=1024, layers=4, heads=4, kv_heads=2,
                      vision_dim=128, vision_depth=4, vision_heads=4, vision_mlp_ratio=4),
}


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    # Qwen2's own pipeline (transformers' Qwen2Tokenizer): digits are single tokens.
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


def train_tokenizer(texts: list[str], vocab_size: int = 2048) -> Qwen2Tokenizer:
    """A Qwen2 tokenizer whose byte-level BPE is trained on `texts`.

    vocab_size caps the vocabulary including the 14 special tokens; training stops earlier
    once every pre-token of `texts` is a single token. Deterministic for the same texts.
    """
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = _pre_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train_from_iterator([*texts, *TEMPLATE_TEXTS], trainer=trainer)
    trained = json.loads(bpe.to_str())["model"]
    vocab = dict(trained["vocab"])
    for token in SPECIAL_TOKENS:  # fixed ids, after the BPE tokens, in Qwen's order
        vocab[token] = len(vocab)
    return Qwen2Tokenizer(
        vocab=vocab, merges=[tuple(m) for m in trained["merges"]],
        unk_token=None, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens=list(SPECIAL_TOKENS[1:]), model_max_length=MAX_POSITIONS,
        chat_template=CHAT_TEMPLATE,
    )


def split_words(tokenizer: transformers.PreTrainedTokenizerBase, texts: Iterable[str]) -> list[str]:
    """The distinct words of `texts` (pre-tokens with a letter, e.g. " eyeglasses") that the
    tokenizer splits into more than one token, sorted."""
    pre = _pre_tokenizer()
    words = {w for text in texts for w, _ in pre.pre_tokenize_str(text)}
    decode = decoders.ByteLevel()
    words = {decode.decode([w]) for w in words}
    return sorted(w for w in words if any(c.isalpha() for c in w)
                  and len(tokenizer(w, add_special_tokens=False).input_ids) > 1)


def build_processor(tokenizer: Qwen2Tokenizer) -> Qwen2VLProcessor:
    """Qwen2-VL's processor, resizing every image to about FACE_PIXELS pixels."""
    image_processor = Qwen2VLImageProcessorPil(min_pixels=FACE_PIXELS, max_pixels=FACE_PIXELS)
    # transformers 5.19 rejects video_processor=None; this one needs an importable torchvision.
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


def build_config(tokenizer: Qwen2Tokenizer, arch: ArchSize) -> Qwen2VLConfig:
    """A Qwen2-VL config of size `arch` for `tokenizer`'s vocabulary."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    half_head = arch.hidden // arch.heads // 2
    mrope = [half_head // 4, 3 * half_head // 8, 3 * half_head // 8]  # Qwen2-VL: [16, 24, 24] of 64
    tokens = dict(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"],
                  pad_token_id=ids["<|endoftext|>"])
    return Qwen2VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=arch.hidden, intermediate_size=arch.intermediate,
            num_hidden_layers=arch.layers, num_attention_heads=arch.heads,
            num_key_value_heads=arch.kv_heads, max_position_embeddings=MAX_POSITIONS,
            rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                "mrope_section": mrope},
            tie_word_embeddings=False, **tokens,
        ),
        vision_config=dict(
            depth=arch.vision_depth, embed_dim=arch.vision_dim, hidden_size=arch.hidden,
            num_heads=arch.vision_heads, mlp_ratio=arch.vision_mlp_ratio, patch_size=14,
            spatial_merge_size=2, temporal_patch_size=2, in_channels=3,
        ),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,  # as Qwen2-VL-7B
    )


def build_default_model(out_dir: str | Path, corpus: Iterable[str], seed: int = 0,
                        size: Size = "small", vocab_size: int = 2048) -> Path:
    """Write a randomly initialised Qwen2-VL, its tokenizer, processor and chat template to
    `out_dir` (created), plus facellm_model.json with the build parameters; return the folder.

    corpus: the task prompts and targets; every word in them becomes a single token
        (a ValueError lists the words that do not fit into `vocab_size`).
    seed: seeds the weights; the same seed and corpus give byte-identical files.
    size: "test" (~0.7M parameters, for tests) or "small" (~5.8M, the default model).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; expected one of {', '.join(SIZES)}")
    texts = list(corpus)
    tokenizer = train_tokenizer(texts, vocab_size)
    too_long = split_words(tokenizer, texts)
    if too_long:
        raise ValueError(f"{len(too_long)} corpus words are not single tokens with vocab_size={vocab_size} "
                         f"(e.g. {too_long[:5]}); raise vocab_size")
    config = build_config(tokenizer, SIZES[size])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2VLForConditionalGeneration(config).to(torch.float32).eval()
    text = config.text_config
    model.generation_config.eos_token_id = [text.eos_token_id, text.pad_token_id]
    model.generation_config.pad_token_id = text.pad_token_id
    model.generation_config.do_sample = False

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor = build_processor(tokenizer)
    processor.save_pretrained(out)  # also writes the tokenizer and chat_template.jinja
    info = {
        "builder": "facellm.models.default.build_default_model", "seed": seed, "size": size,
        "arch": asdict(SIZES[size]), "vocab_size": len(tokenizer), "max_vocab_size": vocab_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "corpus_texts": len(texts),
        "corpus_sha256": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
        "image_pixels": FACE_PIXELS, "image_tokens_per_112px_face": FACE_PIXELS // (28 * 28),
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "torch": torch.__version__},
    }
    (out / "facellm_model.json").write_text(json.dumps(info, indent=2) + "\n")
    return out
