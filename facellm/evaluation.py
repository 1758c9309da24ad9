"""Run a model over instruction-dataset rows and turn its answers into per-sample records
and metrics: task metrics, likelihood-ratio metrics for verification explanations, and
faithfulness of the attribute claims in those explanations.

Per-sample record (`facellm.tasks.base.Record`; one JSONL line of the report):
    {"id": "synthface/test/pair-3#verification#score", "system": "lora", "split": "test",
     "task": "verification", "variant": "score", "reference": "Match Verdict: Match ...",
     "response": "Match Verdict: Match ...", "label": true, "prediction": "Match", "correct": true,
     "score": 1.0, "values": {"fr_score": 0.81, "fr_threshold": 0.61, "explanation": "Similarities: ...",
     "claims": {"supported": 4, "hallucinated": 0, "unverifiable": 0}},
     "llrs": {"verdict": 2.1, "answer": 3.4, "explanation": 1.3}, "self_check": null}
What a record holds beyond the row is what its task's `score` gives (`Scored`); the metrics are
what the task declares (`aggregations`, per `metric_group`): this module iterates over them.

Model-likelihood LLRs (log10), from the model's own probabilities for its own answer. With E the
explanation the model wrote (everything after its verdict line), M = "Match Verdict: Match" and
N = "Match Verdict: Non-Match":
    llr_verdict     = log10 P(M | images, prompt) - log10 P(N | images, prompt)
    llr_answer      = log10 P(M, E | images, prompt) - log10 P(N, E | images, prompt)
                    = log10 P(M | images, prompt, E) - log10 P(N | images, prompt, E)   (Bayes)
    llr_explanation = llr_answer - llr_verdict = log10 P(E | M, ...) / P(E | N, ...)
The first is the verdict's posterior log-odds; the last is how much more likely the
explanation text is under a Match verdict than under a Non-Match one: the evidence the
explanation itself carries. All three are scores until calibrated on the calibration split.

Records reach disk as they are made (`RecordLog`, one flushed JSONL line each, in a folder
`prepare_records` stamps with the evaluation's fingerprint), so a run that stops keeps what it
finished and a rerun of the same evaluation continues where it stopped (`evaluate_rows`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from facellm import metrics as M
from facellm.attributes import BINARY_ATTRIBUTES
from facellm.calibrators import LLR_CLIP
from facellm.data.build import row_conversation
from facellm.inference.base import Backend, ChatRequest, ScoreRequest
from facellm.metrics.lr import check_llrs_labels
from facellm.registry import get_task
from facellm.tasks import attributes as attributes_task
from facellm.tasks import demographics
from facellm.tasks.base import PairLLRs, Record, SelfCheck, Task, constant_accuracy
from facellm.tasks.verification import claim_agreement

MATCH, NON_MATCH = "Match Verdict: Match", "Match Verdict: Non-Match"
LLR_KINDS = PairLLRs._fields  # ("verdict", "answer", "explanation")
RECORD_FORMAT = 2  # in an evaluation's fingerprint: records of another format are not resumed
MIXED = "mixed"  # the demographic group of a pair whose two faces are in different groups
TMR_FMRS = {"tmr_at_fmr_1e3": 1e-3, "tmr_at_fmr_1e4": 1e-4}


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def generate(backend: Backend, rows: Sequence[dict[str, Any]], adapter: str | None, max_tokens: int,
             batch_size: int = 64, desc: str = "generate", progress: bool = True) -> list[str]:
    """Greedy answers to the user turn of each row."""
    out: list[str] = []
    with tqdm(total=len(rows), desc=desc, unit="row", disable=not progress) as bar:
        for batch in _batches(rows, batch_size):
            requests = [ChatRequest(list(r["images"]), r["messages"][0]["content"][-1]["text"],
                                    max_tokens=max_tokens, adapter=adapter) for r in batch]
            out += [resp.text for resp in backend.chat(requests)]
            bar.update(len(batch))
    return out


def task_of(name: str, tasks: dict[str, Task] | None = None) -> Task:
    """The task `name` as the dataset was built with it (`tasks`: `facellm.data.build.built_tasks`),
    else with its default arguments."""
    return (tasks or {}).get(name) or get_task(name)()


def score_row(row: dict[str, Any], response: str, tasks: dict[str, Task] | None = None, **tags: Any) -> Record:
    """Parse and score one response with the row's task (`task_of`). Never raises on odd
    responses. tags: Record fields to set (system, split)."""
    conv = row_conversation(row)
    task = task_of(row["task"], tasks)
    scored = task.score(task.parse(response, conv), conv)
    return Record(row["id"], row["task"], row["variant"], conv.target, response, scored.label, scored.prediction,
                  bool(scored.correct), float(scored.score), scored.values, **tags)


def pair_llrs(backend: Backend, pairs: Sequence[tuple[Sequence[Any], str, str]], adapter: str | None,
              batch_size: int = 64, progress: bool = True, verdict_tokens: tuple[int, int] | None = None
              ) -> tuple[list[PairLLRs], tuple[int, int] | None]:
    """PairLLRs of each (images, prompt, explanation): what evaluation records and the demo shows.

    Two scoring requests per pair (verdict line + explanation under M and under N): the verdict
    line's tokens are the first tokens of each continuation (the tokenizer splits at the
    newline), so their log-probabilities give the verdict LLR; the first pair checks that against
    scoring the verdict lines alone, unless `verdict_tokens` gives what an earlier call returned.
    Returns the LLRs and the token counts of M and N (None when there were no pairs).
    """
    if not pairs:
        return [], verdict_tokens
    split = verdict_tokens or _verdict_token_counts(backend, *pairs[0], adapter)
    out: list[PairLLRs] = []
    for batch in tqdm(_batches(pairs, batch_size), desc="likelihood", unit="batch", disable=not progress):
        requests = []
        for images, prompt, explanation in batch:
            tail = _explanation_tail(explanation)
            requests += [ScoreRequest(list(images), prompt, MATCH + tail, adapter),
                         ScoreRequest(list(images), prompt, NON_MATCH + tail, adapter)]
        scored = backend.continuation_logprobs(requests)
        for k in range(len(batch)):
            m, n = scored[2 * k], scored[2 * k + 1]
            verdict = (math.fsum(m[:split[0]]) - math.fsum(n[:split[1]])) / math.log(10)
            answer = (math.fsum(m) - math.fsum(n)) / math.log(10)
            out.append(PairLLRs(verdict, answer, answer - verdict))
    return out, split


def add_model_llrs(backend: Backend, rows: Sequence[dict[str, Any]], records: list[Record],
                   adapter: str | None, batch_size: int = 64, progress: bool = True,
                   verdict_tokens: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """Set `llrs` (`pair_llrs`) on the verification records, in place. Returns the token counts
    of M and N (None while no record was a verification)."""
    todo = [(row, rec) for row, rec in zip(rows, records) if rec.task == "verification"]
    pairs = [(row["images"], row["messages"][0]["content"][-1]["text"], rec.values["explanation"]) for row, rec in todo]
    llrs, split = pair_llrs(backend, pairs, adapter, batch_size, progress, verdict_tokens)
    for (_, rec), llr in zip(todo, llrs):
        rec.llrs = llr
    return split


def _explanation_tail(explanation: str) -> str:
    return "\n" + explanation if explanation else ""


def _verdict_token_counts(backend: Backend, images: Sequence[Any], prompt: str, explanation: str,
                          adapter: str | None) -> tuple[int, int]:
    images = list(images)
    tail = _explanation_tail(explanation)
    alone_m, alone_n, full_m, full_n = backend.continuation_logprobs([
        ScoreRequest(images, prompt, MATCH, adapter, include_end=False),
        ScoreRequest(images, prompt, NON_MATCH, adapter, include_end=False),
        ScoreRequest(images, prompt, MATCH + tail, adapter), ScoreRequest(images, prompt, NON_MATCH + tail, adapter)])
    for alone, full in ((alone_m, full_m), (alone_n, full_n)):
        if abs(math.fsum(alone) - math.fsum(full[:len(alone)])) > 1e-3:
            raise RuntimeError("the verdict line does not tokenize as a prefix of the answer; "
                               "model-likelihood LLRs need a tokenizer that splits at newlines")
    return len(alone_m), len(alone_n)


# ---------------------------------------------------------------- self-consistency (no ground truth)

OwnAnswerMode = Literal["describe", "yesno"]
OWN_ANSWER_TOKENS = {"describe": 256, "yesno": 8}  # a describe reply of SynthFace's 15 attributes is ~70 tokens


def _pair_id(record_id: str) -> str:
    return record_id.split("#", 1)[0]  # "synthface/test/pair-3#verification#score" -> the pair


def _claimed(records: Sequence[Record]) -> dict[tuple[str, int], set[str]]:
    """(pair id, face index) -> the attributes the pair's explanations (any variant) claim about that face."""
    out: dict[tuple[str, int], set[str]] = defaultdict(set)
    for rec in records:
        if rec.task == "verification":
            for claim in M.parse_claims(rec.values.get("explanation") or "", faces=2):
                for face, _ in M.claim_facts(claim):
                    out[_pair_id(rec.id), face].add(claim.attribute)
    return out


