"""Multiple-choice items and the parsers of the two face benchmarks' files.

FaceXBench (github.com/Kartik-3004/facexbench, `benchmark/*.json`): one file per source and
task, with the question texts under "questions" and image paths relative to the file:

    {"category": "attributes_expression", "sub-category": "attributes", "dataset": "celeba",
     "num_images": "single", "prepend_text": "...", "postpend_text": "Please answer ... A, B, C, D.",
     "questions": {"1": {"image_paths": ["images/celeba_single_mcq/question_1.png"],
                         "question_text": "Which of the following attributes is NOT present in the image?",
                         "options": ["Bangs", "Rosy_Cheeks", "Wearing_Lipstick", "Wavy_Hair"],
                         "correct_answer_option": "B", "answer": "Rosy_Cheeks"}}}
    -> MCItem(id="celeba_single_mcq/1", images=[".../images/celeba_single_mcq/question_1.png"],
              question="Which of the following ...", options=["Bangs", ...], answer="B",
              category="attributes_expression/attributes")

Face-Human-Bench (github.com/Face-Human-Bench/face-human-bench, `data/.../json/en/*.json`): one
file per ability under "data", the answer an index into "options" (always 0 in the released
files: its own evaluation rotates the options, as `load_items` does with `seed`), one image per
version ("original", "cropped", "boxed"), paths relative to the data root:

    {"data": [{"type": "face_expression_basic",
               "QA": {"question": "What is the facial expression ...?",
                      "options": ["Fear", "Disgust", "Happiness", "Sadness"], "answer": 0},
               "image": {"image_paths": {"original": "eval_data/.../sample_0021.jpg",
                                         "cropped": "eval_data/.../cropped/sample_0021.jpg"}}}]}
    -> MCItem(id="face_expression_basic/0", images=[".../cropped/sample_0021.jpg"],
              question="What is the facial expression ...?", options=[rotated], answer=<letter of "Fear">,
              category="face/expression/basic")

Either benchmark's items may also come as a JSON list of the inner items or as JSONL (one item
a line; FaceXBench items then carry their own "category" / "sub-category"). A bad item raises
MCFormatError naming the file and the item.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DEFAULT_INSTRUCTION = "Answer with the option's letter from the given choices directly."
Format = Literal["auto", "facexbench", "face_human_bench"]

# Face-Human-Bench's second-level abilities (code/evaluation/score.py); what follows is the third level.
FHB_ABILITIES = ("attribute", "age", "expression", "attack", "recognition", "action", "spatial_relation",
                 "social_relation", "reid")


class MCFormatError(ValueError):
    """An items file, or one item in it, that is not in a known multiple-choice format."""


@dataclass
class MCItem:
    """One multiple-choice question.

    id: unique within the set. images: paths or PIL images, in the order the question names them.
    question: the text before the options (benchmark context included).
    options: the choices' texts, lettered A, B, C, ... in this order.
    answer: the correct option's letter. category: "/"-separated levels ("face/expression/basic").
    instruction: the line after the options that says how to answer.
    meta: anything else (the benchmark's source record, ground truth of a built set).
    """

    id: str
    images: list[str | Image.Image]
    question: str
    options: list[str]
    answer: str
    category: str
    instruction: str = DEFAULT_INSTRUCTION
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 2 <= len(self.options) <= len(LETTERS):
            raise ValueError(f"{self.id}: expected 2-{len(LETTERS)} options, got {len(self.options)}")
        if self.answer not in self.letters:
            raise ValueError(f"{self.id}: answer {self.answer!r} is not one of {', '.join(self.letters)}")
        if not self.images:
            raise ValueError(f"{self.id}: no images")

    @property
    def letters(self) -> str:
        return LETTERS[: len(self.options)]

    @property
    def answer_text(self) -> str:
        return self.options[self.letters.index(self.answer)]


def mc_prompt(item: MCItem) -> str:
    """The user text: the question, one "(A) option" line per option, the instruction."""
    lines = [item.question, *(f"({letter}) {option}" for letter, option in zip(item.letters, item.options))]
    return "\n".join(lines + ([item.instruction] if item.instruction else []))


def item_images(item: MCItem) -> list[Image.Image]:
    """The item's images as PIL images (paths are opened with facellm.images.load_image)."""
    from facellm.images import load_image

    return [image if isinstance(image, Image.Image) else load_image(image) for image in item.images]


# ---------------------------------------------------------------- loading


def load_items(path: str | Path, format: Format = "auto", image_root: str | Path | None = None,
               image_version: str | None = None, seed: int = 0) -> list[MCItem]:
    """Every item of a file, or of every *.json / *.jsonl file in a folder (sorted by name).

    format: "auto" tells the benchmarks apart by their keys.
    image_root: the folder relative image paths start from; default the file's folder.
    image_version: Face-Human-Bench's image to use ("cropped" where there is one, else the first).
    seed: Face-Human-Bench's option rotation (per item, deterministic).
    """
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl")) if path.is_dir() else [path]
    if not files:
        raise MCFormatError(f"{path}: no .json or .jsonl files in this folder")
    items = [item for f in files for item in _load_file(f, format, image_root, image_version, seed)]
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise MCFormatError(f"{path}: item id {item.id!r} occurs twice")
        seen.add(item.id)
    return items


def _load_file(path: Path, format: Format, image_root: str | Path | None, version: str | None,
               seed: int) -> list[MCItem]:
    root = Path(image_root) if image_root is not None else path.parent
    header, raw = _read_raw(path)
    items = []
    for where, (key, entry) in raw:
        try:
            if not isinstance(entry, dict):
                raise TypeError(f"expected a JSON object, got {type(entry).__name__}")
            kind = format if format != "auto" else _detect(entry)
            if kind == "facexbench":
                items.append(_facexbench_item({**header, **entry}, f"{path.stem}/{key}", root))
            else:
                items.append(_fhb_item(entry, key, root, version, seed))
        except (KeyError, TypeError, ValueError) as e:
            detail = f"missing key {e}" if isinstance(e, KeyError) else str(e)
            raise MCFormatError(f"{path}: {where}: {detail}") from None
    return items


def _read_raw(path: Path) -> tuple[dict[str, Any], list[tuple[str, tuple[str, Any]]]]:
    """(file-level FaceXBench fields, [(where, (key, item)), ...]) of a JSON or JSONL file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise MCFormatError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return {}, _read_jsonl(path, text)
    if isinstance(data, dict) and isinstance(data.get("questions"), dict):  # a FaceXBench file
        header = {k: v for k, v in data.items() if k != "questions"}
        return header, [(f"question {k!r}", (str(k), v)) for k, v in data["questions"].items()]
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # a Face-Human-Bench file
        data = data["data"]
    if isinstance(data, dict):  # one item in a .json file
        data = [data]
    if not isinstance(data, list):
        raise MCFormatError(f"{path}: expected a FaceXBench or Face-Human-Bench file, a list of items or "
                            f"JSONL, got a JSON {type(data).__name__}")
    return {}, [(f"item {i}", (str(i), entry)) for i, entry in enumerate(data)]


def _read_jsonl(path: Path, text: str) -> list[tuple[str, tuple[str, Any]]]:
    raw = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                raw.append((f"line {n}", (str(n), json.loads(line))))
            except json.JSONDecodeError as e:
                raise MCFormatError(f"{path}: line {n}: not JSON ({e.msg})") from None
    return raw


def _detect(entry: dict[str, Any]) -> Format:
    if "QA" in entry:
        return "face_human_bench"
    if "question_text" in entry or "correct_answer_option" in entry:
        return "facexbench"
    raise ValueError("neither a FaceXBench question (question_text, options, correct_answer_option) "
                     "nor a Face-Human-Bench item (QA, image)")


def _options(raw: Any) -> list[str]:
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"options must be a non-empty list, got {raw!r}")
    options = [str(o).strip() for o in raw]  # FaceXBench counts are numbers
    if len(set(options)) != len(options):
        raise ValueError(f"options repeat: {options}")
    return options


def _image_paths(paths: Any, root: Path) -> list[str]:
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ValueError(f"image paths must be a non-empty list of strings, got {paths!r}")
    return [str(root / p) for p in paths]


def _facexbench_item(q: dict[str, Any], item_id: str, root: Path) -> MCItem:
    options = _options(q["options"])
    answer = str(q["correct_answer_option"]).strip().strip("()").upper()
    context = [q["context"]] if q.get("context") else []  # the tools_use questions' context
    category = "/".join(str(q[k]) for k in ("category", "sub-category") if q.get(k)) or "uncategorised"
    return MCItem(id=str(q.get("id", item_id)), images=_image_paths(q["image_paths"], root),
                  question="\n".join(context + [str(q["question_text"])]), options=options, answer=answer,
                  category=category, instruction=q.get("postpend_text") or DEFAULT_INSTRUCTION,
                  meta={k: q[k] for k in ("dataset", "answer", "source") if k in q})


def fhb_category(task_type: str) -> str:
    """"face_recognition_cross_age" -> "face/recognition/cross_age" (Face-Human-Bench's levels)."""
    group, _, rest = task_type.partition("_")
    for ability in FHB_ABILITIES:
        if rest == ability or rest.startswith(ability + "_"):
            return "/".join(p for p in (group, ability, rest[len(ability) + 1:]) if p)
    return "/".join(p for p in (group, rest) if p)


def _fhb_item(entry: dict[str, Any], key: str, root: Path, version: str | None, seed: int) -> MCItem:
    qa, paths = entry["QA"], entry["image"]["image_paths"]
    options = _options(qa["options"])
    answer = qa["answer"]
    index = LETTERS.index(answer.upper()) if isinstance(answer, str) and len(answer) == 1 else int(answer)
    if not 0 <= index < len(options):
        raise ValueError(f"answer {answer!r} is outside the {len(options)} options")
    if isinstance(paths, dict):
        version = version or ("cropped" if "cropped" in paths else next(iter(paths), None))
        if version not in paths:
            raise ValueError(f"no image of version {version!r}; it has {', '.join(paths) or 'none'}")
        paths = paths[version]
    task_type = str(entry.get("type", "face_human_bench"))
    item_id = f"{task_type}/{key}" + (f"/{version}" if version else "")
    # the files list the answer first: rotate as Face-Human-Bench's eval.py does, seeded per item
    shift = int(np.random.default_rng([seed, zlib.crc32(item_id.encode())]).integers(len(options)))
    rotated = options[shift:] + options[:shift]
    return MCItem(id=item_id, images=_image_paths(paths, root), question=str(qa["question"]), options=rotated,
                  answer=LETTERS[(index - shift) % len(options)], category=fhb_category(task_type),
                  meta={"source": entry["image"].get("source"), "rotation": shift})
