"""A SynthFace multiple-choice set with exact answers, written in FaceXBench's format.

Four categories of four-option questions over the test split of a seeded SynthFace
(`facellm.synthface`), every answer read from its ground truth:

    attributes    "Identify which of the following attributes is present in the image." (one
                  option true, three false) or "... is NOT present ..." (three true, one false),
                  over the binary attributes of `synthface_attributes` (facellm.attributes nouns)
    expression    the image's expression and three other of the 7 basic expressions
    age           the identity's age group as years (young 18-29, adult 30-59, senior 60-85)
                  beside "under 18", which SynthFace never draws
    verification  two images: "the same person" / "two different people" per the pair's
                  identities, beside "the same photo twice" and "no face in one of the images",
                  false by construction (a pair is two renders, both faces)

Option order is shuffled per item by `numpy.random.default_rng([seed, 11, category, k])`, so a
seed gives the same set, byte for byte, in any process. Images are rendered at `size` and
aligned as the data build aligns them (`facellm.align`), so the model sees what it was trained
on; a face the detector misses is left out with the items that use it.

    items = synthface_mc_items(n_per_category=25, seed=0)
    write_facexbench(items, "runs/mc/synthface")   # synthface_<category>_mcq.json + images/
    load_items("runs/mc/synthface")                # the same items, read back
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facellm.align import AlignSpec
from facellm.attributes import BINARY_ATTRIBUTES
from facellm.multiple_choice.items import LETTERS, MCItem
from facellm.schema import EXPRESSIONS, FacePair, FaceRecord

CATEGORIES = ("attributes", "expression", "age", "verification")
INSTRUCTION = "Please answer the question and provide only the correct option letter, e.g., A, B, C, D."
AGE_RANGES = {"young": "18-29 years", "adult": "30-59 years", "senior": "60-85 years"}
NEVER_AGE = "under 18 years"
SAME, DIFFERENT = "the same person", "two different people"
NEVER_PAIR = ("the same photo twice", "no face in one of the images")
_TAG_OPTIONS = 11


def synthface_mc_items(n_per_category: int = 25, seed: int = 0, size: int = 160,
                       align: AlignSpec | None = AlignSpec(), categories: Sequence[str] = CATEGORIES
                       ) -> list[MCItem]:
    """Up to `n_per_category` items per category (fewer only where faces go undetected), with
    PIL images. align: None keeps the rendered images as they are."""
    from facellm.synthface import synthface_pairs, synthface_records

    unknown = set(categories) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; choose from {', '.join(CATEGORIES)}")
    # the test split holds a tenth of the identities; two images each give the genuine pairs
    records = synthface_records("test", max(20, 10 * n_per_category), 2, seed, size)
    records = _aligned(records, align)
    singles = records[:n_per_category]
    builders: dict[str, Callable[[Any, np.random.Generator], tuple[str, list[str], int, dict[str, Any]]]] = {
        "attributes": _attribute_question, "expression": _expression_question,
        "age": _age_question, "verification": _verification_question,
    }
    items = []
    for category in categories:
        samples: list[Any] = singles
        if category == "verification":
            samples = synthface_pairs(records, min(n_per_category, len(records) // 2), seed)
        for k, sample in enumerate(samples):
            rng = np.random.default_rng([seed, _TAG_OPTIONS, CATEGORIES.index(category), k])
            question, options, correct, truth = builders[category](sample, rng)
            items.append(_shuffled(f"synthface_{category}_mcq/{k + 1}", sample, question, options, correct,
                                   category, truth, rng))
    return items


def _aligned(records: list[FaceRecord], align: AlignSpec | None) -> list[FaceRecord]:
    if align is None:
        return records
    from facellm.align import align_face
    from facellm.fr import NoFaceError, get_analyzer

    analyzer, kept = get_analyzer(), []
    for record in records:
        try:
            record.image = align_face(record.image, align, analyzer)[0]
        except NoFaceError:
            continue
        kept.append(record)
    return kept


def _shuffled(item_id: str, sample: FaceRecord | FacePair, question: str, options: list[str], correct: int,
              category: str, truth: dict[str, Any], rng: np.random.Generator) -> MCItem:
    order = rng.permutation(len(options)).tolist()
    images = [sample.first.image, sample.second.image] if isinstance(sample, FacePair) else [sample.image]
    ids = [sample.first.id, sample.second.id] if isinstance(sample, FacePair) else [sample.id]
    return MCItem(id=item_id, images=images, question=question, options=[options[i] for i in order],
                  answer=LETTERS[order.index(correct)], category=f"synthface/{category}", instruction=INSTRUCTION,
                  meta={"dataset": "synthface", "answer": options[correct], "source": {"ids": ids, **truth}})


def _binary(record: FaceRecord) -> dict[str, bool]:
    return {k: v for k, v in record.attributes.items() if isinstance(v, bool) and k in BINARY_ATTRIBUTES}


def _attribute_question(record: FaceRecord, rng: np.random.Generator) -> tuple[str, list[str], int, dict[str, Any]]:
    attrs = _binary(record)
    present = sorted(k for k, v in attrs.items() if v)
    absent = sorted(k for k, v in attrs.items() if not v)
    ask_absent = len(present) >= 3 and bool(rng.integers(2))  # a face has few attributes: mostly "present"
    if ask_absent:
        keys = [str(rng.choice(absent)), *rng.choice(present, 3, replace=False).tolist()]
        question = "Which of the following attributes is NOT present in the image?"
    else:
        keys = [str(rng.choice(present)), *rng.choice(absent, 3, replace=False).tolist()]
        question = "Identify which of the following attributes is present in the image."
    options = [BINARY_ATTRIBUTES[k].noun for k in keys]
    return question, options, 0, {"attributes": {k: attrs[k] for k in keys}, "asks": "absent" if ask_absent else "present"}


def _expression_question(record: FaceRecord, rng: np.random.Generator) -> tuple[str, list[str], int, dict[str, Any]]:
    others = rng.choice([e for e in EXPRESSIONS if e != record.expression], 3, replace=False).tolist()
    return ("What is the facial expression of the person in this image?", [str(record.expression), *others], 0,
            {"expression": record.expression})


def _age_question(record: FaceRecord, rng: np.random.Generator) -> tuple[str, list[str], int, dict[str, Any]]:
    group = str(record.attributes["age_group"])
    options = [AGE_RANGES[group], *(AGE_RANGES[g] for g in AGE_RANGES if g != group), NEVER_AGE]
    return "What is the age range of the person in this image?", options, 0, {"age_group": group, "age": record.age}


def _verification_question(pair: FacePair, rng: np.random.Generator) -> tuple[str, list[str], int, dict[str, Any]]:
    options = [SAME, DIFFERENT, *NEVER_PAIR] if pair.same else [DIFFERENT, SAME, *NEVER_PAIR]
    return "What do the two images show?", options, 0, {"same": pair.same, "pair": pair.id}


# ---------------------------------------------------------------- FaceXBench files


def write_facexbench(items: Sequence[MCItem], out_dir: str | Path) -> list[Path]:
    """One FaceXBench file per category (`<first part of the id>.json`) and its images as PNGs under
    images/<that name>/question_<k>[_<j>].png. Returns the JSON files' paths."""
    out = Path(out_dir)
    files: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, key = item.id.partition("/")
        category, _, sub = item.category.partition("/")
        doc = files.setdefault(name, {
            "category": category, "sub-category": sub, "dataset": item.meta.get("dataset", ""),
            "question_type": "MCQ", "num_images": "multiple" if len(item.images) > 1 else "single",
            "prepend_text": "", "postpend_text": item.instruction, "questions": {}})
        doc["questions"][key] = {
            "image_paths": _save_images(item, out, name, key), "question_text": item.question,
            "options": item.options, "correct_answer_option": item.answer, "answer": item.answer_text,
            **({"source": item.meta["source"]} if "source" in item.meta else {})}
    paths = []
    for name, doc in files.items():
        path = out / f"{name}.json"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        paths.append(path)
    return paths


def _save_images(item: MCItem, out: Path, name: str, key: str) -> list[str]:
    folder = out / "images" / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, image in enumerate(item.images, 1):
        relative = f"images/{name}/question_{key}" + (f"_{j}" if len(item.images) > 1 else "") + ".png"
        if isinstance(image, (str, Path)):
            from facellm.images import load_image

            image = load_image(image)
        image.save(out / relative, format="PNG")
        paths.append(relative)
    return paths
