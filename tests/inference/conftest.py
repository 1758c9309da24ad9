"""Shared backends for the inference tests: ONE real vLLM server, one in-process vLLM engine and
one transformers model, all on the same model and adapters, started once per test session.

The model and adapters are the session fixtures of tests/conftest.py: a tiny random Qwen2-VL
built by facellm (FACELLM_TEST_MODEL overrides it) and two random LoRA adapters
(FACELLM_TEST_ADAPTERS="name=path,name=path" overrides them).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def model_dir(tiny_model_dir) -> Path:
    return Path(tiny_model_dir)


@pytest.fixture(scope="session")
def adapters(tiny_adapters) -> dict[str, str]:
    spec = os.environ.get("FACELLM_TEST_ADAPTERS")
    return dict(item.split("=", 1) for item in spec.split(",")) if spec else dict(tiny_adapters)


@pytest.fixture(scope="session")
def server(model_dir, adapters, tmp_path_factory):
    from facellm.inference.server import start_server

    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    with start_server(model_dir, adapters, max_model_len=2048, log_path=log_path, verbose=False) as handle:
        yield handle


@pytest.fixture(scope="session")
def server_backend(server):
    from facellm.inference.vllm_server import VLLMServerBackend

    backend = VLLMServerBackend(server.url, max_concurrency=200, timeout_s=120)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def hf_backend(model_dir, adapters):
    from facellm.inference.hf import HFBackend

    return HFBackend(model_dir, adapters)


@pytest.fixture(scope="session")
def local_backend(model_dir, adapters):
    from facellm.inference.vllm_local import VLLMLocalBackend

    backend = VLLMLocalBackend(model_dir, adapters, max_model_len=2048)
    yield backend
    backend.close()


def noise_image(seed: int, size: tuple[int, int]) -> Image.Image:
    """A deterministic RGB image of smooth noise (different images give different logprobs)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)


@pytest.fixture(scope="session")
def faces() -> list[Image.Image]:
    return [noise_image(0, (56, 56)), noise_image(1, (84, 70)), noise_image(2, (112, 112))]
