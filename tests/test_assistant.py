"""facellm.verbal (the verbal LR scale) and facellm.assistant (what the demo calls) on the
tiny real model: the demo's reply, verdict and LR are the ones eval computes for that pair."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random

import numpy as np
import pytest

from facellm.verbal import H1, H2, NEUTRAL, format_lr, verbal_scale

# ---------------------------------------------------------------- verbal scale

BANDS = [  # (log10 LR, wording for H1)
    (1e-9, "weak support"), (math.log10(2), "weak support"), (math.nextafter(1.0, 0), "weak support"),
    (math.log10(10), "moderate support"), (math.nextafter(2.0, 0), "moderate support"),
    (math.log10(100), "moderately strong support"), (math.nextafter(3.0, 0), "moderately strong support"),
    (math.log10(1_000), "strong support"), (math.nextafter(4.0, 0), "strong support"),
    (math.log10(10_000), "very strong support"), (5.0, "very strong support"),
    (math.nextafter(6.0, 0), "very strong support"),
    (math.log10(1_000_000), "extremely strong support"), (300.0, "extremely strong support"),
    (math.inf, "extremely strong support"),
]


@pytest.mark.parametrize(("log10_lr", "words"), BANDS)
def test_verbal_scale_bands_include_their_lower_bound(log10_lr, words):
    assert verbal_scale(log10_lr) == f"{words} for {H1}"


@pytest.mark.parametrize(("log10_lr", "words"), BANDS)
def test_verbal_scale_is_symmetric(log10_lr, words):
    assert verbal_scale(-log10_lr) == f"{words} for {H2}"


def test_verbal_scale_lr_one_and_nan():
    assert verbal_scale(0.0) == verbal_scale(-0.0) == NEUTRAL
    with pytest.raises(ValueError, match="NaN"):
        verbal_scale(math.nan)


@pytest.mark.parametrize(("log10_lr", "text"), [
    (0.0, "1"), (1.0, "10"), (-0.3, "0.501"), (math.log10(45.67), "45.7"), (3.0, "1,000"),
    (math.log10(999_400), "999,400"), (-3.0, "0.001"), (6.0, "1.0 × 10^6"), (7.5, "3.2 × 10^7"),
    (math.log10(9.96e8), "1.0 × 10^9"), (400.0, "1.0 × 10^400"), (-3.5, "3.2 × 10^-4"),
    (math.inf, "∞"), (-math.inf, "0"),
])
def test_format_lr(log10_lr, text):
    assert format_lr(log10_lr) == text


# ---------------------------------------------------------------- calibration


def _llr_records(rng: np.random.Generator, n: int) -> list:
    from facellm.tasks.base import PairLLRs, Record

    labels = rng.integers(0, 2, n)
    out = []
    for i, y in enumerate(labels):
        llr = float(rng.normal(1.5 if y else -1.5, 1.0))
        out.append(Record(f"pair-{i}", "verification", "score", "", "", bool(y), None, False, 0.0,
                          {"fr_score": None, "explanation": ""}, llrs=PairLLRs(llr / 2, llr, llr / 2)))
    return out


def test_calibrators_json_reproduces_what_eval_calibrated(tmp_path):
    """The calibrators.json eval writes reproduces its own calibrated test LLRs, and names what
    each was fitted on; a system's recorded adapter is the model name it goes by."""
    from facellm import calibrators
    from facellm.evaluation import fusion_metrics, lr_systems

    rng = np.random.default_rng(0)
    test, cal = _llr_records(rng, 40), _llr_records(rng, 60)
    for r in (*test, *cal):
        r.values["fr_score"] = float(rng.uniform(0.4, 0.8))
    systems = lr_systems(test, cal, None)
    metrics = {"base": {"adapter": None, "lr": {"score": systems}, "fusion": {"score": fusion_metrics(systems)}},
               "lora": {"adapter": "facellm-lora", "merged": True, "lr": {"images_only": systems}, "fusion": {}}}
    path = calibrators.write(tmp_path / "calibrators.json", calibrators.artifact(metrics, "data/x", "validation"))
    loaded = calibrators.load(path)
    assert set(loaded.calibrations) == {("base", "score"), ("facellm-lora", "images_only")}
    calibration = loaded.calibrations["facellm-lora", "images_only"]
    assert [calibration.apply(r.llrs.answer) for r in test] == pytest.approx(
        systems["answer"].calibrated["logistic"].tolist())
    assert "validation" in calibration.source and str(path) in calibration.source
    assert set(loaded.fusions) == {("base", "score")}
    saved = json.loads(path.read_text())["systems"]["lora"]
    assert saved["merged"] is True
    assert saved["calibrations"]["images_only"]["answer"]["n"] == 60
    assert saved["calibrations"]["images_only"]["answer"]["n_mated"] == sum(r.label for r in cal)
    assert set(saved["calibrations"]["images_only"]) == {"verdict", "answer", "explanation", "fr_score"}


