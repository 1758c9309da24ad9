"""The demo's own answer function (`demo.app.respond`) on the tiny model in process: the
verification panel flags an LR and an FR score that point in opposite directions, and repeats
the drawn-faces-only warning under each result."""

from __future__ import annotations

import pytest

from facellm.assistant import SFACE_MATCH_SIMILARITY, Calibration, FaceAssistant, drawn_faces_note


@pytest.fixture(scope="module")
def assistant_and_faces(tiny_model_dir, tmp_path_factory):
    from facellm.assistant import synthface_examples
    from facellm.inference.hf import HFBackend

    examples = synthface_examples(tmp_path_factory.mktemp("faces"))
    backend = HFBackend(tiny_model_dir, {})
    yield backend, list(examples[3].files)  # a different-person pair
    backend.close()


def final_panel(assistant: FaceAssistant, files: list[str], note: str | None) -> str:
    from demo.app import respond

    *_, last = respond(assistant, {"text": "", "files": files}, [], "base", "images_only", [], note)
    return last[1]


@pytest.mark.parametrize("agree", [False, True])
def test_the_panel_flags_lr_and_fr_pointing_apart(assistant_and_faces, tiny_model_dir, agree):
    from facellm.fr import get_analyzer
    from facellm.images import load_image

    backend, files = assistant_and_faces
    fr_same = get_analyzer().similarity(*[load_image(f) for f in files]) >= SFACE_MATCH_SIMILARITY
    lr_same = fr_same if agree else not fr_same
    # slope 0: the calibrated LR is the intercept, whatever the model's raw LLR
    calibration = {("base", "images_only"): Calibration(0.0, 1.0 if lr_same else -1.0, "test")}
    assistant = FaceAssistant(backend, calibration, max_tokens=16)
    note = drawn_faces_note(str(tiny_model_dir))
    panel = final_panel(assistant, files, note)
    assert "Likelihood ratio (calibrated)" in panel
    assert ("Conflicting evidence" in panel) is not agree
    if not agree:
        assert "point in opposite directions" in panel
    assert note and panel.endswith(f"_{note}_")
