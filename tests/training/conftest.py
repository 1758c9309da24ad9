import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tiny_rows, shared with the subprocess scripts
from tiny_rows import TINY_MODEL  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir() -> str:
    if not Path(TINY_MODEL, "config.json").is_file():
        pytest.skip(f"tiny dev model not found at {TINY_MODEL} (set FACELLM_TEST_MODEL)")
    torch.set_num_threads(1)
    return TINY_MODEL


@pytest.fixture(scope="session")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
