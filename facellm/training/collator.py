"""Batches instruction rows for supervised fine-tuning of a vision-language chat model."""

from __future__ import annotations

import io
import logging
import os
from typing import Any, Literal

import torch
from PIL import Image

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


class VisionChatCollator:
    """Renders rows with the processor's chat template, tokenises them with their images and
    labels only what the assistant says.

    Input: a list of instruction rows (docs/design.md), of which the collator reads
        messages: [{"role": "user", "content": [{"type": "image"}, ..., {"type": "text", "text": q}]},
                   {"role": "assistant", "content": [{"type": "text", "text": a}]}, ...]
        images:   1 or more PIL images (or paths), one per image part, in order
        id:       optional, only to name the row in errors
    Batches may mix rows with different numbers of images.

    Output: a dict of tensors for the model's forward, padded on the right:
        input_ids, attention_mask  (B, T)
        labels                     (B, T) the input ids of each assistant turn's text and its
                                   end-of-turn token ("<|im_end|>" for Qwen, so the model learns
                                   to stop); -100 everywhere else: system and user text, image
                                   tokens, the "<|im_start|>assistant\\n" header, padding
        pixel_values               (total patches in the batch, C*t*p*p)
        image_grid_thw             (total images in the batch, 3)
        mm_token_type_ids          (B, T) and anything else the processor returns
    Example (tiny Qwen2-VL, one 56x56 image, answer "Yes."):
        text   "<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n<|vision_start|>"
               "<|image_pad|>x4<|vision_end|>Glasses?<|im_end|>\\n<|im_start|>assistant\\nYes.<|im_end|>\\n"
        labels -100 ... -100, id("Yes"), id("."), id("<|im_end|>"), -100

    The template is the processor's own (`processor.chat_template`), the one saved next to a
    trained model and used by the server, so training and serving render prompts identically.
    Sequences are never truncated (cutting would drop image tokens and break the image/token
    correspondence): a row longer than `max_length` raises ValueError, or, with
    on_too_long="skip", is dropped from its batch with a warning.

    processor: a transformers processor with a tokenizer and a chat template.
    max_length: longest allowed tokenised row (image tokens included); None = no limit.
    on_too_long: what to do with a row longer than max_length.
    """

    def __init__(
        self,
        processor: Any,
        max_length: int | None = None,
        on_too_long: Literal["raise", "skip"] = "raise",
    ) -> None:
        if processor.tokenizer.pad_token_id is None:
            raise ValueError("the processor's tokenizer has no pad token; set tokenizer.pad_token first")
        if not processor.chat_template:
            raise ValueError("the processor has no chat template: the collator renders rows with it")
        self.processor = processor
        self.max_length = max_length
        self.on_too_long = on_too_long
        self.header_ids, self.end_id = assistant_markers(processor)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self._encode(rows)
        if self.max_length is not None:
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            too_long = [i for i, n in enumerate(lengths) if n > self.max_length]
            if too_long:
                names = ", ".join(f"{_row_name(rows[i], i)} ({lengths[i]} tokens)" for i in too_long)
                message = (
                    f"rows longer than max_length={self.max_length}: {names}; rows are never truncated "
                    "(image tokens must stay whole): raise max_length, shrink the images or drop the rows"
                )
                if self.on_too_long == "raise" or len(too_long) == len(rows):
                    raise ValueError(message)
                log.warning("skipping %s", message)
                rows = [row for i, row in enumerate(rows) if i not in too_long]
                batch = self._encode(rows)
        batch["labels"] = self._labels(batch["input_ids"], batch["attention_mask"], rows)
        return dict(batch)

    def _encode(self, rows: list[dict[str, Any]]) -> Any:
        texts, images = [], []
        for i, row in enumerate(rows):
            n_parts = sum(
                1 for m in row["messages"] if isinstance(m["content"], list)
                for part in m["content"] if part.get("type") == "image"
            )
            if n_parts != len(row["images"]):
                raise ValueError(
                    f"{_row_name(row, i)}: {n_parts} image parts in messages but {len(row['images'])} images"
                )
            texts.append(self.processor.apply_chat_template(row["messages"], tokenize=False))
            images.append([load_rgb(image) for image in row["images"]])
        # add_special_tokens=False: the template already wrote every special token, as the server does
        return self.processor(
            text=texts,
            images=images if any(images) else None,
            padding=True,
            padding_side="right",
            add_special_tokens=False,
            return_tensors="pt",
        )

    def _labels(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: list[dict[str, Any]]
    ) -> torch.Tensor:
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        header = torch.tensor(self.header_ids)
        for b, row in enumerate(rows):
            ids = input_ids[b, : int(attention_mask[b].sum())]
            starts = _find_all(ids, header)
            n_turns = sum(1 for m in row["messages"] if m["role"] == "assistant")
            if len(starts) != n_turns:
                raise ValueError(
                    f"{_row_name(row, b)}: found {len(starts)} assistant headers "
                    f"{self.processor.tokenizer.decode(self.header_ids)!r} for {n_turns} assistant turns; "
                    "the header must tokenise the same inside the conversation as alone"
                )
            for start in starts:
                ends = (ids[start:] == self.end_id).nonzero()
                if len(ends) == 0:
                    raise ValueError(f"{_row_name(row, b)}: an assistant turn has no end-of-turn token")
                stop = start + int(ends[0]) + 1  # keep the end-of-turn token: the model must learn to stop
                labels[b, start:stop] = ids[start:stop]
        return labels


