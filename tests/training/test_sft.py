import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_rows import rows

import run_sft
from facellm.training.collator import VisionChatCollator
from facellm.training.logging import read_metrics
from facellm.training.sft import DataOrder, RankBatchSampler, TrainConfig, train

RUN_SFT = Path(run_sft.__file__)
REPO = Path(__file__).resolve().parents[2]


def quick_train(model, processor, out, **kwargs):
    settings = dict(steps=3, batch_size=2, lr=1e-3, seed=0, threads=1, progress=False)
    return train(model, processor, rows(4), TrainConfig(output_dir=out, **(settings | kwargs)))


def logits(model, processor):
    batch = VisionChatCollator(processor)(rows(2))
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_lora_run_exports_an_adapter_that_serves_as_trained(tiny_model, processor, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    result = quick_train(tiny_model, processor, tmp_path, lora_dropout=0.0)

    names = {p.name for p in tmp_path.iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "tokenizer.json",
            "processor_config.json", "metrics.jsonl", "loss.png", "training_args.json"} <= names
    assert (tmp_path / "chat_template.jinja").read_text() == processor.chat_template
    adapter = load_file(tmp_path / "adapter_model.safetensors")
    assert adapter and all("language_model.layers" in k and "lora_" in k for k in adapter)
    records = [r for r in read_metrics(tmp_path / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert set(records[0]) >= {"step", "loss", "lr", "grad_norm", "s_per_step", "samples_per_s"}
    assert result.loss == records[-1]["loss"] and result.step == 3

    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    served = PeftModel.from_pretrained(base, tmp_path)
    reloaded = AutoProcessor.from_pretrained(tmp_path)
    assert reloaded.chat_template == processor.chat_template
    torch.testing.assert_close(logits(served, reloaded), logits(result.model, processor), rtol=0, atol=1e-6)


def test_full_finetune_trains_everything_and_exports_a_model(tiny_model, processor, tmp_path):
    from transformers import AutoModelForImageTextToText

    result = quick_train(tiny_model, processor, tmp_path, trainable="full", steps=4)

    assert all(p.requires_grad for p in result.model.parameters())
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl")]
    assert losses[-1] < losses[0]
    reloaded = AutoModelForImageTextToText.from_pretrained(tmp_path, dtype=torch.float32)
    torch.testing.assert_close(logits(reloaded, processor), logits(result.model, processor), rtol=0, atol=1e-6)


def test_trainable_extra_trains_norms_beside_lora(tiny_model, processor, tmp_path):
    quick_train(tiny_model, processor, tmp_path, steps=1, trainable_extra=("post_attention_layernorm",))
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert any("post_attention_layernorm" in k for k in saved)
    assert any("lora_A" in k for k in saved)


def test_gradient_checkpointing_gives_the_same_loss(processor, tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    def last_loss(checkpointing, out):
        model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
        result = quick_train(model, processor, out, steps=2, gradient_checkpointing=checkpointing)
        assert any(getattr(m, "gradient_checkpointing", False) for m in result.model.modules()) == checkpointing
        return result.loss

    assert last_loss(True, tmp_path / "gc") == pytest.approx(last_loss(False, tmp_path / "plain"), abs=1e-6)


def test_epochs_set_the_number_of_steps(tiny_model, processor, tmp_path):
    result = train(tiny_model, processor, rows(5),
                   TrainConfig(output_dir=tmp_path, epochs=1.5, batch_size=2, threads=1, progress=False))
    assert result.step == 4  # ceil(1.5 * 5 / 2)
    assert read_metrics(tmp_path / "metrics.jsonl")[-1]["epoch"] == 1.6


def test_data_order_is_a_seeded_permutation_per_epoch():
    order = DataOrder(5, seed=7)
    stream = order.take(0, 15)
    for epoch in range(3):
        assert sorted(stream[5 * epoch: 5 * epoch + 5]) == list(range(5))
    assert stream[:5] != stream[5:10]
    assert DataOrder(5, seed=7).take(3, 9) == stream[3:12]
    assert DataOrder(5, seed=8).take(0, 15) != stream


def test_each_rank_takes_its_slice_and_resume_skips_whole_micro_batches():
    from accelerate.data_loader import skip_first_batches
    from torch.utils.data import DataLoader

    stream = DataOrder(5, seed=7).take(0, 24)
    ranks = [list(RankBatchSampler(DataOrder(5, seed=7), 3, rank, 2, micro_batches=4)) for rank in (0, 1)]
    assert [i for m in range(4) for rank in (0, 1) for i in ranks[rank][m]] == stream
    loader = DataLoader(list(range(5)), batch_sampler=RankBatchSampler(DataOrder(5, seed=7), 3, 1, 2, 4),
                        collate_fn=list)
    assert list(skip_first_batches(loader, 3)) == ranks[1][3:]


def test_worker_processes_collate_the_same_batches(processor, tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    def losses(workers):
        model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
        quick_train(model, processor, tmp_path / str(workers), num_workers=workers, lora_dropout=0.0)
        return [r["loss"] for r in read_metrics(tmp_path / str(workers) / "metrics.jsonl")]

    assert losses(2) == pytest.approx(losses(0), abs=1e-6)


def test_refuses_to_mix_runs(processor, tiny_model_dir, tmp_path):
    from transformers import AutoModelForImageTextToText

    def fresh():  # train() injects LoRA layers into the model it is given
        return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)

    quick_train(fresh(), processor, tmp_path, steps=2, save_every=2)
    with pytest.raises(FileExistsError, match="resume=True"):
        quick_train(fresh(), processor, tmp_path, steps=2)
    with pytest.raises(ValueError, match="batch_size"):
        quick_train(fresh(), processor, tmp_path, steps=4, resume=True, batch_size=1)


def test_sigkilled_run_resumes_to_the_same_losses(tiny_model_dir, tmp_path):
    """A run killed with SIGKILL after its step-4 checkpoint, then resumed, logs the same
    per-step losses (LoRA dropout on, so restoring the RNG states matters) and ends with the
    same adapter as an uninterrupted run."""
    steps = 8
    killed = tmp_path / "killed"
    command = [sys.executable, str(RUN_SFT), "--out", str(killed), "--steps", str(steps), "--block-at", "5"]
    log = open(tmp_path / "killed.log", "wb")  # a file, not a pipe: a full pipe would stall the child
    proc = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    straight = run_sft.run(tmp_path / "straight", steps)  # meanwhile, in this process
    blocked = Path(f"{killed}.blocked")
    deadline = time.monotonic() + 50
    while not blocked.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert blocked.exists(), (tmp_path / "killed.log").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    checkpoints = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert checkpoints == ["step-2", "step-4"]
    assert [r["step"] for r in read_metrics(killed / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4, 5]

    run_sft.run(killed, steps, resume=True)

    def losses(out):
        return [(r["step"], r["loss"], r["lr"], r["grad_norm"]) for r in read_metrics(out / "metrics.jsonl") if "loss" in r]

    resumed, expected = losses(killed), losses(tmp_path / "straight")
    assert [s for s, *_ in resumed] == list(range(1, steps + 1))  # the log was cut back to step 4, no duplicates
    np.testing.assert_allclose(np.array(resumed)[:, 1:], np.array(expected)[:, 1:], rtol=0, atol=1e-6)
    assert straight.loss == pytest.approx(expected[-1][1])
    final, reference = load_file(killed / "adapter_model.safetensors"), load_file(tmp_path / "straight" / "adapter_model.safetensors")
    assert final.keys() == reference.keys()
    for name in final:
        torch.testing.assert_close(final[name], reference[name], rtol=0, atol=1e-6)
    assert json.loads((killed / "checkpoints" / "step-8" / "trainer_state.json").read_text())["samples_seen"] == 8 * 4


def test_labelled_loss_is_the_models_loss(tiny_model, processor):
    from facellm.training.sft import labelled_loss

    batch = VisionChatCollator(processor)(rows(3))
    assert (batch["labels"] == -100).float().mean() > 0.3  # prompts and padding are left out
    with torch.no_grad():
        assert float(labelled_loss(tiny_model, batch)) == pytest.approx(float(tiny_model(**batch).loss), abs=1e-6)


def test_row_reduction_weighs_every_row_alike(tiny_model, processor):
    """loss_reduction="row" is the mean of each row's own loss (model(**one_row).loss), which
    differs from the token mean once rows have answers of different lengths."""
    from facellm.training.sft import labelled_loss

    collate, batch_rows = VisionChatCollator(processor), rows(3)
    batch_rows[0]["messages"][1]["content"][0]["text"] = "Match Verdict: Match. The two faces share glasses."
    batch = collate(batch_rows)
    lengths = (batch["labels"] != -100).sum(dim=1)
    assert len(set(lengths.tolist())) > 1
    with torch.no_grad():
        own = [float(tiny_model(**collate([r])).loss) for r in batch_rows]
        row_mean = float(labelled_loss(tiny_model, batch, "row"))
        token_mean = float(labelled_loss(tiny_model, batch, "token"))
    assert row_mean == pytest.approx(float(np.mean(own)), abs=1e-5)
    assert abs(row_mean - token_mean) > 1e-3
