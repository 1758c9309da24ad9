"""The offline default's shipped weights: current with the code that builds them, small, fp16,
and used by `facellm_tiny` and the main job. When one of these fails after a change to the
code in facellm.models.shipped.FINGERPRINT_SOURCES, the message names the refresh command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

from facellm.models.shipped import (
    MAX_SHIPPED_BYTES,
    REFRESH_COMMAND,
    SHIPPED_ADAPTER,
    SHIPPED_BASE,
    SHIPPED_DIR,
    folder_bytes,
    read_stamp,
)

ROOT = Path(__file__).resolve().parents[2]
BASE_CONFIG = ROOT / "finetune" / "configs" / "facellm_tiny_base.yaml"


def _expected_fingerprint() -> str:
    sys.path.insert(0, str(ROOT))
    from facellm.config import load_config
    from facellm.tasks.corpus import task_corpus
    from finetune.build_default import BuildDefaultConfig, fingerprint

    cfg = load_config(BuildDefaultConfig, BASE_CONFIG)
    return fingerprint(cfg, task_corpus(seed=cfg.seed))


def test_shipped_base_is_current():
    stamp = read_stamp(SHIPPED_BASE)
    assert stamp is not None, f"no shipped base at {SHIPPED_BASE}; run `{REFRESH_COMMAND}`"
    assert stamp["fingerprint"] == _expected_fingerprint(), (
        f"the shipped base at {SHIPPED_BASE} is stale (built from other code, data config or "
        f"settings); refresh it with `{REFRESH_COMMAND}`")


def test_shipped_adapter_was_trained_on_the_shipped_base():
    stamp, base = read_stamp(SHIPPED_ADAPTER), read_stamp(SHIPPED_BASE)
    assert stamp is not None and base is not None
    assert stamp["base_fingerprint"] == base["fingerprint"], (
        "the shipped adapter was trained on another base; retrain it (`facellm train --config "
        "finetune/configs/facellm_tiny.yaml`) and ship it with "
        "`facellm models build-default --ship-adapter runs/lora/facellm_tiny`")


def test_shipped_adapter_was_trained_with_the_main_lora_config():
    """The settings that decide the adapter's weights are those of the main job's LoRA config,
    so a change to finetune/configs/facellm_tiny.yaml leaves no stale adapter shipping."""
    sys.path.insert(0, str(ROOT))
    from facellm.config import load_config
    from finetune.lora_sft import SFTConfig

    cfg = load_config(SFTConfig, ROOT / "finetune" / "configs" / "facellm_tiny.yaml")
    expected = {**{k: getattr(cfg.train, k) for k in ("steps", "epochs", "batch_size", "grad_accum", "lr", "warmup",
                                                      "lr_schedule", "weight_decay", "max_grad_norm",
                                                      "loss_reduction", "seed")},
                "lora_r": cfg.lora.r, "lora_alpha": cfg.lora.alpha, "lora_dropout": cfg.lora.dropout}
    shipped = json.loads((SHIPPED_ADAPTER / "training_args.json").read_text())
    stale = {k: (shipped.get(k), v) for k, v in expected.items() if shipped.get(k) != v}
    assert not stale, (f"the shipped adapter was trained with other settings (shipped, config): {stale}; retrain "
                       "it (`facellm train --config finetune/configs/facellm_tiny.yaml`) and ship it with "
                       "`facellm models build-default --ship-adapter runs/lora/facellm_tiny`")


def test_shipped_weights_are_fp16_and_small():
    assert folder_bytes(SHIPPED_DIR) <= MAX_SHIPPED_BYTES
    files = [*SHIPPED_BASE.glob("*.safetensors"), *SHIPPED_ADAPTER.glob("*.safetensors")]
    assert len(files) >= 2
    for path in files:
        with safe_open(str(path), "pt") as f:
            dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
        assert dtypes == {"F16"}, (path, dtypes)


def test_shipped_training_args_name_no_machine_path():
    for folder in (SHIPPED_BASE, SHIPPED_ADAPTER):
        out = json.loads((folder / "training_args.json").read_text())["output_dir"]
        assert not Path(out).is_absolute(), (folder, out)


def test_portable_args_rewrites_an_absolute_output_dir(tmp_path, monkeypatch):
    from facellm.models.shipped import portable_args

    monkeypatch.chdir(tmp_path)
    (tmp_path / "training_args.json").write_text(json.dumps({"output_dir": str(tmp_path / "runs/x/pretrain"), "lr": 1}))
    portable_args(tmp_path)
    assert json.loads((tmp_path / "training_args.json").read_text()) == {"output_dir": "runs/x/pretrain", "lr": 1}
    (tmp_path / "training_args.json").write_text(json.dumps({"output_dir": "/elsewhere/models/b/pretrain"}))
    portable_args(tmp_path)
    assert json.loads((tmp_path / "training_args.json").read_text())["output_dir"] == "b/pretrain"


def test_status_reports_the_shipped_base_as_current(tmp_path):
    """The main job's decision: `build-default --status` exits 0 on a fresh FACELLM_HOME."""
    done = subprocess.run([sys.executable, "-m", "finetune.build_default", "--config", str(BASE_CONFIG), "--status"],
                          cwd=ROOT, capture_output=True, text=True, env={"FACELLM_HOME": str(tmp_path),
                                                                         "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shipped base" in done.stdout and "current" in done.stdout


def test_status_says_stale_for_another_config(tmp_path):
    done = subprocess.run([sys.executable, "-m", "finetune.build_default", "--config", str(BASE_CONFIG),
                           "--status", "steps=7"], cwd=ROOT, capture_output=True, text=True,
                          env={"FACELLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "must be trained" in done.stdout and "build-default --ship" in done.stdout


def test_facellm_tiny_resolves_to_the_shipped_base_before_any_build(tmp_path, monkeypatch):
    from facellm.models.loading import resolve_model_path

    monkeypatch.setenv("FACELLM_HOME", str(tmp_path))
    path, spec = resolve_model_path("facellm_tiny")
    assert path == SHIPPED_BASE and spec is not None and spec.name == "facellm_tiny"


def test_build_default_installs_the_shipped_base(tmp_path):
    done = subprocess.run([sys.executable, "-m", "finetune.build_default", "--config", str(BASE_CONFIG),
                           f"output={tmp_path / 'base'}", "data=/nonexistent"], cwd=ROOT,
                          capture_output=True, text=True, env={"FACELLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "installed the shipped base" in done.stdout
    installed = json.loads((tmp_path / "base" / "facellm_build.json").read_text())
    assert installed == read_stamp(SHIPPED_BASE)
    assert (tmp_path / "base" / "model.safetensors").read_bytes() == (SHIPPED_BASE / "model.safetensors").read_bytes()


@pytest.mark.parametrize("folder", [SHIPPED_BASE, SHIPPED_ADAPTER])
def test_shipped_folders_load(folder):
    from facellm.models.loading import load_model

    if folder == SHIPPED_BASE:
        model, processor = load_model(folder, device="cpu")
    else:
        model, processor = load_model(SHIPPED_BASE, device="cpu", adapter=folder)
    assert next(model.parameters()).dtype.is_floating_point and processor.tokenizer is not None
