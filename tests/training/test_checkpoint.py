import random

import numpy as np
import pytest
import torch

from facellm.training import checkpoint as ckpt


def save(tmp_path, step, keep_last=2, weights=None):
    return ckpt.save_checkpoint(
        tmp_path, step,
        weights=weights or {"w": torch.full((2, 2), float(step))},
        optimizer_state={"state": {}, "param_groups": []},
        scheduler_state={"last_epoch": step},
        rng_states=[ckpt.capture_rng_state()],
        trainer_state={"step": step, "log_offset": 10 * step},
        keep_last=keep_last,
    )


def test_keeps_the_newest_and_ignores_incomplete_ones(tmp_path):
    for step in (2, 4, 6):
        save(tmp_path, step)
    root = tmp_path / ckpt.CHECKPOINTS_DIR
    (root / ".tmp-step-8").mkdir()  # a save killed before its rename
    (root / "step-10").mkdir()  # not written by save_checkpoint: no files
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-4", "step-6"]
    assert ckpt.latest_checkpoint(tmp_path).name == "step-6"

    weights, state = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert torch.equal(weights["w"], torch.full((2, 2), 6.0))
    assert state["trainer"] == {"step": 6, "log_offset": 60}

    save(tmp_path, 8)
    assert not (root / ".tmp-step-8").exists()
    assert sorted(p.name for p in root.iterdir()) == ["step-10", "step-6", "step-8"]


def test_no_checkpoint(tmp_path):
    assert ckpt.latest_checkpoint(tmp_path) is None


def test_rng_states_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = ckpt.capture_rng_state()
    expected = random.random(), np.random.rand(), torch.rand(1)
    random.seed(2), np.random.seed(2), torch.manual_seed(2)
    ckpt.restore_rng_state(state)
    assert (random.random(), np.random.rand()) == expected[:2]
    assert torch.equal(torch.rand(1), expected[2])


def test_load_weights_refuses_a_different_setup():
    model = torch.nn.Linear(2, 2)
    ckpt.load_weights(model, {"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    assert torch.equal(model.weight, torch.ones(2, 2))
    with pytest.raises(ValueError, match="1 trainable parameters missing"):
        ckpt.load_weights(model, {"weight": torch.ones(2, 2)})
    with pytest.raises(ValueError, match="1 unknown names"):
        ckpt.load_weights(model, {"weight": torch.ones(2, 2), "bias": torch.zeros(2), "lora_A": torch.ones(1)})
