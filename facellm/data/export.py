"""Export a built instruction dataset to the files other fine-tuning tools read.

- `swift` (ms-swift) and `llamafactory` (LLaMA-Factory, sharegpt layout): one JSONL per split,
  `{"messages": [{"role": "user", "content": "<image><image>Are these ..."},
                 {"role": "assistant", "content": "Match Verdict: ..."}], "images": ["/abs/images/ab12.png", ...]}`
  where the number of `<image>` tags equals `len(images)`; LLaMA-Factory also gets `dataset_info.json`.
- `trl`: one parquet file per split in the dataset's own layout (content parts + embedded
  images), which `datasets.load_dataset("parquet", data_files=...)` gives straight to TRL.
Each distinct image is written once, named by the hash of its bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

Format = Literal["swift", "llamafactory", "trl"]
FORMATS: tuple[str, ...] = ("swift", "llamafactory", "trl")


def _write_image(blob: dict[str, Any], folder: Path) -> str:
    data = blob["bytes"]
    ext = ".png" if data[:8] == b"\x89PNG\r\n\x1a\n" else ".jpg"
    path = folder / (hashlib.sha256(data).hexdigest()[:20] + ext)
    if not path.exists():
        tmp = path.with_suffix(ext + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return str(path.resolve())


def tagged_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Content parts -> plain strings with one `<image>` tag per image part, in order."""
    out = []
    for message in messages:
        text = "".join("<image>" if part["type"] == "image" else part["text"] or "" for part in message["content"])
        out.append({"role": message["role"], "content": text})
    return out


def export_dataset(dataset_dir: str | Path, out_dir: str | Path, fmt: Format, name: str = "facellm") -> list[Path]:
    """Write `fmt` files for every split of the dataset at `dataset_dir` (a `facellm data build`
    output folder or its `dataset/` subfolder); returns the files written."""
    from datasets import load_from_disk

    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    src = Path(dataset_dir)
    src = src / "dataset" if (src / "dataset").exists() else src
    dsd = load_from_disk(str(src))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if fmt == "trl":
        for split, ds in dsd.items():
            path = out / f"{split}.parquet"
            ds.to_parquet(str(path))
            written.append(path)
        return written
    images = out / "images"
    images.mkdir(exist_ok=True)
    for split, ds in dsd.items():
        path = out / f"{split}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        with tmp.open("w") as fh:
            for row in ds.cast_column("images", _raw_images(ds)).select_columns(["id", "messages", "images"]):
                record = {"id": row["id"], "messages": tagged_messages(row["messages"]),
                          "images": [_write_image(b, images) for b in row["images"]]}
                fh.write(json.dumps(record) + "\n")
        os.replace(tmp, path)
        written.append(path)
    if fmt == "llamafactory":
        info = {f"{name}_{split}": {
            "file_name": f"{split}.jsonl", "formatting": "sharegpt",
            "columns": {"messages": "messages", "images": "images"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        } for split in dsd}
        (out / "dataset_info.json").write_text(json.dumps(info, indent=2))
        written.append(out / "dataset_info.json")
    return written


def _raw_images(ds):
    """The images feature with decoding off, so rows give the stored bytes."""
    from datasets import Image, List

    return List(Image(decode=False))
