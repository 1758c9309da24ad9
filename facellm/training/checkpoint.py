"""Resumable training checkpoints and the final, servable export.

Layout of a run's output_dir:
    checkpoints/step-N/       accelerate's save_state: model.safetensors (the trainable parameters
                              only: LoRA, or the whole model), optimizer.bin, custom_checkpoint_0.pkl
                              (the scheduler), random_states_R.pkl (one per rank); under FSDP or
                              DeepSpeed their sharded model and optimizer files instead
    checkpoints/step-N/trainer_state.json   step, data layout, metrics-log offset (readable)
    adapter_config.json, adapter_model.safetensors   (LoRA) or config.json, model.safetensors (full)
    tokenizer*.json, processor_config.json, chat_template.jinja   the processor and template to serve with

A checkpoint is written by every process into checkpoints/.tmp-step-N, fsynced, then renamed
to step-N by the main process, so a directory named step-N is always complete; a run killed
mid-write leaves only a .tmp-* that the next save removes. Older checkpoints beyond
`keep_last` are renamed to .trash-* before deletion for the same reason. The tmp folder must be
on a file system every process sees (one machine, or a shared one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file

CHECKPOINTS_DIR = "checkpoints"
TRAINER_STATE = "trainer_state.json"
_STEP_DIR = re.compile(r"step-(\d+)")


def save_trainable_only(accelerator: Accelerator) -> None:
    """Make accelerator.save_state/load_state keep only the trainable parameters of unsharded
    models (a LoRA checkpoint of a 7B model is then megabytes, not the frozen base again), and
    load them strictly (load_weights). FSDP and DeepSpeed models save and load their own way."""

    def keep_trainable(models: list[torch.nn.Module], weights: list[dict[str, torch.Tensor]], _dir: str) -> None:
        for i, (model, state) in enumerate(zip(models, weights)):
            names = {name for name, p in model.named_parameters() if p.requires_grad}
            weights[i] = {name: t for name, t in state.items() if name in names}

    def load_trainable(models: list[torch.nn.Module], input_dir: str) -> None:
        for i, model in enumerate(models):
            load_weights(model, load_file(Path(input_dir) / f"model{'' if i == 0 else f'_{i}'}.safetensors"))
        models.clear()  # loaded: accelerate skips them

    accelerator.register_save_state_pre_hook(keep_trainable)
    accelerator.register_load_state_pre_hook(load_trainable)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    step: int,
    trainer_state: dict[str, Any],
    keep_last: int | None = 2,
) -> Path:
    """Write checkpoints/step-`step` with accelerator.save_state atomically and prune all but the
    newest `keep_last`. Every process calls it (save_state is a collective under sharding).
    trainer_state: JSON-able (step, data layout, log offset, ...)."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    final, tmp = root / f"step-{step}", root / f".tmp-step-{step}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in [*root.glob(".tmp-*"), *root.glob(".trash-*")]:  # from a run killed mid-write
            shutil.rmtree(leftover)
        tmp.mkdir()
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2))
        _fsync_tree(tmp)
        if final.exists():
            _remove(final)
        os.replace(tmp, final)
        _fsync_path(root)
        if keep_last is not None:
            for old in list_checkpoints(output_dir)[:-keep_last]:
                _remove(old)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = _STEP_DIR.fullmatch(path.name)
        if match and (path / TRAINER_STATE).is_file():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run, None if there is none."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def read_trainer_state(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's trainer state (what trainer_state.json holds)."""
    return json.loads((Path(path) / TRAINER_STATE).read_text())


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


def _fsync_tree(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir():
            _fsync_tree(child)
        else:
            _fsync_path(child)
    _fsync_path(path)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
