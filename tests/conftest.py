"""Session fixtures shared by the test packages: a tiny offline model of the real Qwen2-VL
architecture built by facellm itself (never downloaded), and LoRA adapters for it.

The model is random-init ("test" size, ~0.8M parameters): tests check mechanics (templates,
parity, serving, the UI), not answer quality. FACELLM_TEST_MODEL points them at another
folder (e.g. the trained offline default) instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# vLLM reports usage to its maker's server unless told not to: no test process ever does.
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")


def _build_tiny(root: Path) -> Path:
    from facellm.models.default import build_default_model
    from facellm.tasks.corpus import task_corpus

    return build_default_model(root / "model", task_corpus(n_identities=20, n_pairs=40), seed=0, size="test")


def _random_adapter(model_dir: Path, out: Path, seed: int, vision: bool = False) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from facellm.models.loading import load_model
    from facellm.models.lora import lora_targets
    from facellm.models.registry import get_model_spec

    torch.manual_seed(seed)
    model, _ = load_model(model_dir)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                        target_modules=lora_targets(get_model_spec("facellm_tiny"), vision),
                        init_lora_weights=False)  # random A and B: the adapter visibly changes outputs
    get_peft_model(model, config).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    if os.environ.get("FACELLM_TEST_MODEL"):
        return Path(os.environ["FACELLM_TEST_MODEL"])
    return _build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("adapters")
    # lora_b also adapts the vision tower and merger: every backend test then covers vLLM's
    # --enable-tower-connector-lora path beside the language-model-only lora_a
    return {name: str(_random_adapter(tiny_model_dir, root / name, seed, vision))
            for name, seed, vision in (("lora_a", 1, False), ("lora_b", 2, True))}
