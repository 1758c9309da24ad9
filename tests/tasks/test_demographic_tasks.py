"""Age group and gender tasks: targets from FairFace / UTKFace labels, never SynthFace, never race."""

import random

import pytest

from facellm import registry, synthface
from facellm.data.fairface import fairface_records
from facellm.data.utkface import utkface_records
from facellm.evaluation import score_row, task_metrics
from facellm.tasks import AgeGroupTask, GenderTask, demographics
from facellm.tasks.base import Conversation
from facellm.tasks.demographics import (
    AGE_GROUPS,
    age_group_of_years,
    parse_age_group,
    parse_gender,
)
from tests.data import fixtures as fx

FAIRFACE_GROUP = {"more than 70": "70+"}


@pytest.fixture
def utk(tmp_path):
    return {r.id.split("/", 1)[1]: r for r in utkface_records(fx.write_utkface(tmp_path / "utk"))}


@pytest.fixture
def fair(tmp_path):
    return {r.id.split("/", 1)[1]: r for r in fairface_records(fx.write_fairface(tmp_path / "fair"))}


def targets(task, records):
    return {k: c.target for k, r in records.items() for c in task.conversations(r, random.Random(0))}


def test_utkface_targets(utk):
    expect_group = {"26": "20-29", "1": "0-2", "45": "40-49", "80": "70+", "33": "30-39"}
    assert targets(AgeGroupTask(), utk) == {n: f"Age group: {expect_group[n.split('_')[0]]}" for n in fx.UTKFACE_GOOD}
    assert targets(GenderTask(), utk) == {n: f"Gender: {g}" for n, (_, g, _) in fx.UTKFACE_GOOD.items()}


def test_fairface_targets(fair):
    rows = {f: (a, g) for f, a, g, _, _ in fx.FAIRFACE_TRAIN + fx.FAIRFACE_VAL}
    assert targets(AgeGroupTask(), fair) == {f: f"Age group: {FAIRFACE_GROUP.get(a, a)}" for f, (a, _) in rows.items()}
    assert targets(GenderTask(), fair) == {f: f"Gender: {g.lower()}" for f, (_, g) in rows.items()}


@pytest.mark.parametrize("task", [AgeGroupTask(), GenderTask()])
def test_targets_parse_back_as_correct(task, utk, fair):
    for record in [*utk.values(), *fair.values()]:
        for conv in task.conversations(record, random.Random(0)):
            assert task.score(task.parse(conv.target, conv), conv).correct is True


@pytest.mark.parametrize("task", [AgeGroupTask(), GenderTask()])
def test_never_applies_to_synthface(task):
    records = synthface.synthface_records("train", 6, 2, 0, size=32)
    assert not any(task.applies_to(s) for s in [*records, *synthface.synthface_pairs(records, 4, seed=0)])


def test_no_race_prompt():
    assert not any("race" in name for name in registry.TASKS)
    assert {"age_group", "gender"} <= set(registry.TASKS)
    prompts = [*demographics.AGE_GROUP_PROMPTS, *demographics.GENDER_PROMPTS]
    assert not any(w in p.lower() for p in prompts for w in ("race", "ethnic", "asian", "white", "black"))


@pytest.mark.parametrize("age,group", [(0, "0-2"), (2.9, "0-2"), (3, "3-9"), (19, "10-19"), (69, "60-69"),
                                       (70, "70+"), (116, "70+")])
def test_age_group_of_years(age, group):
    assert age_group_of_years(age) == group


@pytest.mark.parametrize("text,group", [
    ("Age group: 20-29", "20-29"), ("age group : 3 - 9", "3-9"), ("I think 30 to 39.", "30-39"),
    ("They look about 34 years old.", "30-39"), ("Age group: 70+", "70+"), ("more than 70", "70+"),
    ("Age group: 20-35", None), ("over 50", None), ("no idea", None), ("", None),
    ("Reason: wrinkles around 50-59.\nAge group: 60-69", "60-69"),
])
def test_parse_age_group(text, group):
    assert parse_age_group(text) == group


@pytest.mark.parametrize("text,gender", [
    ("Gender: female", "female"), ("Gender: Male", "male"), ("This is a woman.", "female"),
    ("The person is male.", "male"), ("A young girl", "female"), ("unclear", None), ("", None),
    ("Gender: female (not male)", "female"),
])
def test_parse_gender(text, gender):
    assert parse_gender(text) == gender


def row(task, label, i=0):
    return {"id": f"s{i}#{task}#v", "task": task, "variant": "v", "images": [],
            "messages": [{"content": [{"text": "q"}]}, {"content": [{"text": "t"}]}],
            "gt": f'{{"extras": {{"label": "{label}"}}}}'}


def test_score_rows_and_metrics():
    records = [score_row(row("gender", "female", 0), "Gender: female"),
               score_row(row("gender", "male", 1), "She is a woman."),
               score_row(row("gender", "male", 2), "cannot tell"),
               score_row(row("age_group", "20-29", 3), "Age group: 20-29"),
               score_row(row("age_group", "70+", 4), "about 65")]
    assert [r.prediction for r in records] == ["female", "female", None, "20-29", "60-69"]
    metrics = task_metrics(records)
    assert metrics["gender"]["accuracy"] == pytest.approx(1 / 3)
    assert metrics["gender"]["parse_rate"] == pytest.approx(2 / 3)
    assert metrics["gender"]["macro_f1"] == pytest.approx((0 + 2 / 3) / 2)  # male F1 0, female P 1/2 R 1
    assert metrics["gender"]["confusion"] == [[0, 1], [0, 1]]
    assert metrics["age_group"]["accuracy"] == pytest.approx(0.5)
    assert len(metrics["age_group"]["confusion"]) == len(AGE_GROUPS)


def test_scoring_never_raises_on_odd_responses():
    conv = Conversation("s", "gender", "binary", "q", "Gender: male", [], {"label": "male"})
    for text in ("", "???", "Gender:", "1-2-3-4", "age group: 9999-10000"):
        for task in (AgeGroupTask(), GenderTask()):
            assert task.score(task.parse(text, conv), conv).correct is False
