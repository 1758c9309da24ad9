"""Landmarks in prompts (issue 13, part 3): the text, the points it is made from, a build that
appends them, and the config check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facellm.tasks.landmarks import HEAD, crop_points, landmark_prompt, landmark_text

POINTS = [[0.31, 0.42], [0.69, 0.42], [0.5, 0.6], [0.35, 0.78], [0.65, 0.78]]


def test_text_by_hand():
    assert landmark_text(POINTS) == ("Landmarks (x y, 0 to 1): left eye 0.31 0.42, right eye 0.69 0.42, "
                                     "nose 0.50 0.60, mouth left 0.35 0.78, mouth right 0.65 0.78.")
    clipped = landmark_text([[-0.2, 1.4], *POINTS[1:]], "Image 2")
    assert clipped.startswith("Image 2 Landmarks (x y, 0 to 1): left eye 0.00 1.00, right eye")
    with pytest.raises(ValueError, match="expected 5 landmarks"):
        landmark_text(POINTS[:4])


def test_crop_points_apply_the_alignment():
    matrix = [[0.5, 0.0, 10.0], [0.0, 0.5, 4.0]]  # halve, then shift
    source = [[40.0, 60.0], [100.0, 60.0], [70.0, 90.0], [50.0, 120.0], [90.0, 120.0]]
    points = crop_points({"matrix": matrix, "landmarks": source, "size": 112})
    expected = (np.array(source) * 0.5 + [10.0, 4.0]) / 112
    assert np.allclose(points, expected)


def test_prompt_for_one_and_two_faces():
    how = {"matrix": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "landmarks": (np.array(POINTS) * 100).tolist(), "size": 100}
    assert landmark_prompt("Which emotion?", [how]) == "Which emotion?\n" + landmark_text(POINTS)
    two = landmark_prompt("Same person?", [how, how]).split("\n")
    assert two[0] == "Same person?" and two[1].startswith("Image 1 " + HEAD) and two[2].startswith("Image 2 " + HEAD)
    assert landmark_prompt("Q", [None]) == "Q" and landmark_prompt("Q", []) == "Q"


def test_build_appends_the_aligned_landmarks(tmp_path):
    from facellm import synthface
    from facellm.align import AlignSpec, template
    from facellm.data.build import build_dataset, load_built
    from facellm.tasks import ExpressionTask, VerificationTask

    def samples(split: str) -> list:
        records = synthface.synthface_records("train", 6, 2, seed=4, size=160)
        return records + synthface.synthface_pairs(records, 2, seed=4) if split == "train" else []

    spec = AlignSpec(112, 0.3)
    build_dataset(samples, {"expression": (ExpressionTask(), None), "verification": (VerificationTask(0.5), ("images_only",))},
                  tmp_path, splits=("train",), progress=False, align=spec, landmarks_in_prompt=True)
    rows = load_built(tmp_path)["train"]
    assert len(rows) > 4
    canonical = template(spec) / spec.size
    for row in rows:
        prompt = row["messages"][0]["content"][-1]["text"]
        lines = prompt.split("\n")[-len(row["images"]):]
        alignments = json.loads(row["gt"])["alignment"]
        assert len(alignments) == len(row["images"])
        for k, (line, how) in enumerate(zip(lines, alignments), 1):
            assert line == landmark_text(crop_points(how), f"Image {k}" if len(row["images"]) == 2 else "")
            # aligned faces: the points sit near the template the crop was fitted to (< 8 px at 112)
            assert np.abs(np.array(crop_points(how)) - canonical).max() < 8 / 112


def test_config_needs_alignment(tmp_path):
    from facellm.config import ConfigError, load_checked
    from instruct_data.build import BuildConfig, validate

    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: synthface\noutput_dir: x\ntasks: {expression: {}}\nlandmarks_in_prompt: true\n"
                   "align: {enabled: false}\n")
    with pytest.raises(ConfigError, match="landmarks_in_prompt"):
        load_checked(BuildConfig, cfg, [], validate)
