"""The SynthFace source: records whose faces are drawn when the build encodes them."""

import dataclasses
import pickle

import numpy as np

from facellm import synthface
from facellm.data.sources import (
    SynthFaceImage,
    synthface_source,
    synthface_undrawn_records,
)


def test_undrawn_records_are_synthface_records_image_for_image():
    for split in ("train", "test"):
        drawn = synthface.synthface_records(split, 10, 3, seed=4, size=96)
        undrawn = synthface_undrawn_records(split, 10, 3, seed=4, size=96)
        assert len(drawn) == len(undrawn) > 0
        for a, b in zip(drawn, undrawn):
            assert isinstance(b.image, SynthFaceImage)
            assert dataclasses.replace(a, image=None) == dataclasses.replace(b, image=None)
            assert a.ground_truth() == b.ground_truth()
            assert np.array_equal(np.asarray(a.image), np.asarray(b.image.make()))


def test_a_face_drawn_after_a_round_trip_to_another_process_is_the_same():
    record = synthface_undrawn_records("train", 5, 1, seed=0)[0]
    copy = pickle.loads(pickle.dumps(record.image))
    assert np.array_equal(np.asarray(copy.make()), np.asarray(record.image.make()))


def test_source_pairs_are_those_of_drawn_records():
    source = synthface_source(10, 3, {"train": 8, "validation": 2, "test": 2}, seed=2)
    pairs = source.pairs("train")
    expected = synthface.synthface_pairs(synthface.synthface_records("train", 10, 3, seed=2), 8, seed=2)
    assert [(p.id, p.first.id, p.second.id, p.same, p.fr_score) for p in pairs] == \
           [(p.id, p.first.id, p.second.id, p.same, p.fr_score) for p in expected]