def test_a_report_or_a_file_without_calibrations_is_refused_with_what_to_give(tmp_path):
    from facellm import calibrators

    report = tmp_path / "metrics.json"
    report.write_text(json.dumps({"base": {"tasks": {}, "lr": {"images_only": {"answer": {"cllr_min": 0.5}}}}}))
    with pytest.raises(ValueError, match="metrics.json is its report, the calibrators are .*calibrators.json"):
        calibrators.load(report)
    empty = calibrators.write(tmp_path / "calibrators.json", calibrators.artifact({}, "data/x", "validation"))
    with pytest.raises(ValueError, match="no calibration of the answer LLR"):
        calibrators.load(empty)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="bad.json: not JSON"):
        calibrators.load(tmp_path / "bad.json")


# ---------------------------------------------------------------- on the tiny model


@pytest.fixture(scope="module")
def hf_backend(tiny_model_dir, tiny_adapters):
    from facellm.inference.hf import HFBackend

    backend = HFBackend(tiny_model_dir, tiny_adapters)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def pair():
    """Two SynthFace images of different identities, rendered as the data config renders them
    (160 px, photo-like pose; YuNet finds both drawn faces)."""
    from facellm.synthface import iter_synthface_records

    records = list(itertools.islice(iter_synthface_records("test", 500, 2, seed=0, size=160), 4))
    return records[0], records[2]


def _eval_record(backend, conversation, adapter, max_tokens):
    """What `facellm eval` computes for one dataset row: generate, score_row, add_model_llrs."""
    from facellm.data.build import conversation_row
    from facellm.evaluation import add_model_llrs, generate, score_row

    row = conversation_row(conversation, conversation.images, {})
    [text] = generate(backend, [row], adapter, max_tokens)
    record = score_row(row, text)
    add_model_llrs(backend, [row], [record], adapter)
    return record


@pytest.mark.parametrize("adapter", [None, "lora_a"])
def test_verify_matches_eval(hf_backend, pair, adapter):
    from facellm.assistant import FaceAssistant
    from facellm.schema import FacePair
    from facellm.tasks.verification import VerificationTask

    first, second = pair
    result = FaceAssistant(hf_backend, max_tokens=48).verify(first.image, second.image, adapter=adapter)
    assert result.verdict in (None, "Match", "Non-Match", "Uncertain")
    assert result.llr is not None and math.isfinite(result.llr)
    assert not result.calibrated and result.log10_lr == result.llr
    assert result.verbal == verbal_scale(result.llr)
    assert result.fr_score is not None and 0 <= result.fr_score <= 1
    assert "Uncalibrated" in result.calibration_note and "uncalibrated" in result.markdown()

    # the same pair as an eval dataset row (whose images the build aligned) with the prompt the assistant used
    aligned, _ = FaceAssistant(hf_backend).prepare([first.image, second.image])
    sample = FacePair("synthface/test/demo", "synthface", "test", dataclasses.replace(first, image=aligned[0]),
                      dataclasses.replace(second, image=aligned[1]), same=False)
    [conversation] = VerificationTask().conversations(sample, random.Random(0), ("images_only",))
    record = _eval_record(hf_backend, dataclasses.replace(conversation, prompt=result.prompt), adapter, 48)
    assert result.reply == record.response
    assert result.verdict == record.prediction
    assert result.explanation == record.values["explanation"]
    assert result.llr == pytest.approx(record.llrs.answer, abs=1e-9)


