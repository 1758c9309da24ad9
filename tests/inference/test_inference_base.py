"""The pieces every backend shares: message layout, prompt rendering, the scored span, image checks."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from facellm.inference.base import (
    NO_USAGE_STATS,
    Backend,
    InvalidImageError,
    ScoreRequest,
    UnknownAdapterError,
    build_messages,
    chat_prompt,
    check_adapter,
    check_images,
    local_scored_span,
    scored_span,
    vllm_lora_rank,
)
from facellm.inference.server import resolve_chat_template, server_command


def test_messages_follow_the_training_layout():
    assert build_messages(2, "Same person?", "Match Verdict: Match") == [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                     {"type": "text", "text": "Same person?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Match Verdict: Match"}]},
    ]
    assert build_messages(1, "Glasses?") == [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Glasses?"}]}
    ]


def test_scored_span_counts_from_the_end():
    prompt, opened, closed = [1, 2, 3], [1, 2, 3, 7, 8], [1, 2, 3, 7, 8, 9, 10]
    span = scored_span(prompt, opened, closed)
    assert span.token_ids == (7, 8, 9) and span.n_after == 1
    # images expand the start of the sequence; the span stays at the end
    assert list(span.positions(20)) == [16, 17, 18]
    without_end = scored_span(prompt, opened, closed, include_end=False)
    assert without_end.token_ids == (7, 8) and without_end.n_after == 2


@pytest.mark.parametrize("prompt, opened, closed, message", [
    ([1, 2, 3], [1, 2, 4, 8], [1, 2, 4, 8, 9], "first token merges"),
    ([1, 2, 3], [1, 2, 3, 7, 8], [1, 2, 3, 7, 5, 9], "last token merges"),
    ([1, 2, 3], [1, 2, 3], [1, 2, 3, 9], "empty"),
    ([1, 2, 3], [1, 2, 3, 7], [1, 2, 3, 7], "no end-of-turn token"),
])
def test_scored_span_refuses_tokens_across_boundaries(prompt, opened, closed, message):
    with pytest.raises(ValueError, match=message):
        scored_span(prompt, opened, closed)


def test_rendered_prompt_and_span_with_the_model_template(model_dir):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(model_dir)
    text = chat_prompt(processor, 2, "Same person?")
    assert text.count("<|image_pad|>") == 2 and text.endswith("Same person?<|im_end|>\n<|im_start|>assistant\n")
    full, span = local_scored_span(processor, ScoreRequest([None, None], "Same person?", "Match Verdict: Match"))
    assert full == text + "Match Verdict: Match<|im_end|>\n"
    tokenizer = processor.tokenizer
    assert tokenizer.decode(list(span.token_ids)) == "Match Verdict: Match<|im_end|>"
    assert span.n_after == len(tokenizer("\n", add_special_tokens=False)["input_ids"])


def _png_bytes(size=(40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_check_images_explains_what_is_wrong():
    good = Image.new("RGB", (40, 40))
    assert check_images([good, Image.new("L", (30, 30))])[1].mode == "RGB"
    cases = [
        ([], "1-2 images"),
        ([good, good, good], "1-2 images"),
        (good, "list of 1-2 PIL images"),
        (["face.jpg"], "image 1 of 1: expected a PIL image, got str"),
        ([good, Image.new("RGB", (0, 5))], "image 2 of 2: empty image"),
        ([Image.new("RGB", (200, 100))], "oversized image, 200x100 pixels"),
        ([Image.open(io.BytesIO(_png_bytes()[:60]))], "image 1 of 1: cannot be decoded"),
    ]
    for images, message in cases:
        with pytest.raises(InvalidImageError, match=message):
            check_images(images, max_pixels=10_000)


def test_unknown_adapter_lists_what_is_served():
    check_adapter(None, ("a",), "here")
    with pytest.raises(UnknownAdapterError, match="'b' is not served by here; served: a, c") as e:
        check_adapter("b", ("a", "c"), "here")
    assert e.value.available == ("a", "c")


def test_vllm_lora_rank_rounds_up_to_an_allowed_value(tmp_path):
    for name, config in {"x": {"r": 12}, "y": {"r": 4, "rank_pattern": {"q_proj": 8}}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "adapter_config.json").write_text(json.dumps(config))
    assert vllm_lora_rank([tmp_path / "y"]) == 8
    assert vllm_lora_rank([tmp_path / "x", tmp_path / "y"]) == 16


def test_server_command_and_template(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    (tmp_path / "lora").mkdir()
    (tmp_path / "lora" / "adapter_config.json").write_text(json.dumps({"r": 8}))
    template = resolve_chat_template(tmp_path / "model", None, tmp_path / "server.chat_template.jinja")
    assert template.read_text() == "{{ x }}"
    command = server_command(tmp_path / "model", {"lora": tmp_path / "lora"}, host="127.0.0.1", port=8123,
                             dtype="float32", max_model_len=2048, chat_template=template)
    joined = " ".join(command)
    assert "-m vllm.entrypoints.openai.api_server" in joined
    assert '--limit-mm-per-prompt {"image": 2}' in joined
    assert f"--lora-modules lora={tmp_path / 'lora'}" in joined and "--max-lora-rank 8" in joined
    assert f"--chat-template {template}" in joined and "--no-enable-log-requests" in joined


def test_backends_satisfy_the_protocol(hf_backend, local_backend, server_backend):
    for backend in (hf_backend, local_backend, server_backend):
        assert isinstance(backend, Backend)
    assert hf_backend.adapters == local_backend.adapters == server_backend.adapters == ("lora_a", "lora_b")


def test_the_in_process_engine_never_reports_vllm_usage(tmp_path):
    # vLLM's own gate, in a process whose environment and home (no do_not_track file) allow reporting
    env = {k: v for k, v in os.environ.items() if k not in NO_USAGE_STATS} | {"HOME": str(tmp_path)}
    check = "from vllm.usage.usage_lib import is_usage_stats_enabled; print(is_usage_stats_enabled())"

    def enabled(first: str) -> str:
        proc = subprocess.run([sys.executable, "-c", f"{first}; {check}"], env=env, text=True, capture_output=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()[-1]

    assert enabled("pass") == "True"  # what vLLM would do on its own here
    assert enabled("import facellm.inference.vllm_local") == "False"
