"""`facellm eval` with merge_adapters: an adapter system evaluated through a merged copy of the
base gives the records the unmerged adapter gives (same answers, LLRs within 1e-4), the merged
folder is made once and reused, and a running server is refused before anything loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from facellm.schema import FacePair, FaceRecord

ROOT = Path(__file__).resolve().parents[2]


def samples(split: str, n: int = 6) -> list:
    recs = [FaceRecord(f"m/{split}/{i}", "m", split, Image.new("RGB", (32, 32), (i * 40 % 255, 60, 120)), str(i // 2),
                       {"eyeglasses": i % 2 == 0, "age_group": "young"}, "happy" if i % 2 else "sad", 30.0)
            for i in range(n)]
    pairs = [(0, 1, True), (1, 2, False), (2, 3, True), (3, 4, False), (4, 5, True), (0, 5, False)]
    return recs + [FacePair(f"m/{split}/pair-{a}-{b}", "m", split, recs[a], recs[b], same, 0.5 + 0.3 * same)
                   for a, b, same in pairs]


def _eval(data: Path, out: Path, model: Path, adapter: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "facellm.cli", "eval", "--config", str(ROOT / "eval/configs/synthface_tiny.yaml"),
         f"dataset={data}", f"output_dir={out}", f"model={model}", "backend=hf", f"adapters={{lora_b: {adapter}}}",
         "systems=[{name: lora, adapter: lora_b}]", "max_tokens=16", "batch_size=8", "rows_per_group=null",
         "calibration_rows_per_variant=null", "self_consistency=null", "embedding_lr=false", *extra],
        cwd=ROOT, text=True, capture_output=True, timeout=900)


def _records(out: Path) -> dict[str, dict]:
    return {r["id"] + r["split"]: r for r in map(json.loads, (out / "samples.jsonl").read_text().splitlines())}


def test_merged_adapter_gives_the_adapter_records(tiny_model_dir, tiny_adapters, tmp_path):
    from facellm.data.build import build_dataset
    from facellm.tasks import ExpressionTask, VerificationTask

    data = tmp_path / "data"
    build_dataset(samples, {"expression": (ExpressionTask(), None), "verification": (VerificationTask(0.6), ("images_only",))},
                  data, splits=("validation", "test"), progress=False)
    adapter = tiny_adapters["lora_b"]  # LoRA on the language model and on the vision tower and merger
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    for out, flag in ((plain, "merge_adapters=false"), (merged, "merge_adapters=true")):
        proc = _eval(data, out, tiny_model_dir, adapter, flag)
        assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _records(plain), _records(merged)
    assert a.keys() == b.keys() and len(a) == 6 + 6 + 6  # test: 6 faces, 6 pairs; calibration: 6 pairs
    for key, rec in a.items():
        assert rec["response"] == b[key]["response"], key
        assert (rec["llrs"] is None) == (b[key]["llrs"] is None) == (rec["task"] != "verification"), key
        for field, value in (rec["llrs"] or {}).items():
            assert abs(value - b[key]["llrs"][field]) < 1e-4, (key, field, value, b[key]["llrs"][field])
    metrics = json.loads((merged / "metrics.json").read_text())["lora"]
    assert metrics["merged"] is True and metrics["adapter"] == "lora_b"
    assert json.loads((plain / "metrics.json").read_text())["lora"]["merged"] is False
    folder = merged / "merged" / "lora_b"
    assert (folder / "facellm_merge.json").is_file() and not (folder / "adapter_config.json").exists()
    made = (folder / "model.safetensors").stat().st_mtime_ns
    again = _eval(data, merged, tiny_model_dir, adapter, "merge_adapters=true")  # resumes: nothing to redo
    assert again.returncode == 0, again.stderr[-3000:]
    assert (folder / "model.safetensors").stat().st_mtime_ns == made


def test_merging_on_a_running_server_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "facellm.cli", "eval", "--config", str(ROOT / "eval/configs/synthface_tiny.yaml"),
         f"output_dir={tmp_path}", "server_url=http://127.0.0.1:9", "merge_adapters=true", "--check"],
        cwd=ROOT, text=True, capture_output=True, timeout=120)
    assert proc.returncode == 2 and "merge_adapters" in proc.stderr and "running server" in proc.stderr, proc.stderr


def test_merge_adapters_auto_asks_a_running_server_by_name_and_refuses_a_typo():
    from eval.run import EvalConfig, merging, validate_server
    from facellm.config import ConfigError, from_dict

    common = {"dataset": "d", "output_dir": "o", "adapters": {"a": "x"},
              "systems": [{"name": "base"}, {"name": "lora", "adapter": "a"}]}
    local = from_dict(EvalConfig, {**common, "merge_adapters": "auto"})
    attached = from_dict(EvalConfig, {**common, "merge_adapters": "auto", "server_url": "http://127.0.0.1:9"})
    validate_server(attached)  # auto never refuses a running server
    assert merging(local) and not merging(attached)
    with pytest.raises(ConfigError, match="true, false or auto"):
        validate_server(from_dict(EvalConfig, {**common, "merge_adapters": "sometimes"}))
