import math

import numpy as np
import pytest
import sklearn.metrics

from facellm.metrics.classification import (
    accuracy,
    confusion_matrix,
    macro_f1,
    mae,
    mean_accuracy,
    parse_rate,
    per_attribute_accuracy,
    per_class_recall,
    uar,
    war,
)

LABELS = ["happy", "sad", "sad", "neutral", "happy", "happy"]
PREDS = ["happy", None, "sad", "happy", "contempt", "happy"]  # None: unparsed; "contempt": not a class
CLASSES = ["neutral", "happy", "sad"]


def test_known_values_with_unparsed_predictions():
    assert accuracy(LABELS, PREDS) == pytest.approx(3 / 6)
    assert war(LABELS, PREDS) == pytest.approx(3 / 6)
    assert per_class_recall(LABELS, PREDS, CLASSES) == pytest.approx({"neutral": 0.0, "happy": 2 / 3, "sad": 1 / 2})
    assert uar(LABELS, PREDS, CLASSES) == pytest.approx((0 + 2 / 3 + 1 / 2) / 3)
    # F1 = 2TP / (2TP + FP + FN): neutral 0, happy 4/(4+1+1), sad 2/(2+0+1)
    assert macro_f1(LABELS, PREDS, CLASSES) == pytest.approx((0 + 4 / 6 + 2 / 3) / 3)
    assert parse_rate(PREDS) == pytest.approx(5 / 6)


def test_confusion_matrix_with_and_without_unparsed_column():
    expected = [[0, 1, 0],
                [0, 2, 0],
                [0, 0, 1]]
    assert confusion_matrix(LABELS, PREDS, CLASSES).tolist() == expected
    with_column = confusion_matrix(LABELS, PREDS, CLASSES, unparsed_column=True)
    assert with_column.tolist() == [[0, 1, 0, 0], [0, 2, 0, 1], [0, 0, 1, 1]]
    assert with_column.sum(axis=1).tolist() == [1, 3, 2]  # the class supports
    with pytest.raises(ValueError, match="not among classes"):
        confusion_matrix(["angry"], ["angry"], CLASSES)


@pytest.mark.parametrize("seed", [0, 1])
def test_against_sklearn_when_everything_parses(seed):
    rng = np.random.default_rng(seed)
    labels = [str(c) for c in rng.integers(0, 4, 200)]
    preds = [str(c) for c in np.where(rng.random(200) < 0.6, labels, rng.integers(0, 4, 200))]
    classes = ["0", "1", "2", "3"]
    assert accuracy(labels, preds) == pytest.approx(sklearn.metrics.accuracy_score(labels, preds))
    assert uar(labels, preds) == pytest.approx(sklearn.metrics.balanced_accuracy_score(labels, preds))
    assert macro_f1(labels, preds) == pytest.approx(sklearn.metrics.f1_score(labels, preds, average="macro"))
    expected = sklearn.metrics.confusion_matrix(labels, preds, labels=classes)
    assert confusion_matrix(labels, preds, classes).tolist() == expected.tolist()


def test_unparsed_predictions_count_as_wrong_never_crash():
    assert accuracy([True, False], [None, None]) == pytest.approx(0.0)
    assert uar([True, False], [None, None]) == pytest.approx(0.0)
    assert macro_f1([True, False], [None, None]) == pytest.approx(0.0)
    assert parse_rate([None, None]) == pytest.approx(0.0)


def test_classes_without_support():
    # "fear" never occurs: left out of the recall mean; only predicted: F1 0
    assert uar(["sad", "sad"], ["sad", "fear"], ["sad", "fear"]) == pytest.approx(0.5)
    assert macro_f1(["sad", "sad"], ["sad", "fear"], ["sad", "fear"]) == pytest.approx((2 / 3 + 0.0) / 2)
    assert macro_f1(["sad", "sad"], ["sad", "sad"], ["sad", "fear"]) == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ValueError, match="no samples"):
        accuracy([], [])
    with pytest.raises(ValueError, match="2 labels but 1"):
        accuracy(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="labels contain None"):
        accuracy([None], ["a"])


def test_mae():
    assert mae([20, 30, 40], [22, 27, 40]) == pytest.approx(5 / 3)
    assert mae([20, 30, 40], [22, None, 40]) == pytest.approx(1.0)  # unparsed left out
    assert mae([20, 30, 40], [22, None, 40], fallback=35.0) == pytest.approx((2 + 5 + 0) / 3)
    assert math.isnan(mae([20], [None]))
    with pytest.raises(ValueError, match="NaN"):
        mae([20], [math.nan])


def test_per_attribute_accuracy():
    truths = [{"eyeglasses": True, "beard": False},
              {"eyeglasses": False, "beard": False},
              {"eyeglasses": False, "beard": None, "hair_color": "brown"},
              {"eyeglasses": False}]
    preds = [{"eyeglasses": True, "beard": True},
             {"eyeglasses": False},                  # beard unparsed
             {"eyeglasses": True, "beard": True},
             {"eyeglasses": False, "bald": True}]    # extra keys ignored
    per = per_attribute_accuracy(truths, preds)
    assert per == pytest.approx({"beard": 0.0, "eyeglasses": 3 / 4, "hair_color": 0.0})
    balanced = per_attribute_accuracy(truths, preds, balanced=True)
    assert balanced["eyeglasses"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert mean_accuracy(per) == pytest.approx((0.0 + 0.75 + 0.0) / 3)
    with pytest.raises(ValueError):
        mean_accuracy({})