def own_answer_requests(rows: Sequence[dict[str, Any]], records: Sequence[Record], mode: OwnAnswerMode
                        ) -> dict[str, tuple[dict[str, Any], int, str, str | None]]:
    """The attribute questions self-consistency asks, by key: (row, face index, prompt,
    attribute asked or None for describe). Only faces that an explanation makes a claim about,
    each face once over a pair's prompt variants: describe asks one question per such face
    (the task's first describe prompt), yesno one per (face, claimed attribute)."""
    row_of = {_pair_id(r["id"]): r for r in rows if r["task"] == "verification"}
    out = {}
    for (pair, face), keys in sorted(_claimed(records).items()):
        if mode == "describe":
            out[f"{pair}#{face}#describe"] = (row_of[pair], face, attributes_task.DESCRIBE_PROMPTS[0], None)
        else:
            for key in sorted(keys):
                prompt = attributes_task.YESNO_PROMPTS[0].format(question=BINARY_ATTRIBUTES[key].question)
                out[f"{pair}#{face}#yesno#{key}"] = (row_of[pair], face, prompt, key)
    return out


def ask_own_answers(backend: Backend, rows: Sequence[dict[str, Any]], records: Sequence[Record],
                    adapter: str | None, log: RecordLog, mode: OwnAnswerMode = "describe", batch_size: int = 64
                    ) -> tuple[dict[tuple[str, int], dict[str, bool]], int]:
    """The model's own answers about each face the explanations make claims about, asked with
    the attributes task's prompts and read with its parser, through `backend` in batches; kept
    in `log` (resumed like the records, as plain JSON lines). Returns ((pair id, face) -> {attribute: answer}, the
    number of requests the answers take, whether sent now or resumed from `log`)."""
    wanted = own_answer_requests(rows, records, mode)
    todo = [k for k in wanted if k not in log.done]
    for batch in _batches(todo, batch_size):
        requests = [ChatRequest([list(wanted[k][0]["images"])[wanted[k][1]]], wanted[k][2],
                                max_tokens=OWN_ANSWER_TOKENS[mode], adapter=adapter) for k in batch]
        replies = [r.text for r in backend.chat(requests)]
        log.append([_own_answer(k, wanted[k], text) for k, text in zip(batch, replies)])
    answers: dict[tuple[str, int], dict[str, bool]] = defaultdict(dict)
    for key in wanted:
        rec = log.done[key]
        answers[rec["pair"], rec["face"]].update(rec["answers"])
    return dict(answers), len(wanted)


