"""Tasks: targets are built from ground truth only, and parse(target) scores as correct."""

import random

import pytest
from PIL import Image

from facellm.attributes import BINARY_ATTRIBUTES
from facellm.schema import EXPRESSIONS, FacePair, FaceRecord
from facellm.tasks import AgeTask, AttributeTask, CaptionTask, ExpressionTask, VerificationTask
from facellm.tasks.attributes import parse_attribute_lines, parse_attributes, parse_yes_no
from facellm.tasks.expression import parse_expression
from facellm.tasks.verification import decision_threshold, parse_verification

IMG = Image.new("RGB", (8, 8))


def record(i, attrs, expression="happy", traits=None, identity=None):
    return FaceRecord(f"t/{i}", "t", "test", IMG, identity or str(i), attrs, expression, 30.0,
                      {"traits": traits or {}})


A = {"eyeglasses": True, "beard": False, "black_hair": True, "wearing_hat": False}
B = {"eyeglasses": False, "beard": True, "black_hair": True, "wearing_hat": False}


@pytest.mark.parametrize("task,sample", [
    (AttributeTask(questions_per_sample=3), record(1, A)),
    (ExpressionTask(), record(1, A, "disgust")),
    (AgeTask(), record(1, A)),
    (VerificationTask(0.5), FacePair("p", "t", "test", record(1, A), record(2, B), False, 0.3)),
    (VerificationTask(0.5), FacePair("q", "t", "test", record(1, A), record(3, A), True, 0.9)),
])
def test_target_parses_back_as_correct(task, sample):
    convs = task.conversations(sample, random.Random(0))
    assert convs, "task produced no conversation"
    for conv in convs:
        assert conv.images and len(conv.images) == (2 if isinstance(sample, FacePair) else 1)
        assert task.score(task.parse(conv.target, conv), conv).correct is True


def test_yesno_questions_are_balanced_and_true():
    task = AttributeTask()
    answers = []
    for i in range(400):
        conv = task.conversations(record(i, A), random.Random(i), ("yesno",))[0]
        assert (conv.target == "Yes") == A[conv.extras["attribute"]]
        assert BINARY_ATTRIBUTES[conv.extras["attribute"]].question in conv.prompt
        answers.append(conv.target)
    assert 0.4 < answers.count("Yes") / len(answers) < 0.6


def test_describe_names_what_the_face_has_and_every_other_attribute_reads_absent():
    task = AttributeTask()
    for attrs in (A, B, dict.fromkeys(A, False), dict.fromkeys(BINARY_ATTRIBUTES, True)):
        [conv] = task.conversations(record(0, attrs), random.Random(0), ("describe",))
        named = [a.noun for k, a in BINARY_ATTRIBUTES.items() if attrs.get(k)]
        assert conv.target == (f"It has {', '.join(named)}." if named else "It has none of these attributes.")
        parsed = parse_attributes(conv.target)
        assert parsed == {k: bool(attrs.get(k)) for k in BINARY_ATTRIBUTES}  # each noun names only its own
        assert task.score(task.parse(conv.target, conv), conv).score == 1.0
    # a model's own wording: synonyms, negation, the per-line format; nothing named is unparsed
    said = parse_attributes("It has glasses and a bald head, but no hat.")
    assert {k for k, v in said.items() if v} == {"eyeglasses", "bald"} and said["wearing_hat"] is False
    assert parse_attributes("eyeglasses: no\nbeard: yes") == {"eyeglasses": False, "beard": True}
    assert parse_attributes("I cannot tell.") == {}


def test_caption_questions_are_balanced_true_and_never_about_the_expression():
    task = CaptionTask(question_rate=1.0)
    attrs = {**A, "smiling": True}
    answers = []
    for i in range(400):
        convs = task.conversations(record(i, attrs), random.Random(i), ("question",))
        assert [c.variant for c in convs] == ["question"] and len(convs[0].images) == 1
        conv = convs[0]
        key = next(k for k, a in BINARY_ATTRIBUTES.items() if conv.prompt == f"Does this face show {a.noun}?")
        assert key != "smiling"
        assert conv.target.startswith("Yes") == attrs[key]
        answers.append(conv.target.startswith("Yes"))
    assert 0.4 < sum(answers) / len(answers) < 0.6


def test_verification_target_states_only_true_differences():
    pair = FacePair("p", "t", "test", record(1, A, traits={"skin tone": "light"}),
                    record(2, B, traits={"skin tone": "dark"}), False, 0.8)
    conv = VerificationTask(0.5).conversations(pair, random.Random(0), ("score_decision",))[0]
    assert conv.prompt.endswith('[Model Scores]\n{"FR": [0.8, "Match"]}')
    parsed = parse_verification(conv.target)
    assert parsed["verdict"] == "Non-Match"
    assert "Both faces have black hair." in parsed["similarities"]
    assert "The first face wears eyeglasses, while the second face wears no eyeglasses." in parsed["differences"]
    assert "skin tone differs: light in the first face, dark in the second" in parsed["differences"]
    assert "hat" not in parsed["explanation"]  # neither wears one: nothing to say
    # the score says match, the truth says non-match: the target must not pretend they agree
    assert "points the other way" in parsed["reasoning"]


def test_unannotated_pairs_say_so():
    pair = FacePair("p", "t", "test", record(1, {}), record(2, {}), True, None)
    convs = VerificationTask().conversations(pair, random.Random(0))
    assert [c.variant for c in convs] == ["images_only"]  # no score, no score variants
    assert "Similarities: Not annotated." in convs[0].target


@pytest.mark.parametrize("text,verdict", [
    ("Match Verdict: Match\nSimilarities: x", "Match"),
    ("match verdict:non-match", "Non-Match"),
    ("Match Verdict: Non Match", "Non-Match"),
    ("**Match Verdict:** Uncertain", "Uncertain"),
    ("Match Verdict Match", None),
    ("I think they are the same.", None),
    ("", None),
])
def test_parse_verification(text, verdict):
    assert parse_verification(text)["verdict"] == verdict


def test_parsers_of_short_answers():
    assert parse_yes_no("Yes, they do.") is True
    assert parse_yes_no("nope") is None
    assert parse_expression("Expression: Angry\nReason: ...") == "anger"
    assert parse_expression("The person looks happy.") == "happy"
    assert parse_expression("no idea") is None
    assert parse_attribute_lines("- black hair: yes\nbeard: no\nfoo: yes\nbangs maybe") == {
        "black_hair": True, "beard": False}


def test_expression_cues_cover_every_expression():
    for e in EXPRESSIONS:
        conv = ExpressionTask().conversations(record(0, {}, e), random.Random(0))[0]
        assert conv.target.startswith("Reason: ") and conv.target.endswith(f".\nExpression: {e}")


def test_decision_threshold_meets_fmr():
    rng = random.Random(0)
    scores = [rng.random() for _ in range(1000)]
    same = [False] * 1000
    t = decision_threshold(scores, same, fmr=0.01)
    assert sum(s >= t for s in scores) <= 10
    assert sum(s >= t for s in scores) >= 9
    with pytest.raises(ValueError):
        decision_threshold([0.5], [True])
