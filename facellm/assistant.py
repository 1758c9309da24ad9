"""Questions about one face and verification of two, with the prompts, parsers and likelihood
ratio that training and eval use: what the demo app calls, and any other front end can.

    with open_backend("hf", "facellm_tiny", {"lora": "runs/lora/facellm_tiny"}) as backend:
        calibrators = facellm.calibrators.load("runs/eval/synthface_tiny/calibrators.json")
        assistant = FaceAssistant(backend, calibrators.calibrations, fusion=calibrators.fusions)
        for text in assistant.ask([face], "Is the person smiling? Answer yes or no.", adapter="lora"):
            print(text)                                   # the reply so far, as it streams
        result = assistant.verify(face_a, face_b, adapter="lora")
        result.verdict, result.log10_lr, result.verbal    # "Match", 1.7, "moderate support for the same person"
        [(m.text, m.mark) for m in result.marks]        # [("the first face wears eyeglasses", "contradicted"), ...]

The LR is the model-likelihood answer LLR of `facellm.evaluation.pair_llrs` (the
model's probability of its own explanation after "Match Verdict: Match" versus after
"Match Verdict: Non-Match"), computed by that function, then mapped to a calibrated log10 LR
by the logistic calibration eval fitted for the same system and prompt variant (its calibrators.json).
A model choice ("base" or an adapter's name) finds its calibration under the eval system that
ran it: the system whose recorded `adapter` it is, else the system of the same name, so serve
an adapter under its system's name (`--adapter lora=...` for system "lora") when the report
records no adapters. With an FR score and the report's logistic fusion of the FR score with the
same LLR (`fusion_metrics`), the fused LR is shown too.

Each attribute claim of the explanation is marked supported, contradicted or not checkable
(`claim_marks`): against the model's own answers about each face on its own (the attributes
task's describe prompt, as eval's self-consistency asks it), against ground truth for the
SynthFace examples, and a "difference" that names one value for both faces is contradicted by
itself.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from facellm.align import AlignSpec, align_face
from facellm.attributes import BINARY_ATTRIBUTES
from facellm.calibrators import BASE, Calibration, Fusion
from facellm.evaluation import OWN_ANSWER_TOKENS, pair_llrs
from facellm.fr import FaceAnalyzer, NoFaceError, get_analyzer
from facellm.inference.base import Backend, ChatRequest
from facellm.metrics import (
    Claim,
    parse_claims,
    score_claims,
    self_check,
    self_contradicting_differences,
)
from facellm.registry import TASKS
from facellm.tasks import attributes, caption, expression, verification
from facellm.tasks.base import Conversation
from facellm.verbal import H1, H2, format_lr, verbal_scale

Variant = Literal["images_only", "score"]
VARIANTS: tuple[str, ...] = ("images_only", "score")
DEFAULT_QUESTION = caption.SINGLE_PROMPTS[0]
# SFace's match threshold: cosine 0.363 (OpenCV's face recognition sample), in the
# (cosine + 1) / 2 units of FaceAnalyzer.similarity. At or above it the FR score supports H1.
SFACE_MATCH_SIMILARITY = (0.363 + 1) / 2


# ---------------------------------------------------------------- claims of an explanation

Mark = Literal["supported", "contradicted", "not checkable"]
_WHO = {"first": "the first face", "second": "the second face", "both": "each face", "neither": "neither face",
        "person": "the person"}


@dataclass(frozen=True)
class ClaimMark:
    """One claim of an explanation and what checks it. by_model: against the model's own answers
    about each face (None: not asked); by_truth: against the faces' ground truth (None: none
    known, as for uploads); by_itself: "contradicted" for a difference that names one value for
    both faces, whatever the images show, else None."""

    text: str
    by_model: Mark | None
    by_truth: Mark | None
    by_itself: Mark | None = None

    @property
    def mark(self) -> Mark:
        """contradicted if any check contradicts it, supported if one supports it, else not checkable."""
        marks = {self.by_model, self.by_truth, self.by_itself}
        return "contradicted" if "contradicted" in marks else "supported" if "supported" in marks else "not checkable"


def claim_text(claim: Claim) -> str:
    """A claim in words: Claim("beard", "second", True) -> "the second face has a beard"."""
    attr = BINARY_ATTRIBUTES[claim.attribute]
    if claim.subject == "neither":  # "neither has X" (True): both lack X; (False): both have it
        return attr.has.format(who="neither face" if claim.value else "each face")
    return (attr.has if claim.value else attr.lacks).format(who=_WHO[claim.subject])


def claim_marks(explanation: str, own_answers: Sequence[Mapping[str, bool]] | None = None,
                truth: Sequence[Mapping[str, Any]] | None = None) -> list[ClaimMark]:
    """Mark each attribute claim of a pair's explanation as supported, contradicted or not
    checkable: by the model's own answers about each face (`own_answers`, two dicts as
    `parse_attributes` reads them), by ground truth (`truth`, the two faces' attributes, for
    SynthFace examples), and by itself (a difference naming one value for both faces)."""
    claims = parse_claims(explanation, faces=2)
    marks: dict[Claim, dict[str, Mark]] = {c: {} for c in claims}
    word = {"consistent": "supported", "supported": "supported", "contradicted": "contradicted",
            "hallucinated": "contradicted", "not_checkable": "not checkable", "unverifiable": "not checkable"}
    if own_answers is not None:
        check = self_check(claims, own_answers[0], own_answers[1])
        for group in ("consistent", "contradicted", "not_checkable"):
            for c in getattr(check, group):
                marks[c]["by_model"] = word[group]
    if truth is not None:
        check = score_claims(claims, truth[0], truth[1])
        for group in ("supported", "hallucinated", "unverifiable"):
            for c in getattr(check, group):
                marks[c]["by_truth"] = word[group]
    out = [ClaimMark(claim_text(c), m.get("by_model"), m.get("by_truth")) for c, m in marks.items()]
    for d in self_contradicting_differences(explanation):
        out.append(ClaimMark(f"difference: {d.sentence}", None, None, "contradicted"))
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: finds an example's ground truth whatever folder the front end copied it to."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerificationQuery:
    """What the model is asked about a pair. fr_score: SFace similarity in [0, 1], None with
    fr_note saying why. variant: the prompt variant used ("score" falls back to "images_only"
    when there is no FR score)."""

    images: tuple[Image.Image, Image.Image]  # as the model sees them: aligned face crops
    prompt: str
    variant: str
    fr_score: float | None
    fr_note: str


@dataclass(frozen=True)
class VerificationResult:
    """verdict: "Match" | "Non-Match" | "Uncertain" | None (the reply states none).
    explanation: the reply after its verdict line (the whole reply when there is none).
    llr: the model's raw llr_answer (log10); None with lr_note saying why it is missing.
    log10_lr: what is reported: calibrated when `calibration` is set, else the raw llr.
    verbal: log10_lr on the verbal scale (facellm.verbal).
    calibration_note: which calibration was applied, or why none was."""

    verdict: str | None
    explanation: str
    reply: str
    prompt: str
    variant: str
    llr: float | None
    log10_lr: float | None
    verbal: str | None
    fr_score: float | None
    fr_note: str
    calibration: Calibration | None
    calibration_note: str
    lr_note: str = ""
    fused_log10_lr: float | None = None
    fusion_note: str = ""
    marks: tuple[ClaimMark, ...] = ()

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    @property
    def conflict(self) -> str | None:
        """A warning when the model's LR and the FR score point in opposite directions (one
        supports the same person, the other different persons); None when they agree, when
        either is missing, and when the LR is exactly 1."""
        if self.log10_lr is None or self.fr_score is None or self.log10_lr == 0:
            return None
        lr_same, fr_same = self.log10_lr > 0, self.fr_score >= SFACE_MATCH_SIMILARITY
        if lr_same == fr_same:
            return None
        return (f"The model's LR and the FR score point in opposite directions: the LR "
                f"({format_lr(self.log10_lr)}) supports {H1 if lr_same else H2}, while the FR score "
                f"{self.fr_score:.3f} is {'at or above' if fr_same else 'below'} SFace's match threshold "
                f"{SFACE_MATCH_SIMILARITY:.3f} and supports {H1 if fr_same else H2}.")

    @property
    def lr(self) -> float | None:
        """10 ** log10_lr (inf where that overflows)."""
        if self.log10_lr is None:
            return None
        return math.inf if self.log10_lr > 308 else 10.0 ** self.log10_lr

    def markdown(self) -> str:
        """The result panel: verdict, explanation, LR with its verbal equivalent, FR score."""
        verdict = self.verdict or "not stated: the reply has no parseable \"Match Verdict:\" line"
        label = "calibrated" if self.calibrated else "uncalibrated"
        if self.log10_lr is None:
            lr_line = f"**Likelihood ratio ({label}):** unavailable: {self.lr_note}"
        else:
            lr_line = (f"**Likelihood ratio ({label}):** LR = {format_lr(self.log10_lr)} "
                       f"(log10 LR = {self.log10_lr:+.2f}), {self.verbal}")
        fr_line = (f"**FR score (SFace similarity):** {self.fr_score:.3f}" if self.fr_score is not None
                   else f"**FR score:** {self.fr_note}")
        conflict = [f"> **⚠ Conflicting evidence.** {self.conflict}"] if self.conflict else []
        fused = ([f"**Fused LR (FR score + explanation):** LR = {format_lr(self.fused_log10_lr)} "
                  f"(log10 LR = {self.fused_log10_lr:+.2f}), {verbal_scale(self.fused_log10_lr)}"]
                 if self.fused_log10_lr is not None else [])
        return "\n\n".join([
            "### Verification", *conflict, f"**Verdict:** {verdict}",
            f"**Explanation:** {self.explanation or '(none)'}", *self.claims_markdown(), lr_line, *fused, fr_line,
            f"_LR: the model's likelihood of its own answer after a Match versus a Non-Match "
            f"verdict (llr_answer, prompt variant {self.variant}). {self.calibration_note}"
            f"{' ' + self.fusion_note if self.fusion_note else ''}_",
        ])

    def claims_markdown(self) -> list[str]:
        """The claims table: each claim with its mark and what gave it ("" when there are none)."""
        if not self.marks:
            return []
        icon = {"supported": "✔ supported", "contradicted": "✘ contradicted", "not checkable": "? not checkable"}
        rows = [f"| {m.text} | {icon[m.mark]} | {m.by_model or '-'} | {m.by_truth or '-'} | {m.by_itself or '-'} |"
                for m in self.marks]
        return ["**Claims of the explanation:**\n\n| claim | mark | model's own answers | ground truth | itself |\n"
                "|---|---|---|---|---|\n" + "\n".join(rows)]


def parse_answer(question: str, reply: str) -> str | None:
    """What the parser of the task whose prompt `question` is (`Task.prompt_variant`) reads from
    the reply, in words ("expression: happy"); None when the question is no task's prompt."""
    for name, task_cls in TASKS.items():
        task = task_cls()
        if (variant := task.prompt_variant(question)) is not None:
            conversation = Conversation("chat", name, variant, question, "", [], {})
            return f"{name}: {task.answer_text(task.parse(reply, conversation))}"
    return None