def _own_answer(key: str, request: tuple[dict[str, Any], int, str, str | None], reply: str) -> dict[str, Any]:
    _, face, prompt, attribute = request
    if attribute is None:
        found = attributes_task.parse_attributes(reply)
    else:
        answer = attributes_task.parse_yes_no(reply)
        found = {} if answer is None else {attribute: answer}
    return {"id": key, "pair": key.split("#", 1)[0], "face": face, "prompt": prompt, "response": reply,
            "answers": found}


def add_self_consistency(rows: Sequence[dict[str, Any]], records: list[Record],
                         answers: dict[tuple[str, int], dict[str, bool]]) -> None:
    """Set `self_check` (`SelfCheck`) on each verification record, in place: its claims against
    the model's own answers, and per claim checkable both against those answers and against
    ground truth, whether it is self-contradicted and hallucinated."""
    truth = {r["id"]: row_conversation(r).extras for r in rows if r["task"] == "verification"}
    for rec in records:
        if rec.task != "verification":
            continue
        pair, text = _pair_id(rec.id), rec.values.get("explanation") or ""
        claims = M.parse_claims(text, faces=2)
        own = M.self_check(claims, answers.get((pair, 0), {}), answers.get((pair, 1), {}))
        extras = truth[rec.id]
        labels = M.claim_labels(claims, own, M.score_claims(claims, extras["truth_first"], extras["truth_second"]))
        rec.self_check = SelfCheck(
            len(own.consistent), len(own.contradicted), len(own.not_checkable),
            {"both": sum(s and t for s, t in labels), "self_only": sum(s and not t for s, t in labels),
             "truth_only": sum(t and not s for s, t in labels), "neither": sum(not (s or t) for s, t in labels)},
            len(M.self_contradicting_differences(text)))


