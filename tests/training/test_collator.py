import pytest
import torch
from tiny_rows import face, row

from facellm.training.collator import IGNORE_INDEX, VisionChatCollator, assistant_markers


def labelled_text(processor, labels: torch.Tensor) -> str:
    return processor.tokenizer.decode(labels[labels != IGNORE_INDEX])


@pytest.mark.parametrize("n_images", [1, 2])
def test_only_assistant_text_and_end_token_are_labelled(processor, n_images):
    sample = row(0, n_images)
    batch = VisionChatCollator(processor)([sample])
    labels, ids = batch["labels"][0], batch["input_ids"][0]
    answer = sample["messages"][1]["content"][0]["text"]

    assert labelled_text(processor, labels) == answer + "<|im_end|>"
    kept = labels != IGNORE_INDEX
    assert torch.equal(labels[kept], ids[kept])
    # the labelled tokens are one contiguous run: the answer right after the header, then <|im_end|>
    positions = kept.nonzero().flatten()
    assert torch.equal(positions, torch.arange(int(positions[0]), int(positions[-1]) + 1))
    prompt = processor.apply_chat_template(sample["messages"][:1], tokenize=False, add_generation_prompt=True)
    assert processor.tokenizer.decode(ids[: int(positions[0])]).endswith("<|im_start|>assistant\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    # every image token (one per merged 28x28 patch: grid t*h*w / 4) and the user question are masked
    image_token = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    expected = int(batch["image_grid_thw"].prod(dim=1).sum()) // processor.image_processor.merge_size ** 2
    assert batch["image_grid_thw"].shape[0] == n_images and expected >= 4 * n_images
    assert int((ids == image_token).sum()) == expected
    assert not kept[ids == image_token].any()
    question = sample["messages"][0]["content"][-1]["text"]
    assert question in processor.tokenizer.decode(ids[~kept])
    assert question not in labelled_text(processor, labels)


def test_mixed_batch_pads_right_and_masks_padding(processor):
    samples = [row(0, 1), row(1, 2), row(2, 1)]
    batch = VisionChatCollator(processor)(samples)

    assert set(batch) >= {"input_ids", "attention_mask", "labels", "pixel_values", "image_grid_thw", "mm_token_type_ids"}
    assert batch["image_grid_thw"].shape[0] == 4  # images of all rows, in order
    assert batch["labels"][batch["attention_mask"] == 0].eq(IGNORE_INDEX).all()
    for b, sample in enumerate(samples):
        answer = sample["messages"][1]["content"][0]["text"]
        assert labelled_text(processor, batch["labels"][b]) == answer + "<|im_end|>"
        # padding only on the right
        mask = batch["attention_mask"][b]
        assert torch.equal(mask, torch.sort(mask, descending=True).values)


def test_every_assistant_turn_of_a_multi_turn_row_is_labelled(processor):
    sample = row(0, 1)
    sample["messages"] += [
        {"role": "user", "content": [{"type": "text", "text": "Why?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Frames are visible."}]},
    ]
    labels = VisionChatCollator(processor)([sample])["labels"][0]
    assert labelled_text(processor, labels) == "Yes, glasses.<|im_end|>Frames are visible.<|im_end|>"


def test_markers_come_from_the_chat_template(processor):
    header, end = assistant_markers(processor)
    assert processor.tokenizer.decode(header) == "<|im_start|>assistant\n"
    assert processor.tokenizer.convert_ids_to_tokens(end) == "<|im_end|>"


def test_too_long_rows_are_never_truncated(processor, caplog):
    short, long = row(0, 1), row(1, 2)
    n_short = int(VisionChatCollator(processor)([short])["attention_mask"].sum())
    with pytest.raises(ValueError, match=r"s1#task#v.*never truncated"):
        VisionChatCollator(processor, max_length=n_short)([short, long])

    batch = VisionChatCollator(processor, max_length=n_short, on_too_long="skip")([short, long])
    assert batch["input_ids"].shape == (1, n_short)
    assert batch["image_grid_thw"].shape[0] == 1
    assert "s1#task#v" in caplog.text


def test_image_count_must_match_the_image_parts(processor):
    sample = row(0, 2)
    sample["images"] = [face(0)]
    with pytest.raises(ValueError, match=r"s0#task#v.*2 image parts.*1 images"):
        VisionChatCollator(processor)([sample])
