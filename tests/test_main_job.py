"""The main job end to end through the real CLI, on a small scale: SynthFace data -> offline
default model (test size) -> LoRA fine-tune -> vLLM server -> evaluation with LR metrics ->
report. Slow (a real vLLM server starts); it runs in CI like every other test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def facellm(*args: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "facellm.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=1200)
    assert proc.returncode == 0, f"facellm {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc.stdout


def test_main_job_small(tmp_path):
    env = {**os.environ, "FACELLM_HOME": str(tmp_path / "home"), "FACELLM_THREADS": "1"}
    data, pre = tmp_path / "data", tmp_path / "pre"
    small = ["dataset_args.n_identities=40", "dataset_args.images_per_identity=4"]
    facellm("data", "build", "--config", str(ROOT / "instruct_data/configs/synthface.yaml"), f"output_dir={data}",
            *small, "dataset_args.pairs_per_split={train: 60, validation: 40, test: 24}", env=env, cwd=tmp_path)
    facellm("data", "build", "--config", str(ROOT / "instruct_data/configs/synthface_pretrain.yaml"),
            f"output_dir={pre}", *small, "dataset_args.pairs_per_split={train: 20, validation: 4, test: 0}",
            env=env, cwd=tmp_path)
    facellm("models", "build-default", "--config", str(ROOT / "finetune/configs/facellm_tiny_base.yaml"),
            f"data={pre}", "size=test", "steps=6", "save_every=3", env=env, cwd=tmp_path)
    model_dir = tmp_path / "home" / "models" / "facellm_tiny"
    assert (model_dir / "config.json").exists() and (model_dir / "facellm_build.json").exists()
    # a second build with the same config is a no-op
    assert "up to date" in facellm("models", "build-default", "--config",
                                   str(ROOT / "finetune/configs/facellm_tiny_base.yaml"), f"data={pre}",
                                   "size=test", "steps=6", "save_every=3", env=env, cwd=tmp_path)
    lora = tmp_path / "lora"
    facellm("train", "--config", str(ROOT / "finetune/configs/facellm_tiny.yaml"), f"dataset={data}",
            f"output_dir={lora}", "train.steps=4", "train.save_every=2", "train.eval_every=4", "eval.rows=4",
            "eval.max_tokens=8", env=env, cwd=tmp_path)
    assert (lora / "adapter_config.json").exists() and (lora / "chat_template.jinja").exists()
    assert (lora / "loss.png").exists() and (lora / "metrics.jsonl").exists()
    report_dir = tmp_path / "eval"
    out = facellm("eval", "--config", str(ROOT / "eval/configs/synthface_tiny.yaml"), f"dataset={data}",
                  f"output_dir={report_dir}", f"adapters={{facellm-lora: {lora}}}", "rows_per_group=6",
                  "calibration_rows_per_variant=16", "max_tokens=24", env=env, cwd=tmp_path)
    assert "report:" in out
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert set(metrics) == {"base", "lora"}
    for system in metrics.values():
        assert {"expression", "attributes/yesno", "attributes/describe", "age", "verification/images_only"} <= set(system["tasks"])
        lr = system["lr"]["score"]
        assert {"verdict", "answer", "explanation", "embedding", "fr_score"} <= set(lr)
        for rep in lr.values():  # a random tiny model on 6 pairs: only the ranges are known
            assert 0.0 <= rep["cllr_min"] <= 1.0 + 1e-9
            assert all(0.0 <= rep[k] < float("inf") for k in ("cllr_pav", "cllr_logistic"))
    from facellm import calibrators  # what the demo loads: one calibration per system and variant

    loaded = calibrators.load(report_dir / "calibrators.json")
    assert {("base", "score"), ("facellm-lora", "score"), ("facellm-lora", "images_only")} <= set(loaded.calibrations)
    assert {("base", "score"), ("facellm-lora", "score")} <= set(loaded.fusions)
    samples = [json.loads(line) for line in (report_dir / "samples.jsonl").read_text().splitlines()]
    verification = [s for s in samples if s["task"] == "verification"]
    assert verification and all(s["llrs"] is not None and "claims" in s["values"] for s in verification)
    html = (report_dir / "report.html").read_text()
    assert "Likelihood-ratio metrics" in html and "plots/lr_lora_score.png" in html
    assert (report_dir / "plots" / "lr_lora_score.png").stat().st_size > 10_000
    # the SynthFace multiple-choice set, built and scored both ways on both systems
    mc_dir = tmp_path / "mc_eval"
    out = facellm("eval", "mc", "--config", str(ROOT / "eval/configs/synthface_mc.yaml"), f"items={tmp_path / 'mc'}",
                  f"output_dir={mc_dir}", "synthface.n_per_category=2", f"adapters={{facellm-lora: {lora}}}",
                  env=env, cwd=tmp_path)
    mc = json.loads((mc_dir / "metrics.json").read_text())
    assert set(mc["systems"]) == {"base", "lora"} and mc["n_items"] >= 6
    for system in mc["systems"].values():
        assert set(system["accuracy"]) == {"generate", "acc", "acc_norm"}
        assert all(0.0 <= acc <= 1.0 for acc in system["accuracy"].values())
    assert "Multiple choice" in (mc_dir / "report.md").read_text()
