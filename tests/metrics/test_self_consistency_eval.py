"""Evaluation's self-consistency on the shipped trained adapter (transformers in process): the
attribute questions asked about each face an explanation makes claims about, their count, the
answers read with the attributes task's parser, resume, and the per-record and pooled figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facellm import metrics as M
from facellm.schema import FacePair, FaceRecord

EXPLANATIONS = {  # pair -> the explanation a "model" wrote (hand-written, so the claims are known)
    "t/test/pair-0-1": "Similarities: Both faces wear eyeglasses.\nDifferences: The first face has a beard, "
                       "while the second face has a beard.",
    "t/test/pair-1-2": "Similarities: None observed.\nDifferences: The first face is smiling, while the second "
                       "face is not smiling.",
    "t/test/pair-2-3": "Overall Reasoning: The two faces show different people.",  # no claims: nothing asked
}


def samples(split: str) -> list:
    recs = [FaceRecord(f"t/{split}/{i}", "t", split, Image.new("RGB", (48, 48), (40 * i, 120, 200 - 40 * i)), str(i),
                       {"eyeglasses": i % 2 == 0, "beard": i < 2, "smiling": i == 1}) for i in range(4)]
    return recs + [FacePair(f"t/{split}/pair-{a}-{a + 1}", "t", split, recs[a], recs[a + 1], False, 0.4)
                   for a in range(3)]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from facellm.data.build import build_dataset, load_built
    from facellm.inference.hf import HFBackend
    from facellm.models.shipped import SHIPPED_ADAPTER, SHIPPED_BASE
    from facellm.tasks import VerificationTask

    out = tmp_path_factory.mktemp("data")
    build_dataset(samples, {"verification": (VerificationTask(0.5), ("images_only", "score"))}, out,
                  splits=("test",), progress=False)
    rows = list(load_built(out)["test"])
    backend = HFBackend(SHIPPED_BASE, {"lora": SHIPPED_ADAPTER})
    yield backend, rows
    backend.close()


def records_of(rows: list[dict]) -> list[dict]:
    from facellm.evaluation import score_row

    return [score_row(row, "Match Verdict: Non-Match\n" + EXPLANATIONS[row["id"].split("#")[0]]) for row in rows]


@pytest.mark.parametrize("mode", ["describe", "yesno"])
def test_own_answers_are_asked_once_per_claimed_face_and_resume(setting, tmp_path, mode):
    from facellm.evaluation import RecordLog, add_self_consistency, ask_own_answers
    from facellm.tasks.attributes import parse_attributes, parse_yes_no

    backend, rows = setting
    records = records_of(rows)
    assert len(rows) == 6  # 3 pairs x 2 prompt variants
    log = RecordLog(tmp_path / "own.jsonl")
    answers, n = ask_own_answers(backend, rows, records, "lora", log, mode, batch_size=3)
    # faces claimed about: pair-0-1 both faces (eyeglasses, beard), pair-1-2 both faces (smiling); once over variants
    assert n == (4 if mode == "describe" else 6)
    asked = [json.loads(line) for line in (tmp_path / "own.jsonl").read_text().splitlines()]
    assert len(asked) == n
    for a in asked:
        parse = parse_attributes(a["response"]) if mode == "describe" else (
            {} if parse_yes_no(a["response"]) is None else {a["id"].rsplit("#", 1)[1]: parse_yes_no(a["response"])})
        assert a["answers"] == parse
        assert answers[a["pair"], a["face"]].items() >= parse.items()
    if mode == "describe":
        assert any(a["answers"] for a in asked), "the trained adapter's describe replies parse"
    # a rerun asks nothing and reads the same answers back
    again, n_again = ask_own_answers(backend, rows, records, "lora", RecordLog(tmp_path / "own.jsonl"), mode)
    assert (again, n_again) == (answers, n) and len((tmp_path / "own.jsonl").read_text().splitlines()) == n

    add_self_consistency(rows, records, answers)
    for row, rec in zip(rows, records):
        pair = row["id"].split("#")[0]
        claims = M.parse_claims(rec.values["explanation"], faces=2)
        own = M.self_check(claims, answers.get((pair, 0), {}), answers.get((pair, 1), {}))
        check = rec.self_check
        assert (check.consistent, check.contradicted, check.not_checkable) == (
            len(own.consistent), len(own.contradicted), len(own.not_checkable))
        assert check.same_value_differences == (1 if pair == "t/test/pair-0-1" else 0)  # "a beard ... a beard"
        assert sum(check.agreement.values()) <= len(claims)


def test_pooled_figures_and_tracking_over_cells():
    from facellm.evaluation import self_consistency_tracking
    from facellm.tasks.base import Record, SelfCheck
    from facellm.tasks.verification import self_consistency

    def rec(consistent, contradicted, not_checkable, both, self_only, truth_only, neither, supported, hallucinated):
        agreement = {"both": both, "self_only": self_only, "truth_only": truth_only, "neither": neither}
        return Record("p", "verification", "score", "", "", True, "Match", True, 1.0,
                      {"claims": {"supported": supported, "hallucinated": hallucinated, "unverifiable": 0}},
                      self_check=SelfCheck(consistent, contradicted, not_checkable, agreement, 0))

    rs = [rec(3, 1, 1, 1, 0, 1, 2, 3, 2), rec(1, 1, 0, 1, 0, 0, 1, 1, 1)]
    m = self_consistency(rs)
    assert m["self_contradiction_rate"] == pytest.approx(2 / 6)
    assert m["not_checkable_rate"] == pytest.approx(1 / 7)
    assert m["hallucinated_claim_rate"] == pytest.approx(3 / 7)
    assert m["agreement"]["n"] == 6 and m["agreement"]["n_both"] == 2 and m["agreement"]["recall"] == pytest.approx(2 / 3)
    assert m["per_explanation"]["n_cells"] == 2  # per-explanation rates: too few for a correlation
    metrics = {s: {"tasks": {f"verification/{v}": {"self_consistency": {
        "self_contradiction_rate": x, "hallucinated_claim_rate": y, "n_claims": 10, "agreement": m["agreement"]}}
        for v, x, y in cells}} for s, cells in
        {"a": [("images_only", 0.1, 0.2), ("score", 0.3, 0.35)], "b": [("images_only", 0.5, 0.6)]}.items()}
    across = self_consistency_tracking(metrics)
    assert [(c["system"], c["variant"]) for c in across["cells"]] == [("a", "images_only"), ("a", "score"),
                                                                     ("b", "images_only")]
    assert across["tracking"]["pearson"] == pytest.approx(np.corrcoef([0.1, 0.3, 0.5], [0.2, 0.35, 0.6])[0, 1])
    assert across["tracking"]["spearman"] == pytest.approx(1.0)
    assert across["agreement"]["n"] == 18