# ---------------------------------------------------------------- records on disk, resume


class ResumeError(ValueError):
    """A records folder holds the records of an evaluation with another fingerprint."""


def prepare_records(folder: str | Path, fingerprint: dict[str, Any], overwrite: bool = False) -> Path:
    """`folder`, ready for the records of the evaluation `fingerprint` describes (what defines its
    records: model, adapter, rows, generation settings). The records an earlier run of the same
    fingerprint left are kept, for evaluate_rows to resume; those of another are refused with a
    ResumeError naming what changed, unless `overwrite`, which deletes them."""
    folder, wanted = Path(folder), json.loads(json.dumps(fingerprint))  # as it reads back
    stamp = folder / "fingerprint.json"
    if overwrite:
        shutil.rmtree(folder, ignore_errors=True)
    elif stamp.exists() or any(folder.glob("*.jsonl")):
        found = json.loads(stamp.read_text()) if stamp.exists() else {}
        changed = sorted(k for k in found.keys() | wanted.keys() if found.get(k) != wanted.get(k))
        if changed:
            raise ResumeError(f"{folder} holds the records of an evaluation with another {', '.join(changed)}; "
                              "rerun with the same config to resume, or pass --overwrite to start again")
    folder.mkdir(parents=True, exist_ok=True)
    partial = stamp.with_suffix(".tmp")
    partial.write_text(json.dumps(wanted, indent=2, sort_keys=True))
    os.replace(partial, stamp)  # never a half-written stamp
    return folder


