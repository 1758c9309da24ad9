"""Demographic differentials (NIST FRVT Part 3 style) on a hand-made table of records, the
max/min ratio, and the groups eval reads from real dataset rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from facellm.evaluation import MIXED, LRSystem, demographic_metrics, face_groups, group_metrics, row_groups, score_row
from facellm.metrics.demographics import match_rates, max_min_ratio
from facellm.tasks.base import Record


def pair(i: int, tone: str, same: bool, verdict: str, fr: float, hallucinated: int, supported: int) -> Record:
    correct = (verdict == "Match") == same
    return Record(f"pair-{i}", "verification", "score", "", "", same, verdict, correct, float(correct),
                  {"fr_score": fr, "fr_threshold": 0.6, "explanation": "",
                   "claims": {"supported": supported, "hallucinated": hallucinated, "unverifiable": 0}},
                  groups={"skin_tone": tone})


def face(i: int, tone: str, label: str, prediction: str) -> Record:
    return Record(f"face-{i}", "expression", "reason", "", "", label, prediction, label == prediction,
                  float(label == prediction), groups={"skin_tone": tone})


# dark: 2 mated (1 rejected by the verdict), 2 non-mated (1 accepted); light: 2 mated, 2 non-mated, no errors
TABLE = [
    pair(0, "dark", True, "Match", 0.70, 1, 3), pair(1, "dark", True, "Non-Match", 0.55, 1, 1),
    pair(2, "dark", False, "Match", 0.65, 2, 2), pair(3, "dark", False, "Non-Match", 0.40, 0, 4),
    pair(4, "light", True, "Match", 0.80, 0, 4), pair(5, "light", True, "Match", 0.75, 0, 2),
    pair(6, "light", False, "Non-Match", 0.30, 1, 3), pair(7, "light", False, "Uncertain", 0.50, 0, 2),
    pair(8, MIXED, False, "Match", 0.90, 3, 1),
    face(0, "dark", "happy", "happy"), face(1, "dark", "sad", "happy"), face(2, "light", "sad", "sad"),
    face(3, "light", "happy", "happy"), face(4, "light", "anger", None),
]


def test_group_metrics_by_hand():
    table = demographic_metrics(TABLE)["skin_tone"]
    assert list(table["groups"]) == ["dark", "light", MIXED]
    dark, light, mixed = (table["groups"][g] for g in ("dark", "light", MIXED))
    assert dark["n_rows"] == 6 and light["n_rows"] == 7 and mixed["n_rows"] == 1
    assert dark["verification/score/fmr"] == 0.5 and dark["verification/score/fnmr"] == 0.5
    assert light["verification/score/fmr"] == 0.0 and light["verification/score/fnmr"] == 0.0  # Uncertain rejects
    assert dark["verification/score/fr_fmr"] == 0.5 and dark["verification/score/fr_fnmr"] == 0.5  # 0.65, 0.55
    assert light["verification/score/fr_fmr"] == 0.0 and light["verification/score/fr_fnmr"] == 0.0
    assert dark["verification/score/hallucinated_claim_rate"] == pytest.approx(4 / 14)
    assert light["verification/score/hallucinated_claim_rate"] == pytest.approx(1 / 12)
    assert dark["verification/score/accuracy"] == 0.5 and light["verification/score/accuracy"] == 1.0
    assert dark["expression/accuracy"] == 0.5 and light["expression/accuracy"] == pytest.approx(2 / 3)
    assert (dark["verification/score/n_mated"], dark["verification/score/n_nonmated"]) == (2, 2)
    assert mixed["verification/score/fmr"] == 1.0 and math.isnan(mixed["verification/score/fnmr"])


def test_ratios_leave_out_mixed_pairs_and_counts():
    ratios = demographic_metrics(TABLE)["skin_tone"]["ratios"]
    assert ratios["verification/score/hallucinated_claim_rate"]["ratio"] == pytest.approx((4 / 14) / (1 / 12))
    assert ratios["verification/score/hallucinated_claim_rate"]["max_group"] == "dark"
    assert ratios["expression/accuracy"]["ratio"] == pytest.approx((2 / 3) / 0.5)
    assert ratios["verification/score/fmr"]["ratio"] == math.inf  # 0.5 against 0: mixed's 1.0 left out
    assert ratios["verification/score/fmr"]["max_value"] == 0.5
    assert not any(m.rsplit("/", 1)[-1].startswith("n_") for m in ratios)


def test_cllr_per_group_from_the_calibrated_llrs():
    ids = [r.id for r in TABLE if r.task == "verification"]
    llrs = np.array([1.0, -0.5, 0.5, -2.0, 2.0, 1.5, -1.0, -0.2, 0.3])
    nothing = np.zeros(0)
    lr = {"score": {"answer": LRSystem(llrs, nothing, nothing, nothing, {"logistic": llrs}, {}, ids)}}
    table = demographic_metrics(TABLE, lr)["skin_tone"]["groups"]
    cost = lambda v, same: math.log2(1 + 10 ** (-v if same else v))
    dark = 0.5 * ((cost(1.0, 1) + cost(-0.5, 1)) / 2 + (cost(0.5, 0) + cost(-2.0, 0)) / 2)
    assert table["dark"]["verification/score/cllr/answer"] == pytest.approx(dark)
    assert math.isnan(table[MIXED]["verification/score/cllr/answer"])  # one class only


def test_one_group_is_no_differential():
    assert demographic_metrics([r for r in TABLE if r.groups["skin_tone"] == "dark"]) == {}
    assert group_metrics([])["n_rows"] == 0


def test_match_rates_and_max_min_ratio():
    assert match_rates([1, 1, 0, 0], [True, False, False, True]) == (0.5, 0.5, 2, 2)
    rates = match_rates([1, 1], [True, True])
    assert math.isnan(rates.fmr) and rates.fnmr == 0.0
    d = max_min_ratio({"dark": 0.10, "light": 0.02, "tan": 0.05, "x": math.nan})
    assert d.ratio == pytest.approx(5.0) and (d.max_group, d.min_group) == ("dark", "light")
    assert math.isnan(max_min_ratio({"a": 0.0, "b": 0.0}).ratio)
    assert max_min_ratio({"a": 0.0, "b": 0.1}).ratio == math.inf
    assert math.isnan(max_min_ratio({"a": 0.3}).ratio)


# ---------------------------------------------------------------- groups from real rows


def test_face_groups_of_each_dataset_layout():
    synth = {"attributes": {"age_group": "senior"}, "meta": {"identity_params": {"skin_tone": "tan"}}, "age": 70.1}
    assert face_groups(synth) == {"skin_tone": "tan", "age_group": "senior"}
    fairface = {"attributes": {}, "meta": {"age_bin": "50-59", "gender": "male", "race": "east_asian"}}
    assert face_groups(fairface) == {"age": "50-59", "gender": "male", "race": "east_asian"}
    utk = {"attributes": {}, "meta": {"gender": "female", "race": "asian"}, "age": 26.0}
    assert face_groups(utk) == {"gender": "female", "race": "asian", "age": "20-29"}
    assert face_groups({"age": 85.0}) == {"age": "70+"} and face_groups({}) == {}


def test_groups_and_threshold_come_from_built_rows(tmp_path):
    from facellm.data.build import build_dataset, load_built
    from facellm.schema import FacePair, FaceRecord
    from facellm.tasks import ExpressionTask, VerificationTask

    def samples(split: str, n: int = 4) -> list:
        recs = [FaceRecord(f"t/{split}/{i}", "t", split, Image.new("RGB", (32, 32), (i * 40, 90, 0)), str(i // 2),
                           {"age_group": "young" if i < 3 else "adult"}, "happy", 30.0,
                           meta={"identity_params": {"skin_tone": "dark" if i < 2 else "light"}})
                for i in range(n)]
        return recs + [FacePair(f"t/{split}/pair-0-1", "t", split, recs[0], recs[1], True, 0.8),
                       FacePair(f"t/{split}/pair-1-2", "t", split, recs[1], recs[2], False, 0.3)]

    build_dataset(samples, {"expression": (ExpressionTask(), None), "verification": (VerificationTask(0.55), None)},
                  tmp_path, splits=("test",), progress=False)
    rows = load_built(tmp_path)["test"]
    groups = {row["id"]: row_groups(row) for row in rows}
    assert groups["t/test/0#expression#reason"] == {"age_group": "young", "skin_tone": "dark"}
    assert groups["t/test/pair-0-1#verification#images_only"] == {"age_group": "young", "skin_tone": "dark"}
    assert groups["t/test/pair-1-2#verification#score"] == {"age_group": "young", "skin_tone": MIXED}
    row = next(r for r in rows if r["id"] == "t/test/pair-1-2#verification#score")
    record = score_row(row, "Match Verdict: Non-Match\nSimilarities: none.")
    assert record.values["fr_threshold"] == 0.55 and record.values["fr_score"] == pytest.approx(0.3)
