"""Tasks declare their per-sample scores and metrics; evaluation, the report and the chat's
answer line iterate over what they declare. A task defined here, in one place, and given a
registry key goes through score_row -> task_metrics -> the report's table and the chat's
parsed-answer line with nothing else changed."""

from __future__ import annotations

import json
import random
import re

import pytest
from PIL import Image

from facellm import registry
from facellm.assistant import parse_answer
from facellm.evaluation import RecordLog, score_row, task_metrics
from facellm.report import evaluation_blocks, to_markdown
from facellm.schema import FaceRecord
from facellm.tasks.base import (
    Aggregation,
    Conversation,
    PairLLRs,
    Record,
    Scored,
    SelfCheck,
    Task,
    TaskDefaults,
    accuracy,
)


class SmileTask(TaskDefaults):
    """Is the face smiling? Scored by exact match; declares its own metric, `smile_rate`."""

    name = "smile"
    variants = ("plain",)
    report_metrics = ("accuracy", "smile_rate")
    PROMPT = "Is this face smiling?"

    def applies_to(self, sample):
        return isinstance(sample, FaceRecord) and "smiling" in sample.attributes

    def conversations(self, sample, rng, variants=None):
        label = "smiling" if sample.attributes["smiling"] else "not smiling"
        return [Conversation(sample.id, self.name, "plain", self.PROMPT, label, [sample.image], {"label": label})]

    def parse(self, response, conversation):
        match = re.search(r"not smiling|smiling", response.lower())
        return match.group() if match else None

    def score(self, parsed, conversation):
        label = conversation.extras["label"]
        return Scored(label, parsed, parsed == label, float(parsed == label))

    def aggregations(self) -> dict[str, Aggregation]:
        return {"accuracy": accuracy, "smile_rate": lambda rs: sum(r.prediction == "smiling" for r in rs) / len(rs)}

    def prompt_variant(self, prompt):
        return "plain" if prompt == self.PROMPT else None


def test_every_registered_task_follows_the_protocol():
    for name, cls in registry.TASKS.items():
        task = cls()
        assert isinstance(task, Task), name
        assert set(task.report_metrics) <= set(task.aggregations()), name  # the table shows what is computed
        for variant in task.variants:
            assert task.metric_group(variant).split("/")[0] == name


def test_a_new_task_goes_through_evaluation_and_report(monkeypatch, tmp_path):
    monkeypatch.setitem(registry.TASKS, "smile", SmileTask)
    faces = [FaceRecord(f"t/test/{i}", "t", "test", Image.new("RGB", (16, 16)), str(i), {"smiling": i % 2 == 0})
             for i in range(4)]
    replies = ["It is smiling.", "smiling", "smiling", "no idea"]  # right, wrong, right, unparsed
    records = [score_row(_row_of(SmileTask().conversations(f, random.Random(0))[0]), text, system="base", split="test") for f, text in zip(faces, replies)]
    assert [r.correct for r in records] == [True, False, True, False]
    metrics = task_metrics(records)
    # labels smiling / not smiling twice each: one constant answer is right on half (added by evaluation)
    assert metrics == {"smile": {"n": 4, "accuracy": 0.5, "smile_rate": 0.75, "constant_accuracy": 0.5}}
    report = to_markdown(evaluation_blocks({"base": {"tasks": metrics, "lr": {}}}, tmp_path))
    assert re.search(r"\| smile \| smile_rate \| 0\.75", report), report
    assert re.search(r"\| smile \| constant_accuracy \| 0\.5", report), report
    assert parse_answer(SmileTask.PROMPT, "Yes, smiling.") == "smile: smiling"


def test_records_round_trip_through_their_log(tmp_path):
    record = Record("p#verification#score", "verification", "score", "Match Verdict: Match", "Match Verdict: Match",
                    True, "Match", True, 1.0, {"explanation": "", "claims": {"supported": 1}}, system="lora",
                    split="test", llrs=PairLLRs(0.5, 1.5, 1.0),
                    self_check=SelfCheck(1, 0, 0, {"both": 0, "self_only": 0, "truth_only": 0, "neither": 1}, 0))
    RecordLog(tmp_path / "r.jsonl").append([record])
    back = Record.from_json(RecordLog(tmp_path / "r.jsonl").done[record.id])
    assert back == record and isinstance(back.llrs, PairLLRs) and isinstance(back.self_check, SelfCheck)
    old = {**record.to_json(), "llr_answer": 1.5}  # the format before records were dataclasses
    with pytest.raises(ValueError, match=r"fields \['llr_answer'\].*--overwrite"):
        Record.from_json(json.loads(json.dumps(old)))