class FaceAssistant:
    """backend: any facellm Backend (vLLM server, vLLM in-process, transformers).
    calibration: (model, variant) -> Calibration (facellm.calibrators.load); None = report raw LLRs.
    fusion: (model, variant) -> Fusion of the FR score with the LLR (facellm.calibrators.load); None = none.
    truths: file digest (`file_digest`) -> a face's ground-truth attributes (`example_truths`), to
        mark the claims about example faces against it.
    check_claims: ask the model about each face of a pair on its own (two describe requests) and
        mark the explanation's claims against its answers.
    analyzer: the FR model (YuNet + SFace); default the shared one.
    max_tokens: longest reply, in tokens (eval's default).
    align: how faces are aligned before the model sees them, as the training data was
        (`facellm.align`; the data configs' default); None = images as given."""

    def __init__(self, backend: Backend, calibration: Mapping[tuple[str, str], Calibration] | None = None,
                 analyzer: FaceAnalyzer | None = None, max_tokens: int = 384,
                 align: AlignSpec | None = AlignSpec(), fusion: Mapping[tuple[str, str], Fusion] | None = None,
                 truths: Mapping[str, Mapping[str, Any]] | None = None, check_claims: bool = True) -> None:
        self.backend = backend
        self.calibration = dict(calibration or {})
        self.fusion = dict(fusion or {})
        self.truths = dict(truths or {})
        self.check_claims = check_claims
        self.analyzer = analyzer or get_analyzer()
        self.max_tokens = max_tokens
        self.align = align

    @property
    def models(self) -> list[str]:
        """The model choices: "base", then the adapters the backend serves."""
        return [BASE, *self.backend.adapters]

    def prepare(self, images: Sequence[Image.Image]) -> tuple[list[Image.Image], list[str]]:
        """The images as the model must see them (aligned face crops, as in training and eval)
        and one warning per image in which no face was found (that one is passed unaligned)."""
        out, warnings = [], []
        for i, image in enumerate(images, 1):
            try:
                out.append(align_face(image, self.align, self.analyzer)[0] if self.align else image)
            except NoFaceError:
                out.append(image)
                warnings.append(f"No face found in image {i} of {len(images)}: the model sees it unaligned, "
                                "and its answer may not be about a face.")
            else:
                if not self.align and not self.analyzer.detect(image):
                    warnings.append(f"No face detected in image {i} of {len(images)}: the answer may not "
                                    "be about a face.")
        return out, warnings

    def face_warnings(self, images: Sequence[Image.Image]) -> list[str]:
        """One sentence per image in which YuNet finds no face."""
        return self.prepare(images)[1]

    def ask(self, images: Sequence[Image.Image], question: str, adapter: str | None = None) -> Iterator[str]:
        """The reply so far, each time it grows (greedy decoding, as in eval).
        images: as the model sees them (`prepare` aligns raw photos). question: empty =
        DEFAULT_QUESTION. adapter: None = the base model."""
        request = ChatRequest(list(images), question or DEFAULT_QUESTION, max_tokens=self.max_tokens,
                              adapter=adapter)
        return itertools.accumulate(self.backend.stream_chat(request))

    def verification_query(self, image_a: Image.Image, image_b: Image.Image,
                           variant: Variant = "images_only") -> VerificationQuery:
        """The task's first verification prompt, with the FR score block for variant "score";
        the FR score comes from the photos as given, the model sees them aligned (`prepare`)."""
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        try:
            score, note = self.analyzer.similarity(image_a, image_b), "SFace similarity"
        except NoFaceError as e:
            score, note = None, f"FR score unavailable: {e}"
        if score is None:
            variant = "images_only"
        # the task's own score block: the exact text training and eval put in the prompt
        prompt = verification.PROMPTS[0] + verification.VerificationTask().score_block(score, variant)
        aligned, _ = self.prepare([image_a, image_b])
        return VerificationQuery((aligned[0], aligned[1]), prompt, variant, score, note)

    def own_answers(self, images: Sequence[Image.Image], adapter: str | None = None) -> list[dict[str, bool]]:
        """The model's answers about each face on its own: the attributes task's describe prompt
        (as eval's self-consistency asks it), read with the task's parser; one batched request each."""
        requests = [ChatRequest([image], attributes.DESCRIBE_PROMPTS[0], max_tokens=OWN_ANSWER_TOKENS["describe"],
                                adapter=adapter) for image in images]
        return [attributes.parse_attributes(r.text) for r in self.backend.chat(requests)]

    def truth_of(self, files: Sequence[str | Path]) -> tuple[Mapping[str, Any], ...] | None:
        """The ground truth of every file when all are known examples (`truths`), else None."""
        found = tuple(self.truths.get(file_digest(f)) for f in files) if self.truths else (None,)
        return None if any(t is None for t in found) else found

    def _fused(self, model: str, variant: str, fr_score: float | None, llr: float | None) -> tuple[float | None, str]:
        fusion = self.fusion.get((model, variant))
        if fusion is None or fr_score is None or llr is None:
            return None, ""
        return fusion.apply(fr_score, llr), (
            f"Fused LR: the logistic fusion of the FR score with the LLR fitted in {fusion.source}; it assumes "
            "the FR scores there are SFace similarities, as here (SynthFace evaluations use a simulated FR score).")

    def assess(self, query: VerificationQuery, reply: str, adapter: str | None = None,
               truth: Sequence[Mapping[str, Any]] | None = None) -> VerificationResult:
        """Parse a reply to `query` and score it: verdict, explanation, LR, fused LR, and the
        claims marked (by the model's own answers when `check_claims`, by `truth`: the two faces'
        ground-truth attributes, when given, and by themselves)."""
        parsed = verification.parse_verification(reply)
        llr, lr_note = None, ""
        try:
            [llrs], _ = pair_llrs(self.backend, [(query.images, query.prompt, parsed["explanation"])], adapter,
                                  batch_size=1, progress=False)
            llr = llrs.answer
        except ValueError as e:  # the reply cannot be scored token by token (see base.scored_span)
            lr_note = str(e)
        model = BASE if adapter is None else adapter
        calibration = self.calibration.get((model, query.variant))
        if calibration is not None:
            note = f"Calibrated with the logistic calibration of {calibration.source}."
        elif self.calibration:
            note = f"Uncalibrated: the calibration file has none for model {model!r} with variant {query.variant!r}."
        else:
            note = "Uncalibrated: give the demo an eval's calibrators.json with --calibration to calibrate."
        log10_lr = None if llr is None else (calibration.apply(llr) if calibration else llr)
        fused, fusion_note = self._fused(model, query.variant, query.fr_score, llr)
        own = self.own_answers(query.images, adapter) if self.check_claims else None
        return VerificationResult(
            verdict=parsed["verdict"], explanation=parsed["explanation"], reply=reply, prompt=query.prompt,
            variant=query.variant, llr=llr, log10_lr=log10_lr,
            verbal=None if log10_lr is None else verbal_scale(log10_lr), fr_score=query.fr_score,
            fr_note=query.fr_note, calibration=calibration, calibration_note=note, lr_note=lr_note,
            fused_log10_lr=fused, fusion_note=fusion_note,
            marks=tuple(claim_marks(parsed["explanation"], own, truth)))

    def verify(self, image_a: Image.Image, image_b: Image.Image, adapter: str | None = None,
               variant: Variant = "images_only", truth: Sequence[Mapping[str, Any]] | None = None
               ) -> VerificationResult:
        """Ask the verification prompt, wait for the whole reply, and assess it."""
        query = self.verification_query(image_a, image_b, variant)
        reply = ""
        for reply in self.ask(query.images, query.prompt, adapter):
            pass
        return self.assess(query, reply, adapter, truth)


