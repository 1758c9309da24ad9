"""The offline default's weights that ship in the repository, and the fingerprint that says
whether they are still what the code would build.

Pre-training the base on 2 CPU cores takes ~40 minutes, too long for the main job, so
`facellm models build-default --ship` writes the trained base (fp16 safetensors, ~12 MB) to
`facellm/models/shipped/facellm_tiny/` and a LoRA adapter trained on it to
`facellm/models/shipped/facellm_tiny_lora/` (so the demo answers before any training). Each
folder holds `facellm_build.json` with the fingerprint of what made it:

    base fingerprint = sha256 of (the build-default config, the pre-training data config file,
                       the tokenizer corpus, and the source files in FINGERPRINT_SOURCES)

The main job installs the shipped base when its fingerprint matches and rebuilds it when not;
tests/models/test_shipped.py fails when the shipped base or adapter is stale.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
SHIPPED_BASE = SHIPPED_DIR / "facellm_tiny"
SHIPPED_ADAPTER = SHIPPED_DIR / "facellm_tiny_lora"
STAMP = "facellm_build.json"
MAX_SHIPPED_BYTES = 20 * 1024 * 1024

# The code that decides the base's weights: the images and their alignment, the caption texts,
# the architecture and tokenizer, and the training loop. Paths relative to the package's parent.
FINGERPRINT_SOURCES: tuple[str, ...] = (
    "facellm/synthface.py", "facellm/align.py", "facellm/fr.py", "facellm/attributes.py",
    "facellm/schema.py", "facellm/tasks/caption.py", "facellm/tasks/verification.py",
    "facellm/models/default.py", "facellm/training/sft.py", "facellm/training/collator.py",
    "facellm/training/vision_pretrain.py",
)
REFRESH_COMMAND = ("facellm data build --config instruct_data/configs/synthface_pretrain.yaml && "
                   "facellm models build-default --ship")


def code_digest(sources: tuple[str, ...] = FINGERPRINT_SOURCES) -> str:
    """sha256 over the named source files (path and bytes)."""
    h = hashlib.sha256()
    for rel in sources:
        h.update(rel.encode() + b"\0" + (PACKAGE_ROOT.parent / rel).read_bytes() + b"\0")
    return h.hexdigest()


def base_fingerprint(config: dict[str, Any], data_config_text: str, corpus: list[str]) -> str:
    """The fingerprint of a base built with `config` on the data `data_config_text` describes."""
    fields = {"config": config, "data_config": hashlib.sha256(data_config_text.encode()).hexdigest(),
              "corpus": hashlib.sha256("\n".join(corpus).encode()).hexdigest(), "code": code_digest()}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def read_stamp(folder: Path) -> dict[str, Any] | None:
    """The folder's facellm_build.json, None when there is none."""
    path = Path(folder) / STAMP
    return json.loads(path.read_text()) if path.is_file() else None


def stamp_matches(folder: Path, fingerprint: str, key: str = "fingerprint") -> bool:
    stamp = read_stamp(folder)
    return stamp is not None and stamp.get(key) == fingerprint


def install(src: Path, dst: Path) -> Path:
    """Copy a model folder to `dst` atomically (a temporary sibling, then a rename)."""
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".installing")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("checkpoints", "*.png", "metrics.jsonl"))
    old = dst.with_name(dst.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def portable_args(folder: Path) -> None:
    """Rewrite an absolute output_dir in the folder's training_args.json relative to the working
    directory (or to its last two parts outside it): a shipped file names no machine's paths."""
    path = Path(folder) / "training_args.json"
    if not path.is_file():
        return
    args = json.loads(path.read_text())
    out = Path(str(args.get("output_dir", "")))
    if out.is_absolute():
        try:
            args["output_dir"] = str(out.relative_to(Path.cwd()))
        except ValueError:
            args["output_dir"] = str(Path(*out.parts[-2:]))
        path.write_text(json.dumps(args, indent=2))


def to_fp16(folder: Path) -> None:
    """Rewrite every *.safetensors in `folder` with floating tensors stored as float16."""
    import torch
    from safetensors.torch import load_file, save_file

    for path in sorted(Path(folder).glob("*.safetensors")):
        tensors = {k: (v.to(torch.float16) if v.is_floating_point() else v) for k, v in load_file(path).items()}
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={"format": "pt"})
        os.replace(tmp, path)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