class RecordLog:
    """The per-sample records of one (system, split) in a JSONL file, each line flushed as soon
    as its record is made: a run that stops (a crash, a kill, a server gone) keeps every record
    it finished, and the next run skips them. done: row id -> record, as read back from JSON
    (`Record.from_json` turns a record's back into a Record)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.done: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1  # after it: a line the interruption cut short
        for line in data[:end].splitlines():
            if line.strip():
                record = json.loads(line)
                self.done[record["id"]] = record
        if end < len(data):
            with self.path.open("r+b") as fh:
                fh.truncate(end)

    def append(self, records: Sequence[Record | dict[str, Any]]) -> None:
        with self.path.open("a") as fh:
            for record in records:
                line = json.dumps(record.to_json() if isinstance(record, Record) else record, default=_plain)
                fh.write(line + "\n")
                fh.flush()
                done = json.loads(line)
                self.done[done["id"]] = done


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    raise TypeError(f"a record holds a {type(value).__name__}, which JSON cannot store")


def evaluate_rows(backend: Backend, rows: Sequence[dict[str, Any]], adapter: str | None, log: RecordLog, *,
                  max_tokens: int, batch_size: int = 64, likelihood: bool = True,
                  tags: dict[str, Any] | None = None, desc: str = "evaluate",
                  tasks: dict[str, Task] | None = None) -> list[Record]:
    """Every row's record, in row order, with its `groups` (`row_groups`). Rows already in
    `log` keep the record there; the others are answered (generate), scored (score_row with
    `tasks`, and add_model_llrs when `likelihood`) and appended to `log` a batch at a time.
    tags: Record fields each new record gets (system, split)."""
    if len({row["id"] for row in rows}) != len(rows):
        raise ValueError("row ids repeat: records are resumed by row id")
    todo = [row for row in rows if row["id"] not in log.done]
    verdict_tokens = None
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc, unit="row") as bar:
        for batch in _batches(todo, batch_size):
            texts = generate(backend, batch, adapter, max_tokens, batch_size, progress=False)
            records = [score_row(row, text, tasks, **(tags or {})) for row, text in zip(batch, texts)]
            if likelihood:
                verdict_tokens = add_model_llrs(backend, batch, records, adapter, batch_size, progress=False,
                                                verdict_tokens=verdict_tokens)
            log.append(records)
            bar.update(len(batch))
    return [replace(Record.from_json(log.done[row["id"]]), groups=row_groups(row)) for row in rows]


# ---------------------------------------------------------------- demographic groups of a row

def face_groups(face: dict[str, Any]) -> dict[str, str]:
    """The demographic groups one face's ground truth (`FaceRecord.ground_truth()`) carries:
    skin_tone and age_group (SynthFace), gender, race and age (FairFace's age bin, or years
    binned likewise where no age group is given; UTKFace)."""
    meta, attrs = face.get("meta") or {}, face.get("attributes") or {}
    out = {}
    if tone := (meta.get("identity_params") or {}).get("skin_tone"):
        out["skin_tone"] = str(tone)
    if attrs.get("age_group"):
        out["age_group"] = str(attrs["age_group"])
    for key in ("gender", "race"):
        if meta.get(key):
            out[key] = str(meta[key])
    if meta.get("age_bin"):
        out["age"] = str(meta["age_bin"])
    elif face.get("age") is not None and "age_group" not in out:
        out["age"] = demographics.age_group_of_years(face["age"])
    return out


def row_groups(row: dict[str, Any]) -> dict[str, str]:
    """The row's demographic groups (read from the row, so records resumed from disk get them
    too); a pair's group is the one both faces share, else "mixed" (NIST's FMR per group counts
    same-group impostor pairs)."""
    sample = json.loads(row["gt"]).get("sample") or {}
    if "first" in sample and "second" in sample:
        a, b = face_groups(sample["first"]), face_groups(sample["second"])
        groups = {k: a[k] if a[k] == b[k] else MIXED for k in a.keys() & b.keys()}
    else:
        groups = face_groups(sample)
    return dict(sorted(groups.items()))



# ---------------------------------------------------------------- aggregation


def metric_groups(records: Sequence[Record], tasks: dict[str, Task] | None = None
                  ) -> dict[str, tuple[Task, list[Record]]]:
    """Records by the metric group their task puts them in (`Task.metric_group`), in key order."""
    out: dict[str, tuple[Task, list[Record]]] = {}
    for r in records:
        task = task_of(r.task, tasks)
        out.setdefault(task.metric_group(r.variant), (task, []))[1].append(r)
    return dict(sorted(out.items()))


def task_metrics(records: Sequence[Record], tasks: dict[str, Task] | None = None) -> dict[str, dict[str, Any]]:
    """{metric group: {"n": records, metric: value}}: each group's metrics as its task declares
    them (`Task.aggregations`; a metric that is None on the group is left out), with the
    constant-answer floor (`constant_accuracy`) wherever the labels are categories."""
    out = {}
    for key, (task, rs) in metric_groups(records, tasks).items():
        values = {name: fn(rs) for name, fn in task.aggregations().items()}
        if "constant_accuracy" not in values and all(isinstance(r.label, (str, bool)) for r in rs):
            values["constant_accuracy"] = constant_accuracy(rs)
        out[key] = {"n": len(rs), **{k: v for k, v in values.items() if v is not None}}
    return out


def _by_variant(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.variant].append(r)
    return dict(groups)


def self_consistency_tracking(metrics: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Across the cells (system, prompt variant) of an evaluation's metrics: each cell's
    self-contradiction rate beside its ground-truth hallucinated-claim rate, how one tracks
    the other over the cells (`Tracking`), and the per-claim agreement pooled over all cells.
    Empty when no cell has self-consistency."""
    cells = [(system, key.removeprefix("verification/"), m["self_consistency"])
             for system, summary in metrics.items() for key, m in summary.get("tasks", {}).items()
             if key.startswith("verification/") and "self_consistency" in m]
    if not cells:
        return {}
    xs = [c["self_contradiction_rate"] for *_, c in cells]
    ys = [c["hallucinated_claim_rate"] for *_, c in cells]
    pooled = {k: sum(c["agreement"][f"n_{k}"] for *_, c in cells) for k in ("both", "self_only", "truth_only", "neither")}
    return {"cells": [{"system": s, "variant": v, "self_contradiction_rate": x, "hallucinated_claim_rate": y,
                       "n_claims": c["n_claims"]} for (s, v, c), x, y in zip(cells, xs, ys)],
            "tracking": M.tracking(xs, ys)._asdict(), "agreement": claim_agreement(pooled)._asdict()}


# ---------------------------------------------------------------- LR systems


# One policy for non-finite LLRs, here and in facellm.metrics.lr: +-inf (a model certain to the
# last bit) is a valid LLR and is clipped to +-LLR_CLIP wherever it is calibrated, fused, plotted
# or applied (FaceAssistant); NaN is no LLR at all and raises ValueError (check_llrs_labels),
# naming what holds it.


