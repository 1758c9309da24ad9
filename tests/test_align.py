"""Face alignment (facellm.align): known similarity transforms are undone, the detector path
works on SynthFace and on a real photo, and the dataset build stores aligned crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from facellm import synthface as sf
from facellm.align import (
    LANDMARK_NAMES,
    AlignSpec,
    align_face,
    align_to_landmarks,
    apply,
    detect_landmarks,
    similarity_matrix,
    template,
)
from facellm.fr import NoFaceError, get_analyzer
from tests.data.fixtures import grace_hopper

SPEC = AlignSpec(size=112, margin=0.3)


def _gt(record) -> np.ndarray:
    return np.array([record.meta["landmarks"][k] for k in LANDMARK_NAMES])


def _posed(identity, nuisance: sf.NuisanceSample, size: int = 160):
    return sf.make_record("t/0", "train", identity, sf.Look(), nuisance, 0, size)


def test_template_margin_zero_is_arcface_and_scales_with_size():
    assert template(AlignSpec(112, 0.0)) == pytest.approx(np.array([
        [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]))
    assert template(AlignSpec(224, 0.3)) == pytest.approx(2 * template(AlignSpec(112, 0.3)))
    eyes = template(SPEC)[:2]
    assert eyes[1, 0] - eyes[0, 0] < 73.5318 - 38.2946  # a margin shrinks the face in the crop


@pytest.mark.parametrize("bad", [dict(size=8), dict(size=112.5), dict(margin=-0.1), dict(margin=1.5)])
def test_align_spec_refuses_out_of_range(bad):
    with pytest.raises(ValueError, match="align"):
        AlignSpec(**bad)


@pytest.mark.parametrize("angle,scale,dx,dy", [(20.0, 1.15, 10.0, -8.0), (-17.0, 0.87, -9.0, 6.0), (8.0, 1.0, 0.0, 10.0)])
def test_known_similarity_transforms_are_recovered_within_1px(angle, scale, dx, dy):
    """Rendered with a known rotation/scale/shift and aligned on its exact landmarks, a face
    lands where the same face rendered upright lands: every landmark and every part within 1 px."""
    identity = sf.identity_at(0, 3)
    upright = _posed(identity, sf.NuisanceSample())
    posed = _posed(identity, sf.NuisanceSample(dx=dx, dy=dy, scale=scale, angle=angle))
    _, ref = align_to_landmarks(upright.image, _gt(upright), SPEC)
    _, got = align_to_landmarks(posed.image, _gt(posed), SPEC)
    assert np.abs(got.landmarks_in_crop() - ref.landmarks_in_crop()).max() < 1.0
    # the fitted transform undoes the drawn pose everywhere, not only at the 5 points
    probe = np.array([[20.0, 20.0], [90.0, 30.0], [56.0, 100.0], [140.0, 150.0]])
    assert np.abs(apply(got.matrix, _warp_points(probe, angle, scale, dx, dy)) - apply(ref.matrix, probe)).max() < 1.0


def _warp_points(points: np.ndarray, angle: float, scale: float, dx: float, dy: float) -> np.ndarray:
    """Where points of the upright 160 px render move under SynthFace's pose (sf._forward)."""
    m = sf._forward(sf.NuisanceSample(dx=dx, dy=dy, scale=scale, angle=angle))
    k = 160 / 112
    return apply(m, points / k) * k


def test_aligned_crop_pixels_match_the_upright_face():
    identity = sf.identity_at(0, 5)
    upright = _posed(identity, sf.NuisanceSample())
    posed = _posed(identity, sf.NuisanceSample(dx=7, dy=-5, scale=1.12, angle=15))
    a, _ = align_to_landmarks(upright.image, _gt(upright), SPEC)
    b, _ = align_to_landmarks(posed.image, _gt(posed), SPEC)
    inner = (slice(20, 92), slice(20, 92))  # away from the black border of the rotated crop
    diff = np.abs(np.asarray(a, float)[inner] - np.asarray(b, float)[inner])
    assert diff.mean() < 8.0  # resampling blur only; a 3 px misalignment gives ~3x this


def test_similarity_matrix_refuses_degenerate_points():
    with pytest.raises(ValueError, match="similarity"):
        similarity_matrix(np.zeros((5, 2)), template(SPEC))


def test_detector_alignment_on_synthface_finds_faces_and_tightens_landmarks():
    """YuNet on drawn faces with photo-like pose: found in >= 95 % of images, and after
    alignment the true landmarks scatter far less than in the raw images."""
    records = sf.synthface_records("train", 20, 3, seed=11, size=160)
    raw, aligned, found = [], [], 0
    for r in records:
        raw.append(_gt(r) * 112 / 160)
        face = detect_landmarks(r.image, get_analyzer())
        if face is None:
            continue
        found += 1
        aligned.append(apply(similarity_matrix(face[0], template(SPEC)), _gt(r)))
    assert found >= 0.95 * len(records)
    assert np.std(aligned, axis=0).mean() < 0.6 * np.std(raw, axis=0).mean()


def test_real_photo_is_aligned_with_the_eyes_level():
    photo = grace_hopper().rotate(18, resample=Image.Resampling.BICUBIC, expand=True)
    crop, how = align_face(photo, SPEC)
    assert crop.size == (112, 112)
    eyes = detect_landmarks(crop, get_analyzer())[0][:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0  # level within 2 px after an 18 degree tilt
    assert np.abs(eyes - template(SPEC)[:2]).max() < 6.0
    record = how.as_dict()
    assert record["size"] == 112 and len(record["matrix"]) == 2 and len(record["landmarks"]) == 5


def test_no_face_raises():
    with pytest.raises(NoFaceError):
        align_face(Image.new("RGB", (160, 160), (90, 140, 200)), SPEC)


def test_build_stores_aligned_crops_with_their_transform(tmp_path):
    from facellm.data.build import build_dataset, load_built
    from facellm.data.sources import synthface_source
    from facellm.tasks.expression import ExpressionTask

    source = synthface_source(10, 2, {"train": 2, "validation": 2, "test": 2}, seed=3, size=160)
    build_dataset(source.samples, {"expression": (ExpressionTask(), None)}, tmp_path, progress=False,
                  align=SPEC, splits=("train",))
    rows = load_built(tmp_path)["train"]
    assert len(rows) > 0
    for row in rows:
        assert row["images"][0].size == (112, 112)
        (how,) = json.loads(row["gt"])["alignment"]
        assert how["size"] == 112 and how["margin"] == 0.3 and 0 < how["confidence"] <= 1
