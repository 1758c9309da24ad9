"""The demo's claim marks and fused LR through its own functions: `claim_marks` on hand-written
explanations, and `demo.app.respond` on the shipped trained adapter (transformers in process),
whose explanations of the SynthFace example pair make attribute claims that the panel marks
against the model's own per-face answers and the examples' ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from facellm.assistant import (
    ClaimMark,
    FaceAssistant,
    Fusion,
    claim_marks,
)

EXPLANATION = """Match Verdict: Non-Match
Similarities: Both faces have a beard.
Differences: The first face has black hair, while the second face has black hair. The first face wears eyeglasses, while the second face wears no eyeglasses.
Overall Reasoning: The hair differs."""


def test_claims_are_marked_by_own_answers_truth_and_themselves():
    own = [{"beard": True, "eyeglasses": False, "black_hair": True}, {"beard": True, "eyeglasses": False}]
    truth = [{"beard": True, "hair_color": "black", "eyeglasses": True},
             {"beard": False, "hair_color": "brown", "eyeglasses": False}]
    marks = claim_marks(EXPLANATION, own, truth)
    assert marks == [
        ClaimMark("each face has a beard", "supported", "contradicted"),
        ClaimMark("the first face has black hair", "supported", "supported"),
        ClaimMark("the second face has black hair", "not checkable", "contradicted"),
        ClaimMark("the first face wears eyeglasses", "contradicted", "supported"),
        ClaimMark("the second face wears no eyeglasses", "supported", "supported"),
        ClaimMark("difference: The first face has black hair, while the second face has black hair.",
                  None, None, "contradicted"),
    ]
    assert [m.mark for m in marks] == ["contradicted", "supported", "contradicted", "contradicted", "supported",
                                       "contradicted"]
    # an upload: no ground truth, no own answers asked -> only the self-contradicting difference is checkable
    alone = claim_marks(EXPLANATION)
    assert [m.mark for m in alone] == ["not checkable"] * 5 + ["contradicted"]


def test_a_fusion_applies_as_eval_fitted_it():
    fusion = Fusion(12.0, 0.5, -7.0, "test")
    assert fusion.apply(0.75, 2.0) == pytest.approx(12.0 * 0.75 + 0.5 * 2.0 - 7.0)
    assert fusion.apply(0.75, float("inf")) == pytest.approx(12.0 * 0.75 + 0.5 * 300.0 - 7.0)  # clipped as in eval


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from facellm.assistant import example_truths, synthface_examples
    from facellm.inference.hf import HFBackend
    from facellm.models.shipped import SHIPPED_ADAPTER, SHIPPED_BASE

    examples = synthface_examples(tmp_path_factory.mktemp("faces"))
    backend = HFBackend(SHIPPED_BASE, {"facellm-lora": SHIPPED_ADAPTER})
    yield backend, examples, example_truths(examples)
    backend.close()


def test_the_panel_marks_the_claims_and_shows_the_fused_lr(trained, tmp_path):
    from demo.app import respond
    from facellm.images import load_image
    from facellm.inference.base import ChatRequest
    from facellm.tasks.attributes import DESCRIBE_PROMPTS, parse_attributes

    backend, examples, truths = trained
    pair = examples[3]  # different persons
    copies = []
    for i, f in enumerate(pair.files):  # a front end copies uploads: the truth is found by content
        copy = tmp_path / f"upload{i}.png"
        copy.write_bytes(Path(f).read_bytes())
        copies.append(str(copy))
    fusion = {("facellm-lora", "score"): Fusion(10.0, 0.1, -6.0, "test")}
    assistant = FaceAssistant(backend, max_tokens=384, fusion=fusion, truths=truths)
    assert assistant.truth_of(copies) == pair.truths and assistant.truth_of([copies[0], __file__]) is None
    *_, last = respond(assistant, {"text": "", "files": copies}, [], "facellm-lora", "score", [])
    panel = last[1]
    # the same reply assessed again, and the model asked about each face by hand: the marks agree
    query = assistant.verification_query(*[load_image(f) for f in copies], "score")
    reply = last[0][-1]["content"]
    result = assistant.assess(query, reply, "facellm-lora", pair.truths)
    own = [parse_attributes(r.text) for r in backend.chat(
        [ChatRequest([img], DESCRIBE_PROMPTS[0], max_tokens=256, adapter="facellm-lora") for img in query.images])]
    assert result.marks == tuple(claim_marks(result.explanation, own, pair.truths))
    assert result.marks, f"the trained adapter made no attribute claim: {reply!r}"
    assert "**Claims of the explanation:**" in panel
    for mark in result.marks:
        assert f"| {mark.text} |" in panel
    assert any(m.by_truth in ("supported", "contradicted") for m in result.marks)
    assert any(m.by_model is not None for m in result.marks)
    if result.fr_score is not None:
        expected = fusion["facellm-lora", "score"].apply(result.fr_score, result.llr)
        assert result.fused_log10_lr == pytest.approx(expected)
        assert "Fused LR (FR score + explanation)" in panel
