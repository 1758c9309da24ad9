"""`facellm eval` end to end on the tiny model (transformers in process): metrics.json and the
report carry the evidence beyond the FR score (fusion), TMR at FMR 1e-3 / 1e-4 with the
non-mated count, the separability of explanation embeddings and the demographic differentials."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from PIL import Image

from facellm import metrics as M
from facellm.schema import FacePair, FaceRecord

ROOT = Path(__file__).resolve().parents[2]
TONES = ("dark", "light")


def samples(split: str, n: int = 8) -> list:
    recs = [FaceRecord(f"t/{split}/{i}", "t", split, Image.new("RGB", (32, 32), (i * 30 % 255, 90, 0)), str(i // 2),
                       {"eyeglasses": i % 2 == 0, "beard": i % 3 == 0, "age_group": "young" if i < 4 else "adult"},
                       "happy" if i % 2 else "sad", 30.0, meta={"identity_params": {"skin_tone": TONES[i // 4]}})
            for i in range(n)]
    pairs = [(0, 1, True), (1, 2, False), (2, 3, True), (5, 6, False), (4, 5, True), (6, 7, True), (3, 4, False),
             (4, 7, False)]
    return recs + [FacePair(f"t/{split}/pair-{a}-{b}", "t", split, recs[a], recs[b], same,
                            0.55 + 0.3 * same - 0.02 * a) for a, b, same in pairs]


def test_eval_writes_fusion_tmr_separability_and_demographics(tiny_model_dir, tmp_path):
    from facellm.data.build import build_dataset
    from facellm.tasks import AttributeTask, ExpressionTask, VerificationTask

    data = tmp_path / "data"
    tasks = {"attributes": (AttributeTask(), None), "expression": (ExpressionTask(), None),
             "verification": (VerificationTask(0.6), ("images_only", "score"))}
    build_dataset(samples, tasks, data, splits=("validation", "test"), progress=False)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "facellm.cli", "eval", "--config", str(ROOT / "eval/configs/synthface_tiny.yaml"),
         f"dataset={data}", f"output_dir={out}", f"model={tiny_model_dir}", "backend=hf", "adapters={}",
         "systems=[{name: base}]", "max_tokens=24", "batch_size=8", "rows_per_group=null",
         "calibration_rows_per_variant=null"],
        cwd=ROOT, text=True, capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())["base"]
    lr = metrics["lr"]["score"]
    assert set(lr) == {"verdict", "answer", "explanation", "embedding", "fr_score"}
    for rep in lr.values():
        assert rep["n_nonmated"] == 4 and rep["tmr_at_fmr_1e3"] == "nan" and "needs >= 1000" in rep["tmr_note"]
    sep = lr["embedding"]["separability"]
    assert set(sep) >= {"silhouette", "davies_bouldin", "calinski_harabasz", "fisher_ratio"}
    fusion = metrics["fusion"]["score"]
    assert set(fusion) == {"verdict", "answer", "explanation", "embedding"}
    for rep in fusion.values():
        assert rep["cllr_drop"] == rep["cllr_fr_score"] - rep["cllr_fusion"]
    assert math.isclose(fusion["answer"]["cllr_fr_score"], lr["fr_score"]["cllr_logistic"], rel_tol=1e-6)
    skin = metrics["demographics"]["skin_tone"]
    assert set(skin["groups"]) == {"dark", "light", "mixed"}
    assert skin["groups"]["dark"]["verification/score/n_mated"] == 2  # pairs (0, 1), (2, 3)
    assert "verification/score/fmr" in skin["ratios"] and "age_group" in metrics["demographics"]
    report = (out / "report.md").read_text()
    for heading in ("## Evidence beyond the FR score", "## Separability of explanation embeddings",
                    "## Demographic differentials", "### base: by skin tone"):
        assert heading in report
    for plot in ("fusion_base.png", "demographics_base_skin_tone.png"):
        assert (out / "plots" / plot).is_file()
    samples_jsonl = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert all("groups" in r for r in samples_jsonl)
    # self-consistency, on by default: one describe question per face the test explanations claim about
    tests = [r for r in samples_jsonl if r["task"] == "verification" and r["split"] == "test"]
    claimed = {(r["id"].split("#")[0], face) for r in tests
               for c in M.parse_claims(r["values"]["explanation"], faces=2) for face, _ in M.claim_facts(c)}
    assert metrics["self_consistency"] == {"mode": "describe", "requests": len(claimed)}
    assert all(r["self_check"] is not None for r in tests)
    sc = metrics["tasks"]["verification/score"]["self_consistency"]
    assert sc["n_claims"] == sum(r["self_check"]["consistent"] + r["self_check"]["contradicted"]
                                 + r["self_check"]["not_checkable"] for r in tests if r["variant"] == "score")
    assert "## Self-consistency of verification explanations" in report