@pytest.mark.parametrize("prompt, reply, expected", [
    ("What facial expression does this person show? Give a short reason, then one of: neutral, happy, sad, "
     "surprise, fear, disgust, anger.", "Reason: a smile.\nExpression: happy", "expression: happy"),
    ("List the facial attributes of this person.", "eyeglasses: yes\nbeard: no", "attributes: eyeglasses yes, beard no"),
    ("Does the person wear eyeglasses? Answer yes or no.", "Yes", "attributes: yes"),
    ("How old does this person look? Answer with a number of years.", "Age: 34", "age: 34.0"),
    ("Is this person male or female?", "Gender: female", "gender: female"),
    ("Describe this face.", "A face.", None),
])
def test_the_chat_reads_answers_with_the_task_whose_prompt_it_is(prompt, reply, expected):
    from facellm.attributes import BINARY_ATTRIBUTES

    if "eyeglasses? Answer" in prompt:  # the yes/no prompt as the task writes it
        prompt = f"{BINARY_ATTRIBUTES['eyeglasses'].question} Answer yes or no."
    assert parse_answer(prompt, reply) == expected


def test_attribute_metrics_per_variant_by_hand():
    from facellm.tasks import AttributeTask

    truth = {"eyeglasses": True, "beard": False, "smiling": True}
    face = FaceRecord("t/test/0", "t", "test", Image.new("RGB", (16, 16)), "0", truth)
    task = AttributeTask(questions_per_sample=2)
    yesno = task.conversations(face, random.Random(1), ("yesno",))
    [describe] = task.conversations(face, random.Random(1), ("describe",))
    rows = [_row_of(c) for c in (*yesno, describe)]
    replies = ["Yes" if yesno[0].extras["label"] else "No", "maybe",  # right, unparsed
               "eyeglasses: yes\nbeard: yes"]  # 1 of 3 right, smiling missing
    records = [score_row(row, text) for row, text in zip(rows, replies)]
    assert [r.score for r in records] == [1.0, 0.0, pytest.approx(1 / 3)]
    metrics = task_metrics(records)
    assert set(metrics) == {"attributes/yesno", "attributes/describe"}  # yesno0 and yesno1 pool
    asked = [c.extras["attribute"] for c in yesno]
    if asked[0] == asked[1]:
        assert metrics["attributes/yesno"]["mean_accuracy"] == 0.5
    else:
        assert metrics["attributes/yesno"]["mean_accuracy"] == 0.5 and metrics["attributes/yesno"]["per_attribute"] == {
            asked[0]: 1.0, asked[1]: 0.0}
    assert metrics["attributes/yesno"]["parse_rate"] == 0.5
    assert metrics["attributes/describe"]["per_attribute"] == {"beard": 0.0, "eyeglasses": 1.0, "smiling": 0.0}
    assert metrics["attributes/describe"]["mean_accuracy"] == pytest.approx(1 / 3)
    assert metrics["attributes/describe"]["exact_match"] == 0.0


def test_constant_answer_baselines_by_hand():
    from facellm.tasks.attributes import constant_mean_accuracy
    from facellm.tasks.base import Record, constant_accuracy

    def rec(label, attribute=None):
        return Record("t/0", "attributes", "yesno", "", "", label, None, False, 0.0,
                      {"attribute": attribute} if attribute else {})

    assert constant_accuracy([rec("happy"), rec("sad"), rec("happy"), rec("fear")]) == 0.5
    # yes/no: "Yes" scores beard 2/3 and hat 0 (mean 1/3), "No" 1/3 and 1 (mean 2/3)
    assert constant_mean_accuracy([rec(True, "beard"), rec(True, "beard"), rec(False, "beard"),
                                   rec(False, "wearing_hat")]) == pytest.approx(2 / 3)
    # describe: one list for every face, right on each attribute's commoner value
    assert constant_mean_accuracy([rec({"beard": True, "bangs": False}), rec({"beard": True, "bangs": True}),
                                   rec({"beard": True, "bangs": False}), rec({"beard": False, "bangs": False})]
                                  ) == pytest.approx(0.75)


def _row_of(conv):
    from facellm.data.build import conversation_row

    return conversation_row(conv, conv.images, {})
