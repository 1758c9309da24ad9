"""Resumable training checkpoints and the final, servable export.

Layout of a run's output_dir:
    checkpoints/step-N/weights.safetensors   trainable parameters by name (LoRA, or the whole model)
    checkpoints/step-N/state.pt              optimizer, scheduler, RNG states (one per rank), trainer state
    checkpoints/step-N/trainer_state.json    the trainer state, readable (step, data position, log offset)
    adapter_config.json, adapter_model.safetensors   (LoRA) or config.json, model.safetensors (full)
    tokenizer*.json, processor_config.json, chat_template.jinja   the processor and template to serve with

A checkpoint is written into checkpoints/.tmp-step-N, fsynced, then renamed to step-N, so a
directory named step-N is always complete; a run killed mid-write leaves only a .tmp-* that the
next save removes. Older checkpoints beyond `keep_last` are renamed to .trash-* before deletion
for the same reason.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

CHECKPOINTS_DIR = "checkpoints"
_STEP_DIR = re.compile(r"step-(\d+)")
_FILES = ("weights.safetensors", "state.pt", "trainer_state.json")


def capture_rng_state() -> dict[str, Any]:
    """This process's python, numpy and torch (and CUDA) RNG states, in a form torch.load
    reads with weights_only=True."""
    version, mt_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    output_dir: str | os.PathLike,
    step: int,
    *,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any],
    scheduler_state: dict[str, Any],
    rng_states: list[dict[str, Any]],
    trainer_state: dict[str, Any],
    keep_last: int | None = 2,
) -> Path:
    """Write checkpoints/step-`step` atomically and prune all but the newest `keep_last`.

    weights: trainable parameters by name; rng_states: one per rank, indexed by rank;
    trainer_state: JSON-able (step, data position, log offset, ...).
    """
    root = Path(output_dir) / CHECKPOINTS_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step}"
    for leftover in [*root.glob(".tmp-*"), *root.glob(".trash-*")]:  # from a run killed mid-write
        shutil.rmtree(leftover)
    tmp = root / f".tmp-step-{step}"
    tmp.mkdir()
    save_file({name: t.detach().cpu().contiguous() for name, t in weights.items()}, tmp / "weights.safetensors")
    torch.save(
        {"optimizer": optimizer_state, "scheduler": scheduler_state, "rng": rng_states, "trainer": trainer_state},
        tmp / "state.pt",
    )
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2))
    _fsync_dir(tmp)
    if final.exists():
        _remove(final)
    os.replace(tmp, final)
    _fsync_path(root)
    if keep_last is not None:
        for old in list_checkpoints(output_dir)[:-keep_last]:
            _remove(old)
    return final


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.fullmatch(path.name)
        if match and all((path / name).is_file() for name in _FILES):
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, None if there is none."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(weights by name, {"optimizer", "scheduler", "rng", "trainer"}) of a checkpoint."""
    path = Path(path)
    return load_file(path / "weights.safetensors"), torch.load(path / "state.pt", weights_only=True)


def load_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy checkpoint weights into `model`; every saved name must exist and every trainable
    parameter must be covered, so a checkpoint never half-loads into a different setup."""
    params = dict(model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    missing = sorted(name for name, p in params.items() if p.requires_grad and name not in weights)
    if unknown or missing:
        raise ValueError(
            f"checkpoint does not match the model: {len(unknown)} unknown names (e.g. {unknown[:3]}), "
            f"{len(missing)} trainable parameters missing (e.g. {missing[:3]}); resume with the same "
            "model and trainable/LoRA settings"
        )
    with torch.no_grad():
        for name, tensor in weights.items():
            params[name].copy_(tensor)


def export_model(
    output_dir: str | os.PathLike,
    model: torch.nn.Module,
    processor: Any,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save what serving needs into output_dir: the peft adapter (LoRA) or the whole model
    (full fine-tune), the processor, and chat_template.jinja (the template training used).

    LoRA: `vllm ... --enable-lora --lora-modules name=output_dir` or
    `PeftModel.from_pretrained(base, output_dir)`; full: `--model output_dir` or
    `AutoModelForImageTextToText.from_pretrained(output_dir)`.
    state_dict: the gathered state dict under FSDP/ZeRO (accelerator.get_state_dict), else None.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir, state_dict=state_dict)
    processor.save_pretrained(output_dir)
    template = output_dir / "chat_template.jinja"
    if not template.is_file():  # older processors keep the template only inside a JSON file
        template.write_text(processor.chat_template, encoding="utf-8")
    return output_dir


def _remove(path: Path) -> None:
    trash = path.with_name(f".trash-{path.name}")
    if trash.exists():
        shutil.rmtree(trash)
    os.replace(path, trash)
    shutil.rmtree(trash)


def _fsync_dir(path: Path) -> None:
    for child in path.iterdir():
        _fsync_path(child)
    _fsync_path(path)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
