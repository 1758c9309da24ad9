"""Multiple-choice benchmarks: the answer parser, both benchmarks' item files, the SynthFace set
against its ground truth, likelihood scoring against a hand computation on the tiny model,
the report, and `facellm eval mc` end to end on the tiny model with the transformers backend."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facellm.attributes import BINARY_ATTRIBUTES
from facellm.multiple_choice import (
    MCFormatError,
    MCItem,
    load_items,
    mc_metrics,
    mc_prompt,
    option_logliks,
    parse_choice,
    score_items,
)
from facellm.multiple_choice.synthface import (
    AGE_RANGES,
    SAME,
    synthface_mc_items,
    write_facexbench,
)

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ["smiling", "not smiling", "Rosy_Cheeks", "9"]


# ---------------------------------------------------------------- parse_choice


@pytest.mark.parametrize("response, letter", [
    ("B", "B"), ("(B)", "B"), ("B.", "B"), ("b", "B"), ("  C) Rosy_Cheeks", "C"), ("D: 9", "D"),  # bare letters
    ("The answer is C because the cheeks are red.", "C"), ("Answer: (D)", "D"), ("I choose option B.", "B"),
    ("I'd say D.", "D"),                                                                          # in prose
    ("smiling", "A"), ("The person is not smiling.", "B"), ("rosy cheeks", "C"), ("There are 9.", "D"),  # option text
    ("A smiling face.", "A"),  # "A" the article; "smiling" the option
])
def test_parse_choice_finds_the_letter(response, letter):
    assert parse_choice(response, OPTIONS) == letter


@pytest.mark.parametrize("response", ["", "I cannot tell.", "A or B", "Either B or C.", "E", "The answer is E.",
                                      "It is a face."])
def test_parse_choice_without_an_answer_is_none(response):
    assert parse_choice(response, OPTIONS) is None


# ---------------------------------------------------------------- item files


def _image(folder: Path, name: str) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 24), (200, 120, 90)).save(path)
    return name


FACEXBENCH_QUESTION = {"image_paths": ["images/q_1.png"], "question_text": "How many attributes are present?",
                       "options": [8, 9, 10, 11], "correct_answer_option": "B", "answer": "9"}


def facexbench_file(folder: Path) -> Path:
    _image(folder, "images/q_1.png")
    _image(folder, "images/q_2a.png")
    _image(folder, "images/q_2b.png")
    doc = {"category": "face_recognition", "sub-category": "hr_fr", "dataset": "lfw", "num_images": "multiple",
           "prepend_text": "", "postpend_text": "Please answer with the option letter.",
           "questions": {"1": FACEXBENCH_QUESTION,
                         "2": {"image_paths": ["images/q_2a.png", "images/q_2b.png"],
                               "question_text": "Are these the same person?", "options": ["Yes", "No", "Maybe", "Twins"],
                               "correct_answer_option": "A", "answer": "Yes"}}}
    path = folder / "lfw_multiple_mcq.json"
    path.write_text(json.dumps(doc))
    return path


def fhb_entry(task: str, options: list[str], answer: int) -> dict:
    return {"type": task, "QA": {"question": "What is the facial expression?", "options": options, "answer": answer},
            "image": {"image_paths": {"original": "eval_data/o.png", "cropped": "eval_data/c.png"}}}


def test_facexbench_file(tmp_path):
    one, two = load_items(facexbench_file(tmp_path))
    assert one == MCItem(id="lfw_multiple_mcq/1", images=[str(tmp_path / "images/q_1.png")],
                         question="How many attributes are present?", options=["8", "9", "10", "11"], answer="B",
                         category="face_recognition/hr_fr", instruction="Please answer with the option letter.",
                         meta={"dataset": "lfw", "answer": "9"})
    assert two.answer_text == "Yes" and len(two.images) == 2
    assert mc_prompt(one) == ("How many attributes are present?\n(A) 8\n(B) 9\n(C) 10\n(D) 11\n"
                              "Please answer with the option letter.")


@pytest.mark.parametrize("layout", ["list", "jsonl"])
def test_facexbench_items_as_a_list_or_jsonl(tmp_path, layout):
    _image(tmp_path, "images/q_1.png")
    items = [{**FACEXBENCH_QUESTION, "category": "attributes_expression", "sub-category": "attributes", "id": f"q{i}"}
             for i in range(3)]
    path = tmp_path / f"items.{'json' if layout == 'list' else 'jsonl'}"
    path.write_text(json.dumps(items) if layout == "list" else "\n".join(map(json.dumps, items)) + "\n")
    loaded = load_items(path)
    assert [i.id for i in loaded] == ["q0", "q1", "q2"]
    assert {(i.answer, i.answer_text, i.category) for i in loaded} == {("B", "9", "attributes_expression/attributes")}


def test_face_human_bench_file_rotates_options_deterministically(tmp_path):
    entries = [fhb_entry("face_expression_basic", ["Fear", "Disgust", "Happiness", "Sadness"], 0) for _ in range(12)]
    entries.append(fhb_entry("face_recognition_cross_age", ["yes", "no"], 1))
    path = tmp_path / "face_expression_basic.json"
    path.write_text(json.dumps({"data": entries}))
    items = load_items(path, image_root="/data/fhb", seed=3)
    assert all(i.answer_text == "Fear" for i in items[:12])
    assert sorted(items[0].options) == sorted(["Fear", "Disgust", "Happiness", "Sadness"])
    assert len({i.answer for i in items[:12]}) > 1  # the released files put every answer first
    assert items[0].id == "face_expression_basic/0/cropped" and items[0].images == ["/data/fhb/eval_data/c.png"]
    assert items[0].category == "face/expression/basic"
    assert items[12].answer_text == "no" and items[12].category == "face/recognition/cross_age"
    assert [i.options for i in load_items(path, image_root="/data/fhb", seed=3)] == [i.options for i in items]
    assert load_items(path, image_version="original")[0].images == [str(tmp_path / "eval_data/o.png")]


def test_a_folder_of_both_benchmarks(tmp_path):
    facexbench_file(tmp_path)
    (tmp_path / "fhb.jsonl").write_text(json.dumps(fhb_entry("face_age_basic_5", ["20-24", "25-29"], 0)) + "\n")
    items = load_items(tmp_path)
    assert [i.category for i in items] == ["face/age/basic_5", "face_recognition/hr_fr", "face_recognition/hr_fr"]


@pytest.mark.parametrize("content, where", [
    (('{"questions": {"1": {"question_text": "q", "options": ["a", "b"], "correct_answer_option": "C", '
      '"image_paths": ["x.png"]}}}'), "question '1': bad/1: answer 'C' is not one of A, B"),
    (('{"data": [{"QA": {"question": "q", "options": ["a", "b"], "answer": 0}, "image": {"image_paths": {}}}, '
      '{"QA": {"question": "q", "options": ["a", "b"]}, "image": {}}]}'), "item 0: no image of version None"),
    (('[{"question_text": "q", "options": ["a", "b"], "correct_answer_option": "A", "image_paths": ["x.png"]}, '
      '{"question_text": "q", "correct_answer_option": "A", "image_paths": ["x.png"]}]'), "item 1: missing key 'options'"),
    (('{"QA": {"question": "q", "options": ["a", "b"], "answer": 0}, "image": {"image_paths": "x.png"}}\n'
      '{"QA": {"question": "q", "options": ["a", "b"], "answer": 5}, "image": {"image_paths": "x.png"}}\n'),
     "line 2: answer 5 is outside the 2 options"),
    ('{"question": "q"}\n{"x": 1}\n', "line 1: neither a FaceXBench question"),
    ('{"QA": {}}\nnot json\n', "line 2: not JSON"),
])
def test_a_bad_item_names_the_file_and_the_item(tmp_path, content, where):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(MCFormatError, match=f"^{path}: {where}"):
        load_items(path)


# ---------------------------------------------------------------- the SynthFace set


@pytest.fixture(scope="module")
def synthface_set():
    return synthface_mc_items(n_per_category=6, seed=0)


def test_synthface_set_is_deterministic(synthface_set):
    again = synthface_mc_items(n_per_category=6, seed=0)
    assert [(i.id, i.options, i.answer) for i in again] == [(i.id, i.options, i.answer) for i in synthface_set]
    assert all(a.tobytes() == b.tobytes() for x, y in zip(again, synthface_set) for a, b in zip(x.images, y.images))
    other = synthface_mc_items(n_per_category=6, seed=1)
    assert [i.options for i in other] != [i.options for i in synthface_set]


def test_synthface_answers_match_the_ground_truth(synthface_set):
    from facellm.synthface import synthface_records

    truth = {r.id: r for r in synthface_records("test", 60, 2, 0, 160)}  # what the builder renders for 6 per category
    nouns = {a.noun: key for key, a in BINARY_ATTRIBUTES.items()}
    counts = {c: 0 for c in ("attributes", "expression", "age", "verification")}
    for item in synthface_set:
        category = item.category.split("/")[1]
        counts[category] += 1
        records = [truth[i] for i in item.meta["source"]["ids"]]
        assert len(item.options) == 4 and len(set(item.options)) == 4 and len(item.images) == len(records)
        if category == "attributes":
            present = {o: records[0].attributes[nouns[o]] for o in item.options}
            asks_absent = "NOT" in item.question
            assert [o for o, v in present.items() if v != asks_absent] == [item.answer_text]
        elif category == "expression":
            assert item.answer_text == records[0].expression
        elif category == "age":
            assert item.answer_text == AGE_RANGES[records[0].attributes["age_group"]]
        else:
            assert (item.answer_text == SAME) == (records[0].identity == records[1].identity)
    assert counts == {"attributes": 6, "expression": 6, "age": 6, "verification": 6}
    assert len({i.answer for i in synthface_set}) == 4  # the shuffle moves the answer around


def test_synthface_set_reads_back_through_the_facexbench_loader(synthface_set, tmp_path):
    write_facexbench(synthface_set, tmp_path)
    back = {i.id: i for i in load_items(tmp_path)}
    assert len(back) == len(synthface_set)
    for item in synthface_set:
        got = back[item.id]
        assert (got.question, got.options, got.answer, got.category, got.instruction) == \
               (item.question, item.options, item.answer, item.category, item.instruction)
        assert [np.asarray(Image.open(p)).tobytes() for p in got.images] == [im.tobytes() for im in item.images]


# ---------------------------------------------------------------- likelihood on the tiny model


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    from facellm.inference.hf import HFBackend

    return HFBackend(tiny_model_dir)


def _hand_logliks(backend, item: MCItem) -> list[float]:
    """Sum of the log-softmax of each option's tokens at the end of the whole sequence, with the
    model called directly (no ScoredSpan, no logits_to_keep)."""
    import torch

    from facellm.inference.base import chat_prompt

    processor, images, prompt = backend.processor, item.images, mc_prompt(item)
    tokens = lambda text: processor.tokenizer(text, add_special_tokens=False)["input_ids"]
    out = []
    for option in item.options:
        text = chat_prompt(processor, len(images), prompt, option, open_end=True)
        n_option = len(tokens(text)) - len(tokens(chat_prompt(processor, len(images), prompt)))
        inputs = processor(text=[text], images=images, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            logprobs = torch.log_softmax(backend.model(**inputs).logits[0].double(), dim=-1)
        ids = inputs["input_ids"][0]
        out.append(sum(float(logprobs[t - 1, ids[t]]) for t in range(len(ids) - n_option, len(ids))))
    return out


def test_likelihood_scores_match_a_hand_computation(backend):
    face = Image.fromarray(np.random.default_rng(0).integers(0, 256, (56, 56, 3), dtype=np.uint8))
    item = MCItem("hand/1", [face], "What is the facial expression?", ["happy", "sad", "surprise", "neutral face"],
                  "C", "test")
    [got] = option_logliks(backend, [item], progress=False)
    hand = _hand_logliks(backend, item)
    assert got["logliks"] == pytest.approx(hand, abs=1e-4)
    assert got["bytes"] == [5, 3, 8, 12]
    assert got["choice_acc"] == "ABCD"[int(np.argmax(hand))]
    assert got["choice_acc_norm"] == "ABCD"[int(np.argmax(np.array(hand) / [5, 3, 8, 12]))]


def test_letter_continuations_make_acc_norm_acc(backend, synthface_set):
    records = score_items(backend, synthface_set[:3], ways=["likelihood"], continuation="letter", progress=False)
    assert all(r["bytes"] == [1, 1, 1, 1] and r["choice_acc"] == r["choice_acc_norm"] for r in records)
    assert all(math.isfinite(x) and x < 0 for r in records for x in r["logliks"])


# ---------------------------------------------------------------- the report


def test_metrics_of_hand_written_records():
    def rec(category, answer, generated, acc, acc_norm):
        return {"id": f"{category}{answer}{generated}", "category": category, "answer": answer,
                "choice_generate": generated, "unparsed": generated is None, "choice_acc": acc,
                "choice_acc_norm": acc_norm,
                "correct": {"generate": generated == answer, "acc": acc == answer, "acc_norm": acc_norm == answer}}

    records = [rec("face/age/basic_5", "A", "A", "A", "B"), rec("face/age/basic_5", "B", None, "A", "B"),
               rec("face/expression/basic", "C", "A", "C", "C"), rec("synthface/age", "A", "B", "A", "A")]
    m = mc_metrics(records)
    assert m["accuracy"] == pytest.approx({"generate": 0.25, "acc": 0.75, "acc_norm": 0.75})
    assert m["per_category"]["face/age/basic_5"] == pytest.approx({"n": 2, "generate": 0.5, "acc": 0.5, "acc_norm": 0.5})
    assert m["per_level"]["face"]["n"] == 3 and m["per_level"]["face/age"]["acc"] == pytest.approx(0.5)
    assert m["unparsed_rate"] == pytest.approx(0.25)
    assert m["answer_share"] == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.25})
    assert m["choice_share"]["generate"] == pytest.approx({"A": 0.5, "B": 0.25, "C": 0.0})  # one unparsed
    assert m["choice_share"]["acc"] == pytest.approx({"A": 0.75, "B": 0.0, "C": 0.25})
    assert m["accuracy_by_answer"]["acc_norm"] == pytest.approx({"A": 0.5, "B": 1.0, "C": 1.0})
    only_a = mc_metrics(records[:1])  # a letter chosen but never the answer has no accuracy
    assert only_a["answer_share"] == {"A": 1.0, "B": 0.0} and math.isnan(only_a["accuracy_by_answer"]["acc_norm"]["B"])
    assert mc_metrics([]) == {"n": 0, "ways": [], "accuracy": {}, "per_category": {}, "per_level": {},
                              "answer_share": {}, "choice_share": {}, "accuracy_by_answer": {}}


# ---------------------------------------------------------------- facellm eval mc, end to end


def facellm_eval_mc(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facellm.cli", "eval", "mc", "--config",
                           "eval/configs/synthface_mc.yaml", *overrides],
                          cwd=ROOT, text=True, capture_output=True, timeout=900, check=False)


def test_eval_mc_on_the_tiny_model(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    proc = facellm_eval_mc(f"items={tmp_path / 'items'}", f"output_dir={out}", f"model={tiny_model_dir}",
                           "backend=hf", "adapters={}", "systems={base: null}", "synthface.n_per_category=2",
                           "max_tokens=4", "batch_size=4")
    assert proc.returncode == 0, proc.stderr
    assert "base (8 items): generate" in proc.stdout and "acc_norm" in proc.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    base = metrics["systems"]["base"]
    assert base["n"] == 8 and set(base["accuracy"]) == {"generate", "acc", "acc_norm"}
    assert set(base["per_category"]) == {f"synthface/{c}" for c in ("attributes", "expression", "age", "verification")}
    assert sum(base["answer_share"].values()) == pytest.approx(1.0)
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and all(len(s["logliks"]) == 4 and "response" in s for s in samples)
    assert "| overall | 8 |" in (out / "report.md").read_text()


def test_eval_mc_bad_item_is_one_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question_text": "q", "options": ["a", "b"], "correct_answer_option": "A", "image_paths": ["x.png"]}\n'
                   '{"question_text": "q", "options": ["a", "b"], "correct_answer_option": "Z", "image_paths": ["x.png"]}\n')
    proc = facellm_eval_mc(f"items={bad}", f"output_dir={tmp_path / 'out'}", "synthface=null", "backend=hf",
                           "adapters={}", "systems={base: null}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {bad}: line 2: bad/2: answer 'Z' is not one of A, B"
