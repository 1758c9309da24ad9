import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tiny_rows, shared with the subprocess scripts


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_dir) -> str:
    """The session's tiny model (tests/conftest.py), also exported for the subprocess scripts."""
    os.environ["FACELLM_TEST_MODEL"] = str(tiny_model_dir)
    torch.set_num_threads(1)
    return str(tiny_model_dir)


@pytest.fixture(scope="session")
def processor(tiny_model_dir):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture
def tiny_model(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
