import json
import shutil
from pathlib import Path

import huggingface_hub
import pytest

from facellm.models.loading import load_model, resolve_cache_dir, resolve_model_path


def test_cache_dir_follows_facellm_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACELLM_HOME", str(tmp_path))
    assert resolve_cache_dir() == tmp_path
    monkeypatch.delenv("FACELLM_HOME")
    assert resolve_cache_dir() == Path.home() / ".cache" / "facellm"


def test_registry_name_resolves_under_the_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   tiny_dir: Path) -> None:
    from facellm.models.shipped import SHIPPED_BASE

    monkeypatch.setenv("FACELLM_HOME", str(tmp_path))
    assert resolve_model_path("facellm_tiny")[0] == SHIPPED_BASE  # nothing built here: the shipped base
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "facellm_tiny").symlink_to(tiny_dir)
    path, spec = resolve_model_path("facellm_tiny")
    assert spec.name == "facellm_tiny" and path == tmp_path / "models" / "facellm_tiny"
    model, processor = load_model("facellm_tiny", dtype="float32", device="cpu")
    assert processor.image_processor.size["longest_edge"] == spec.max_pixels


@pytest.fixture
def empty_hub_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_hub_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, empty_hub_cache: None) -> None:
    def unreachable(*args, **kwargs):
        raise ConnectionError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub, "model_info", unreachable)
    with pytest.raises(FileNotFoundError, match="not found locally and the hub is unreachable; pass a local "
                                                "path or build the offline default with `facellm models "
                                                "build-default`"):
        load_model("Qwen/Qwen2-VL-2B-Instruct")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        load_model("qwen2_vl_2b")


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a registry name, a hub id or an existing folder"):
        load_model(tmp_path / "nowhere")


def test_unsupported_model_type_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type 'bert' is not supported"):
        load_model(tmp_path)


def test_folder_whose_processor_cannot_be_built_fails_loudly(tmp_path: Path, tiny_dir: Path) -> None:
    folder = tmp_path / "custom_processor"
    shutil.copytree(tiny_dir, folder)
    for name in ("processor_config.json", "tokenizer_config.json"):  # a subclass transformers does not know
        config = json.loads((folder / name).read_text())
        config["processor_class"] = "FaceProcessor"
        (folder / name).write_text(json.dumps(config))
    # AutoProcessor now silently returns the bare tokenizer
    with pytest.raises(TypeError, match="AutoProcessor returned a Qwen2Tokenizer, not a multimodal processor"):
        load_model(folder)


def test_adapter_must_be_a_peft_folder(tmp_path: Path, tiny_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a peft adapter folder"):
        load_model(tiny_dir, adapter=tmp_path)