def assistant_markers(processor: Any) -> tuple[list[int], int]:
    """(token ids of the header that opens an assistant turn, id of the end-of-turn token),
    read off the processor's chat template: for Qwen ("<|im_start|>assistant\\n", "<|im_end|>")."""
    user = [{"role": "user", "content": [{"type": "text", "text": "q"}]}]
    turn = user + [{"role": "assistant", "content": [{"type": "text", "text": "a"}]}]
    render = processor.apply_chat_template
    plain = render(user, tokenize=False)
    prompt = render(user, tokenize=False, add_generation_prompt=True)
    full = render(turn, tokenize=False)
    if not prompt.startswith(plain) or not full.startswith(prompt + "a"):
        raise ValueError(
            "the chat template does not render an assistant turn as the generation prompt followed by "
            "the answer; cannot tell which tokens are the assistant's"
        )
    tokenizer = processor.tokenizer
    header_ids = tokenizer(prompt[len(plain):], add_special_tokens=False)["input_ids"]
    suffix_ids = tokenizer(full[len(prompt) + 1 :], add_special_tokens=False)["input_ids"]
    if not header_ids or not suffix_ids or suffix_ids[0] not in tokenizer.all_special_ids:
        raise ValueError(
            f"the chat template ends an assistant turn with {full[len(prompt) + 1 :]!r}, "
            "which does not start with a special end-of-turn token"
        )
    return header_ids, suffix_ids[0]


def load_rgb(image: Any) -> Image.Image:
    """A PIL RGB image from a PIL image, a path, or a `datasets.Image` dict ({"bytes", "path"})."""
    if isinstance(image, dict):
        image = io.BytesIO(image["bytes"]) if image.get("bytes") else image["path"]
    if isinstance(image, (str, os.PathLike, io.BytesIO)):
        image = Image.open(image)
    if not isinstance(image, Image.Image):
        raise TypeError(f"expected a PIL image, a path or a datasets.Image dict, got {type(image).__name__}")
    return image.convert("RGB") if image.mode != "RGB" else image


def _find_all(ids: torch.Tensor, pattern: torch.Tensor) -> list[int]:
    """Indices just after each occurrence of `pattern` in `ids`."""
    n = len(pattern)
    if len(ids) < n:
        return []
    windows = ids.unfold(0, n, 1)
    return [int(i) + n for i in (windows == pattern).all(dim=1).nonzero().flatten()]


def _row_name(row: dict[str, Any], index: int) -> str:
    return f"row {row['id']!r}" if "id" in row else f"row {index} of the batch"
