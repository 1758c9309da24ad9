"""Supervised vision pre-training (facellm.training.vision_pretrain) on real SynthFace rows and the
tiny Qwen2-VL: it trains the vision side only, learns the labels, and is deterministic."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch


@pytest.fixture(scope="module")
def synthface_rows(tmp_path_factory):
    from facellm import synthface
    from facellm.data.build import build_dataset, load_built
    from facellm.tasks import CaptionTask

    out = tmp_path_factory.mktemp("vision_rows")

    def samples(split: str) -> list:
        records = synthface.synthface_records("train", 12, 3, seed=3, size=112)
        return records + synthface.synthface_pairs(records, 4, seed=3) if split == "train" else []

    build_dataset(samples, {"caption": (CaptionTask(), ("single", "pair"))}, out, splits=("train",), progress=False)
    return load_built(out)["train"]


def _trained(model_dir, rows, steps, seed=0):
    from facellm.models.loading import load_model
    from facellm.training.vision_pretrain import pretrain_vision

    model, processor = load_model(model_dir)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = pretrain_vision(model, processor, rows, steps=steps, batch_size=12, lr=3e-3, warmup=5, seed=seed,
                             eval_rows=rows, log_every=steps, log=lambda line: None)
    return model, before, report


def test_trains_the_vision_side_only_and_learns_the_labels(tiny_model_dir, synthface_rows):
    model, before, report = _trained(tiny_model_dir, synthface_rows, steps=150)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.visual.") for k in changed)
    assert any(k.startswith("model.visual.merger.") for k in changed)
    assert all(p.requires_grad for p in model.parameters())  # left as load_model gave it
    assert report["images"] == 30  # the train split's 10 identities x 3 images; pair rows are skipped
    val = report["validation"]
    # the 30 training images, being fitted: far above the most common label's share
    expressions = [json.loads(r["gt"])["sample"]["expression"] for r in synthface_rows if len(r["images"]) == 1]
    majority = max(Counter(expressions).values()) / len(expressions)
    assert val["acc/expression"] >= max(0.4, majority + 0.15), (val, majority)
    assert val["acc/binary"] >= 0.8, val
    assert val["r2/continuous"] > 0.3, val


def test_deterministic_for_a_seed(tiny_model_dir, synthface_rows):
    a, _, _ = _trained(tiny_model_dir, synthface_rows, steps=3)
    b, _, _ = _trained(tiny_model_dir, synthface_rows, steps=3)
    c, _, _ = _trained(tiny_model_dir, synthface_rows, steps=3, seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_rows_without_synthface_labels_are_refused(tiny_model_dir):
    from facellm.models.loading import load_model
    from facellm.training.vision_pretrain import pretrain_vision

    from tiny_rows import row  # tests/training/conftest.py puts it on sys.path

    rows = [{**row(i), "gt": "{}"} for i in range(4)]
    model, processor = load_model(tiny_model_dir)
    with pytest.raises(ValueError, match="SynthFace"):
        pretrain_vision(model, processor, rows, steps=1)