def test_verify_calibrates_and_uses_the_score_variant(hf_backend, pair):
    from facellm.assistant import Calibration, FaceAssistant

    calibration = Calibration(0.5, -0.25, "test")
    assistant = FaceAssistant(hf_backend, {("lora_a", "score"): calibration}, max_tokens=16)
    result = assistant.verify(pair[0].image, pair[1].image, adapter="lora_a", variant="score")
    assert result.variant == "score"
    assert f'[Model Scores]\n{{"FR": [{round(result.fr_score, 2)}]}}' in result.prompt
    assert result.calibration == calibration and result.calibrated
    assert result.log10_lr == pytest.approx(0.5 * result.llr - 0.25)
    assert result.verbal == verbal_scale(result.log10_lr)
    assert "(calibrated)" in result.markdown()
    # the base model has no calibration in this table: reported raw, and the panel says why
    base = assistant.verify(pair[0].image, pair[1].image, adapter=None, variant="score")
    assert not base.calibrated and "none for model 'base'" in base.calibration_note


def test_no_face_falls_back_to_images_only_and_says_so(hf_backend, pair):
    from PIL import Image

    from facellm.assistant import FaceAssistant

    assistant = FaceAssistant(hf_backend, max_tokens=8)
    blank = Image.new("RGB", (112, 112), (200, 200, 200))
    assert assistant.face_warnings([pair[0].image, blank]) == [
        "No face found in image 2 of 2: the model sees it unaligned, and its answer may not be about a face."]
    result = assistant.verify(pair[0].image, blank, variant="score")
    assert result.variant == "images_only" and "[Model Scores]" not in result.prompt
    assert result.fr_score is None and result.fr_note.startswith("FR score unavailable: no face found in the second")
    assert "FR score unavailable" in result.markdown()


def test_ask_streams_the_greedy_reply(hf_backend, pair):
    from facellm.assistant import FaceAssistant
    from facellm.inference.base import ChatRequest

    pieces = list(FaceAssistant(hf_backend, max_tokens=24).ask([pair[0].image], "Is the person smiling?", "lora_a"))
    assert pieces and all(later.startswith(earlier) for earlier, later in itertools.pairwise(pieces))
    [reply] = hf_backend.chat([ChatRequest([pair[0].image], "Is the person smiling?", 24, adapter="lora_a")])
    assert pieces[-1] == reply.text


def test_examples_are_detected_faces_with_task_prompts(tmp_path):
    from facellm.assistant import synthface_examples
    from facellm.fr import get_analyzer
    from facellm.images import load_image
    from facellm.tasks import verification

    examples = synthface_examples(tmp_path)
    assert [len(e.files) for e in examples] == [1, 1, 2, 2]
    same, different = examples[2].files, examples[3].files
    identity = lambda path: path.rsplit("_", 1)[0]  # noqa: E731  synthface_<identity>_<k>.png
    assert identity(same[0]) == identity(same[1]) and identity(different[0]) != identity(different[1])
    assert examples[2].question == verification.PROMPTS[0]
    for path in {f for e in examples for f in e.files}:
        assert get_analyzer().detect(load_image(path)), f"YuNet finds no face in the demo example {path}"


