import random

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from facellm.training import checkpoint as ckpt


def prepared(lr=0.1):
    """A two-layer model whose first layer is frozen, prepared with AdamW and a registered
    scheduler, the way train() sets up a LoRA run."""
    accelerator = Accelerator(cpu=True)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 1))
    model[0].requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 / (1 + s))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    ckpt.save_trainable_only(accelerator)
    return accelerator, model, optimizer, scheduler


def step(model, optimizer, scheduler):
    loss = model(torch.ones(2, 3)).pow(2).mean()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    scheduler.step()


def test_save_state_round_trip_keeps_trainable_weights_only(tmp_path):
    accelerator, model, optimizer, scheduler = prepared()
    for _ in range(3):
        step(model, optimizer, scheduler)
    path = ckpt.save_checkpoint(accelerator, tmp_path, 3, {"step": 3, "log_offset": 30})
    assert path == tmp_path / "checkpoints" / "step-3"
    assert set(load_file(path / "model.safetensors")) == {"1.weight", "1.bias"}  # the frozen layer is not saved
    assert ckpt.read_trainer_state(path) == {"step": 3, "log_offset": 30}
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    expected_draws = random.random(), np.random.rand(), torch.rand(1)
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    ckpt.save_checkpoint(accelerator, tmp_path, 4, {"step": 4, "log_offset": 40})
    step(model, optimizer, scheduler)
    expected = [p.detach().clone() for p in model.parameters()], scheduler.get_last_lr()

    accelerator2, model2, optimizer2, scheduler2 = prepared()
    with torch.no_grad():
        model2[0].weight.copy_(model[0].weight)  # the frozen base comes from the model, not the checkpoint
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    accelerator2.load_state(str(tmp_path / "checkpoints" / "step-4"))
    assert (random.random(), np.random.rand()) == expected_draws[:2] and torch.equal(torch.rand(1), expected_draws[2])
    step(model2, optimizer2, scheduler2)  # the optimizer's moments and the schedule came back too
    for got, want in zip(model2.parameters(), expected[0]):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert scheduler2.get_last_lr() == expected[1]


def test_keeps_the_newest_and_ignores_incomplete_ones(tmp_path):
    accelerator, *_ = prepared()
    for n in (2, 4, 6):
        ckpt.save_checkpoint(accelerator, tmp_path, n, {"step": n})
    root = tmp_path / ckpt.CHECKPOINTS_DIR
    (root / ".tmp-step-8").mkdir()  # a save killed before its rename
    (root / "step-10").mkdir()  # not written by save_checkpoint: no trainer state
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-4", "step-6"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-6"
    ckpt.save_checkpoint(accelerator, tmp_path, 8, {"step": 8})
    assert sorted(p.name for p in root.iterdir()) == ["step-10", "step-6", "step-8"]
    assert ckpt.latest_checkpoint(tmp_path / "elsewhere") is None


def test_load_weights_refuses_a_different_setup():
    model = torch.nn.Linear(2, 2)
    ckpt.load_weights(model, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(model.weight, torch.ones(2, 2))
    with pytest.raises(ValueError, match="1 trainable parameters missing"):
        ckpt.load_weights(model, {"weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="1 unknown names"):
        ckpt.load_weights(model, {"weight": torch.ones(2, 2), "bias": torch.zeros(2), "lora_A": torch.ones(1)})