# ---------------------------------------------------------------- what the model was trained on

DEFAULT_MODEL = "facellm_tiny"


def drawn_faces_only(model: str | Path) -> bool:
    """Whether `model` (registry name or folder; a LoRA adapter folder too) is the offline
    default or an adapter on it: pre-trained on drawn SynthFace faces only. Read from the
    registry name, the folder's facellm_build.json (written by `facellm models build-default`,
    also for the shipped adapter) or facellm_model.json (`build_default_model`), or, for an
    adapter, the same files in the base its adapter_config.json names. Never downloads."""
    if str(model) == DEFAULT_MODEL:
        return True
    folder = Path(model).expanduser()
    if not folder.is_dir():
        return False
    if _default_stamp(folder):
        return True
    config = folder / "adapter_config.json"
    if config.is_file():
        base = json.loads(config.read_text()).get("base_model_name_or_path")
        return bool(base) and (base == DEFAULT_MODEL or (Path(base).is_dir() and _default_stamp(Path(base))))
    return False


def _default_stamp(folder: Path) -> bool:
    from facellm.models.shipped import read_stamp

    stamp = read_stamp(folder) or {}
    if "build-default" in str(stamp.get("made_by", "")) or "base_fingerprint" in stamp:
        return True
    info = folder / "facellm_model.json"
    return info.is_file() and str(json.loads(info.read_text()).get("builder", "")).startswith("facellm.models.default")