def test_the_model_sees_aligned_crops_as_in_training(hf_backend):
    """Uploads go through the same alignment as the dataset build: a posed 160 px SynthFace
    render reaches the model as the 112 px crop the build would store."""
    from facellm.align import AlignSpec, align_face
    from facellm.assistant import FaceAssistant
    from facellm.synthface import synthface_records

    a, b = synthface_records("test", 20, 2, seed=0, size=160)[:2]
    assistant = FaceAssistant(hf_backend, max_tokens=8)
    seen, warnings = assistant.prepare([a.image])
    assert warnings == [] and seen[0].size == (112, 112)
    assert seen[0].tobytes() == align_face(a.image, AlignSpec())[0].tobytes()
    query = assistant.verification_query(a.image, b.image)
    assert [im.size for im in query.images] == [(112, 112), (112, 112)]


# ---------------------------------------------------------------- drawn faces only, conflicting evidence


def _result(log10_lr: float | None, fr_score: float | None):
    from facellm.assistant import VerificationResult

    return VerificationResult(verdict="Match", explanation="", reply="", prompt="", variant="score", llr=log10_lr,
                              log10_lr=log10_lr, verbal=None if log10_lr is None else verbal_scale(log10_lr),
                              fr_score=fr_score, fr_note="SFace similarity", calibration=None, calibration_note="")


@pytest.mark.parametrize(("log10_lr", "fr_score", "conflict"), [
    (1.5, 0.40, "supports the same person, while the FR score 0.400 is below"),
    (-2.0, 0.90, "supports different persons, while the FR score 0.900 is at or above"),
    (1.5, 0.90, None), (-2.0, 0.40, None), (0.0, 0.40, None), (None, 0.40, None), (1.5, None, None),
])
def test_conflict_when_lr_and_fr_score_point_apart(log10_lr, fr_score, conflict):
    from facellm.assistant import SFACE_MATCH_SIMILARITY

    result = _result(log10_lr, fr_score)
    if conflict is None:
        assert result.conflict is None and "Conflicting evidence" not in result.markdown()
    else:
        assert conflict in result.conflict and f"{SFACE_MATCH_SIMILARITY:.3f}" in result.conflict
        panel = result.markdown()
        assert "**⚠ Conflicting evidence.**" in panel
        assert panel.index("Conflicting evidence") < panel.index("**Verdict:**")  # on top of the panel


def test_sface_threshold_boundary_supports_the_same_person():
    from facellm.assistant import SFACE_MATCH_SIMILARITY

    assert SFACE_MATCH_SIMILARITY == pytest.approx(0.6815)
    assert _result(-1.0, SFACE_MATCH_SIMILARITY).conflict is not None
    assert _result(1.0, SFACE_MATCH_SIMILARITY).conflict is None


def test_drawn_faces_only_detects_the_offline_default_and_its_adapters(tiny_model_dir, tiny_adapters, tmp_path):
    from facellm.assistant import drawn_faces_note, drawn_faces_only
    from facellm.models.shipped import SHIPPED_ADAPTER, SHIPPED_BASE

    other = tmp_path / "photo_model"
    other.mkdir()
    (other / "config.json").write_text("{}")
    adapter_on_other = tmp_path / "adapter_on_other"
    adapter_on_other.mkdir()
    (adapter_on_other / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(other)}))
    for model in ("facellm_tiny", SHIPPED_BASE, SHIPPED_ADAPTER, tiny_model_dir, tiny_adapters["lora_a"]):
        assert drawn_faces_only(model), model
    for model in ("qwen2_vl_2b", "Qwen/Qwen2-VL-2B-Instruct", other, adapter_on_other, tmp_path / "missing"):
        assert not drawn_faces_only(model), model
    note = drawn_faces_note("facellm_tiny", {"facellm-lora": str(SHIPPED_ADAPTER)})
    assert note.startswith("Trained on drawn faces only: model `facellm_tiny`, adapter `facellm-lora`")
    assert drawn_faces_note(str(other), {"x": str(adapter_on_other)}) is None
    assert "adapter `lora_a`" in drawn_faces_note(str(other), tiny_adapters)