@dataclass
class LRSystem:
    """One LR system on one (system, variant)'s verification pairs (`lr_report`): its test and
    calibration-split LLRs and labels, the test LLRs after each calibrator (`calibrated`:
    "pav" / "logistic"), and `metrics`, what the report shows and metrics.json holds."""

    llrs: np.ndarray
    labels: np.ndarray
    cal_llrs: np.ndarray
    cal_labels: np.ndarray
    calibrated: dict[str, np.ndarray]
    metrics: dict[str, Any]
    ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return self.metrics

    @property
    def logistic(self) -> tuple[float, float]:
        """(slope, intercept) of the logistic calibrator in raw units: log10 LR = slope * llr + intercept."""
        return self.metrics["logistic_slope"], self.metrics["logistic_intercept"]


def lr_report(llrs: np.ndarray, labels: np.ndarray, cal_llrs: np.ndarray, cal_labels: np.ndarray,
              raw_is_llr: bool, what: str = "LLRs") -> LRSystem:
    """Cllr family and discrimination of one LR system; calibrators fitted on the calibration split.

    The logistic calibrator sees standardised inputs (z-scores on the calibration split): its L2
    penalty (lir's default C=1) would otherwise flatten systems whose scores span a narrow range,
    like an FR similarity in [0.45, 0.8]. Its map is reported back in raw units
    (`logistic_slope`, `logistic_intercept`: log10 LR = slope * x + intercept).
    """
    x, labels = check_llrs_labels(llrs, labels, name=f"{what} (test)", both_classes=False)
    cal_x, cal_labels = check_llrs_labels(cal_llrs, cal_labels, name=f"{what} (calibration)", both_classes=False)
    x, cal_x = np.clip(x, -LLR_CLIP, LLR_CLIP), np.clip(cal_x, -LLR_CLIP, LLR_CLIP)
    out: dict[str, Any] = {"n": len(labels), "auc": M.roc_auc(labels, x), "eer": M.eer(labels, x),
                           "cllr_min": M.cllr_min(x, labels), **tmr_at_fmrs(labels, x)}
    if raw_is_llr:
        out["cllr_raw"] = M.cllr(x, labels)
    pav = M.PavCalibrator(add_misleading=1).fit(cal_x, cal_labels)
    mean, std = float(np.mean(cal_x)), float(np.std(cal_x)) or 1.0
    logistic = M.LogisticCalibrator().fit((cal_x - mean) / std, cal_labels)
    slope, intercept = logistic.coef
    out["logistic_slope"], out["logistic_intercept"] = slope / std, intercept - slope * mean / std
    calibrated = {"pav": pav.transform(x), "logistic": logistic.transform((x - mean) / std)}
    for name, values in calibrated.items():
        out[f"cllr_{name}"] = M.cllr(values, labels)
        out[f"cllr_cal_{name}"] = out[f"cllr_{name}"] - out["cllr_min"]
    return LRSystem(x, labels, cal_x, cal_labels, calibrated, out)