def drawn_faces_note(model: str | Path, adapters: Mapping[str, str | Path] | None = None) -> str | None:
    """The warning a front end shows when the base model or an adapter in use was trained on
    drawn faces only (see `drawn_faces_only`); None otherwise."""
    names = ([f"model `{model}`"] if drawn_faces_only(model) else []) + [
        f"adapter `{name}`" for name, path in (adapters or {}).items() if drawn_faces_only(path)]
    if not names:
        return None
    return (f"Trained on drawn faces only: {', '.join(names)} learnt from SynthFace's drawn cartoon faces "
            "(the offline default facellm_tiny and its adapters), never from photographs; its answers and "
            "likelihood ratios about real photos mean nothing.")


# ---------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    """A demo example: a label, the question, and 1-2 PNG files."""

    label: str
    question: str
    files: tuple[str, ...]
    truths: tuple[dict[str, Any], ...] = ()  # each file's ground-truth attributes (SynthFace)


def example_truths(examples: Sequence[Example]) -> dict[str, dict[str, Any]]:
    """file digest -> ground-truth attributes of every example file (FaceAssistant's `truths`)."""
    return {file_digest(f): t for e in examples for f, t in zip(e.files, e.truths)}


def synthface_examples(folder: str | Path, seed: int = 0, n_identities: int = 500, size: int = 160
                       ) -> list[Example]:
    """Write SynthFace faces of two test-split identities (held out from training with the
    default data config: 500 identities, seed 0) to `folder` as PNG files, and the examples
    that use them: one face with the expression prompt, one with the attributes prompt, a
    same-person pair and a different-person pair. Rendered as the data config renders them
    (160 px, photo-like pose), so the demo aligns them as it aligns an upload."""
    from facellm.synthface import iter_synthface_records

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    records = list(itertools.islice(iter_synthface_records("test", n_identities, 2, seed, size), 4))
    paths = []
    for record in records:  # a_0, a_1: one identity; b_0, b_1: another
        path = folder / f"synthface_{record.identity}_{record.id.rsplit('/', 1)[1]}.png"
        record.image.save(path)
        paths.append(str(path))
    a0, a1, b0, _ = paths
    ta0, ta1, tb0, _ = (dict(r.attributes) for r in records)
    return [Example("one face: expression", expression.PROMPTS[0], (a0,), (ta0,)),
            Example("one face: attributes", attributes.DESCRIBE_PROMPTS[0], (b0,), (tb0,)),
            Example("pair: same person", verification.PROMPTS[0], (a0, a1), (ta0, ta1)),
            Example("pair: different persons", verification.PROMPTS[0], (a0, b0), (ta0, tb0))]