def tmr_at_fmrs(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """TMR at FMR 1e-3 and 1e-4 (Sony et al.'s operating points), with the number of non-mated
    pairs behind them: nan where there are fewer than 1/FMR of them, and `tmr_note` saying so."""
    points = {name: M.operating_point(labels, scores, fmr) for name, fmr in TMR_FMRS.items()}
    notes = [f"not estimable: {p.reason}" for p in points.values() if p.reason]
    return {"n_nonmated": int(np.sum(np.asarray(labels) == 0)), **{k: p.tmr for k, p in points.items()},
            "tmr_note": "; ".join(notes) or None}


def lr_systems(test: Sequence[Record], cal: Sequence[Record],
               embedding_lr: Callable[[], Any] | None) -> dict[str, LRSystem]:
    """Every LR system on one (system, variant)'s verification records: model likelihood
    (verdict / answer / explanation, where every record has `llrs`), embedding LR (Sony et
    al.), and the FR score (where every record has one)."""
    labels = np.array([r.label for r in test], dtype=int)
    cal_labels = np.array([r.label for r in cal], dtype=int)
    if len(set(labels)) < 2 or len(set(cal_labels)) < 2:
        return {}
    out: dict[str, LRSystem] = {}
    if all(r.llrs is not None for r in (*test, *cal)):
        for kind in LLR_KINDS:
            out[kind] = lr_report(np.array([getattr(r.llrs, kind) for r in test]), labels,
                                  np.array([getattr(r.llrs, kind) for r in cal]), cal_labels, raw_is_llr=True,
                                  what=f"{kind} LLRs")
    if embedding_lr is not None:
        model = embedding_lr()
        test_z, cal_z = (model.embed([r.values["explanation"] or "-" for r in rs]) for rs in (test, cal))
        model.fit(cal_z, cal_labels)
        out["embedding"] = lr_report(model.transform(test_z), labels, model.transform(cal_z), cal_labels,
                                     raw_is_llr=True, what="embedding LLRs")
        out["embedding"].metrics["separability"] = _separability(test_z, labels)
    if all(r.values.get("fr_score") is not None for r in (*test, *cal)):
        out["fr_score"] = lr_report(np.array([r.values["fr_score"] for r in test]), labels,
                                    np.array([r.values["fr_score"] for r in cal]), cal_labels, raw_is_llr=False,
                                    what="FR scores")
    for rep in out.values():
        rep.ids = [r.id for r in test]
    return out


def _separability(vectors: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Separability of the test explanations' embeddings (mated vs non-mated); nan with a note
    where it is undefined (e.g. every explanation the same text)."""
    try:
        return M.separability(vectors, labels)._asdict()
    except ValueError as e:
        return {"silhouette": float("nan"), "davies_bouldin": float("nan"), "calinski_harabasz": float("nan"),
                "fisher_ratio": float("nan"), "note": str(e)}


# ---------------------------------------------------------------- evidence beyond the FR score


def fusion_metrics(kinds: dict[str, LRSystem], C: float = 1.0) -> dict[str, dict[str, Any]]:
    """Does an explanation LR add evidence to the FR score? For each LR system of one
    (system, variant) besides the FR score (`lr_systems`' output), a logistic fusion of the FR
    score with that system's LLRs (`LogisticFusion`), fitted on the calibration split, against
    the FR score alone calibrated the same way (one-input `LogisticFusion`); both scored on the
    test split. cllr_drop = cllr_fr_score - cllr_fusion (> 0: the explanation adds evidence),
    with its standard error over test pairs (`cllr_drop`). Empty without an FR score."""
    fr = kinds.get("fr_score")
    if fr is None:
        return {}
    labels, cal_labels, fr_test, fr_cal = fr.labels, fr.cal_labels, fr.llrs, fr.cal_llrs
    alone = M.LogisticFusion(C).fit(fr_cal, cal_labels).transform(fr_test)
    out = {}
    for kind, rep in kinds.items():
        if kind == "fr_score":
            continue
        fusion = M.LogisticFusion(C).fit(np.c_[fr_cal, rep.cal_llrs], cal_labels)
        fused = fusion.transform(np.c_[fr_test, rep.llrs])
        drop, se = M.cllr_drop(alone, fused, labels)
        out[kind] = {"n": len(labels), "cllr_fr_score": M.cllr(alone, labels), "cllr_fusion": M.cllr(fused, labels),
                     "cllr_drop": drop, "cllr_drop_se": se, "auc_fusion": M.roc_auc(labels, fused),
                     "weight_fr_score": float(fusion.weights[0]), "weight_llr": float(fusion.weights[1]),
                     "intercept": fusion.intercept}
    return out


# ---------------------------------------------------------------- demographic differentials

DEMOGRAPHIC_KEYS = ("skin_tone", "age_group", "age", "gender", "race")
_TASK_SCALARS = ("accuracy", "mean_accuracy", "uar", "mae")


def demographic_metrics(records: Sequence[Record], lr: dict[str, dict[str, LRSystem]] | None = None
                        ) -> dict[str, dict[str, Any]]:
    """Metrics per demographic group, NIST FRVT Part 3 style, for each group key the test
    records carry in `groups` (`row_groups`) with at least two groups:
        {key: {"groups": {group: {metric: value}}, "ratios": {metric: max_min_ratio(...)._asdict()}}}
    Metrics (`group_metrics`): the task metrics, verification FMR / FNMR of the model's verdict
    and of the FR score at its threshold, Cllr of each logistic-calibrated LR system (`lr`:
    {variant: lr_systems(...)}) and the hallucinated-claim rate. Ratios leave out "mixed"."""
    calibrated = {(variant, kind, i): llr for variant, kinds in (lr or {}).items() for kind, rep in kinds.items()
                  for i, llr in zip(rep.ids, rep.calibrated["logistic"])}
    out = {}
    for key in DEMOGRAPHIC_KEYS:
        by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in records:
            if (group := r.groups.get(key)) is not None:
                by_group[group].append(r)
        if len(by_group.keys() - {MIXED}) < 2:
            continue
        table = {g: group_metrics(rs, calibrated) for g, rs in sorted(by_group.items())}
        names = list(dict.fromkeys(m for t in table.values() for m in t))
        out[key] = {"groups": table,
                    "ratios": {m: M.max_min_ratio({g: t.get(m, math.nan) for g, t in table.items()},
                                                  exclude=(MIXED,))._asdict()
                               for m in names if not m.rsplit("/", 1)[-1].startswith("n_")}}
    return out


def group_metrics(rs: Sequence[dict[str, Any]], calibrated: dict[tuple[str, str, str], float] | None = None
                  ) -> dict[str, float]:
    """The flat metrics of one group's records ("<task>/<metric>"); `calibrated`: (variant,
    LR system, record id) -> calibrated test LLR. A rate needing a class the group lacks is nan."""
    out: dict[str, float] = {"n_rows": len(rs)}
    for key, m in task_metrics(rs).items():
        out |= {f"{key}/{name}": m[name] for name in _TASK_SCALARS if name in m}
        if "faithfulness" in m:
            out[f"{key}/hallucinated_claim_rate"] = m["faithfulness"]["hallucinated_claim_rate"]
    for variant, vs in _by_variant([r for r in rs if r.task == "verification"]).items():
        key, labels = f"verification/{variant}", np.array([bool(r.label) for r in vs], dtype=int)
        verdict = M.match_rates(labels, [r.prediction == "Match" for r in vs])
        out |= {f"{key}/n_mated": verdict.n_mated, f"{key}/n_nonmated": verdict.n_nonmated,
                f"{key}/fmr": verdict.fmr, f"{key}/fnmr": verdict.fnmr}
        if all(r.values.get("fr_score") is not None and r.values.get("fr_threshold") is not None for r in vs):
            fr = M.match_rates(labels, [r.values["fr_score"] >= r.values["fr_threshold"] for r in vs])
            out |= {f"{key}/fr_fmr": fr.fmr, f"{key}/fr_fnmr": fr.fnmr}
        kinds = dict.fromkeys(k for (v, k, _) in (calibrated or {}) if v == variant)
        for kind in kinds:
            llrs = [calibrated.get((variant, kind, r.id)) for r in vs]
            both = 0 < labels.sum() < len(labels) and None not in llrs
            out[f"{key}/cllr/{kind}"] = M.cllr(np.array(llrs, float), labels) if both else math.nan
    return out


def greedy_records(model: Any, processor: Any, rows: Sequence[dict[str, Any]], max_tokens: int = 256,
                   tasks: dict[str, Task] | None = None) -> list[Record]:
    """The scored Records of an in-memory model's greedy answers to `rows`, one row at a time:
    the same prompts, tasks and scoring as a full evaluation."""
    import torch

    from facellm.inference.base import chat_prompt

    tokenizer = processor.tokenizer
    eos = model.generation_config.eos_token_id
    records = []
    for row in rows:
        images = list(row["images"])
        text = chat_prompt(processor, len(images), row["messages"][0]["content"][-1]["text"])
        inputs = processor(text=[text], images=images or None, add_special_tokens=False, return_tensors="pt")
        inputs = {k: v.to(model.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id)
        response = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        records.append(score_row(row, response, tasks))
    return records


def mean_scores(records: Sequence[Record], tasks: dict[str, Task] | None = None) -> dict[str, float]:
    """The mean `Record.score` per metric group ("eval_acc/expression", "eval_acc/attributes/describe" ...)."""
    hits: dict[str, list[float]] = defaultdict(list)
    for record in records:
        hits[task_of(record.task, tasks).metric_group(record.variant)].append(record.score)
    return {f"eval_acc/{k}": float(np.mean(v)) for k, v in sorted(hits.items())}


def quick_eval(model: Any, processor: Any, rows: Sequence[dict[str, Any]], max_tokens: int = 256,
               tasks: dict[str, Task] | None = None) -> dict[str, float]:
    """Greedy answers of an in-memory model (training's periodic evaluation) -> the mean
    `Record.score` per metric group: the same prompts, tasks and scoring as a full evaluation."""
    return mean_scores(greedy_records(model, processor, rows, max_tokens, tasks), tasks)
