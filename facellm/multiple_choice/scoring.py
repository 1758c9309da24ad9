"""Scoring multiple-choice items two ways, on any backend, and the report of both.

By generation: the model answers the prompt (`mc_prompt`), `parse_choice` reads a letter from
the answer; an answer without one is wrong and counted as unparsed.

By likelihood, as lm-evaluation-harness scores `multiple_choice` tasks: the log-probability of
each option's continuation given the prompt (`Backend.continuation_logprobs`, the assistant turn),
    acc      = [argmax_i  loglik_i == answer]
    acc_norm = [argmax_i  loglik_i / bytes_i == answer],  bytes_i = len(continuation_i.encode("utf-8"))
The continuation is the option's text (lm-eval's ARC / HellaSwag style, where acc_norm matters)
or its letter (MMLU style; then acc_norm = acc). lm-eval's code divides by len(str), the
character count: the same for ASCII options. Its end-of-sequence token is not scored either.

Per-item record (one line of samples.jsonl):
    {"id": "synthface_expression_mcq/3", "system": "base", "category": "synthface/expression",
     "answer": "C", "response": "C", "choice_generate": "C", "unparsed": false,
     "logliks": [-4.1, -3.2, -1.9, -5.0], "bytes": [5, 7, 3, 4],
     "choice_acc": "C", "choice_acc_norm": "C", "correct": {"generate": true, "acc": true, "acc_norm": true}}
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from tqdm.auto import tqdm

from facellm.inference.base import Backend, ChatRequest, ScoreRequest
from facellm.multiple_choice.items import MCItem, item_images, mc_prompt

Continuation = Literal["option", "letter"]
WAYS = ("generate", "acc", "acc_norm")  # generation, likelihood argmax, byte-normalised likelihood argmax

# "(B) ...", "B.", "B)", "B:" leading the answer, or "b" as the whole answer
_LEADING = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])(?:[.:)\]]|\s*$))")
# "the answer is (C)", "Answer: C", "option C", "I choose C" (the letter itself is case-sensitive)
_STATED = re.compile(r"(?i:\b(?:answer|option|choice|choose|select)\w*)\s*(?i:is|would be)?\s*:?\s*"
                     r"\(?([A-Z])\)?(?![\w'])")
# a capital letter standing alone: "(C)", "C."
_ALONE = re.compile(r"(?<![\w'])\(?([A-Z])\)?(?![\w'])")


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").split())


def parse_choice(response: str, options: Sequence[str]) -> str | None:
    """The letter an answer picks among `options` (lettered A, B, ...), None when it picks none.

    In this order: a letter leading the answer or being all of it ("B", "(B)", "B. smiling");
    a stated one ("The answer is C because ..."); exactly one option's text ("smiling", case and
    underscores aside; an option inside a longer matching one does not count: "not smiling"
    is not "smiling"); a single letter standing alone in prose ("I'd say C."). "A" followed by
    a lower-case word is the article ("A smiling face"). Several different letters or option
    texts and nothing else: None.
    """
    letters = set("ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)])
    leading = _LEADING.match(response)
    if leading:
        letter = (leading.group(1) or leading.group(2)).upper()
        if letter in letters and (leading.group(1) or not _is_article(response, leading.end(2))):
            return letter
    stated = {m.group(1) for m in _STATED.finditer(response) if not _is_article(response, m.end(1))} & letters
    if len(stated) == 1:
        return stated.pop()
    by_text = _option_in_text(response, options)
    if by_text is not None:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[by_text]
    alone = {m.group(1) for m in _ALONE.finditer(response) if not _is_article(response, m.end(1))} & letters
    return alone.pop() if len(alone) == 1 else None


def _is_article(response: str, end: int) -> bool:
    """Whether the letter ending at `end` is the article "A" of "A smiling face"."""
    return response[end - 1:end] in ("A", "a") and bool(re.match(r"\s+(?!(?:or|and|is|nor)\b)[a-z]", response[end:]))


def _option_in_text(response: str, options: Sequence[str]) -> int | None:
    text = _norm(response)
    found = [i for i, o in enumerate(options)
             if _norm(o) and re.search(rf"(?<!\w){re.escape(_norm(o))}(?!\w)", text)]
    # drop an option whose text is part of another found option's text ("smiling" in "not smiling")
    found = [i for i in found if not any(j != i and _norm(options[i]) in _norm(options[j]) for j in found)]
    return found[0] if len(found) == 1 else None


# ---------------------------------------------------------------- running the model


def _batches(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def generate_answers(backend: Backend, items: Sequence[MCItem], adapter: str | None = None, max_tokens: int = 16,
                     batch_size: int = 32, progress: bool = True) -> list[dict[str, Any]]:
    """Greedy answers: per item {"response", "choice_generate", "unparsed"}."""
    out = []
    for batch in tqdm(_batches(items, batch_size), desc="generate", unit="batch", disable=not progress):
        requests = [ChatRequest(item_images(item), mc_prompt(item), max_tokens=max_tokens, adapter=adapter)
                    for item in batch]
        for item, reply in zip(batch, backend.chat(requests)):
            choice = parse_choice(reply.text, item.options)
            out.append({"response": reply.text, "choice_generate": choice, "unparsed": choice is None})
    return out


def continuations(item: MCItem, continuation: Continuation = "option") -> list[str]:
    """What is scored per option: its text, or its letter."""
    return list(item.letters) if continuation == "letter" else list(item.options)


def option_logliks(backend: Backend, items: Sequence[MCItem], adapter: str | None = None,
                   continuation: Continuation = "option", include_end: bool = False, batch_size: int = 32,
                   progress: bool = True) -> list[dict[str, Any]]:
    """Per item {"logliks": natural-log likelihood of each option's continuation, "bytes": their
    UTF-8 lengths, "choice_acc", "choice_acc_norm"}. include_end also scores the end-of-turn
    token after the continuation (lm-eval scores none)."""
    out = []
    for batch in tqdm(_batches(items, batch_size), desc="likelihood", unit="batch", disable=not progress):
        requests, n_options = [], []
        for item in batch:
            images, prompt = item_images(item), mc_prompt(item)
            for text in continuations(item, continuation):
                requests.append(ScoreRequest(images, prompt, text, adapter, include_end=include_end))
            n_options.append(len(item.options))
        scored = iter(backend.continuation_logprobs(requests))
        for item, n in zip(batch, n_options):
            logliks = [math.fsum(next(scored)) for _ in range(n)]
            out.append(likelihood_choices(item, logliks, continuation))
    return out


def likelihood_choices(item: MCItem, logliks: Sequence[float], continuation: Continuation = "option"
                       ) -> dict[str, Any]:
    """lm-eval's two picks from the options' log-likelihoods: the largest, and the largest per byte."""
    n_bytes = [len(text.encode("utf-8")) for text in continuations(item, continuation)]
    per_byte = [ll / b for ll, b in zip(logliks, n_bytes)]
    return {"logliks": list(logliks), "bytes": n_bytes,
            "choice_acc": item.letters[_argmax(logliks)], "choice_acc_norm": item.letters[_argmax(per_byte)]}


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: values[i])  # the first of equals, as numpy's argmax


def score_items(backend: Backend, items: Sequence[MCItem], adapter: str | None = None, *,
                ways: Sequence[Literal["generate", "likelihood"]] = ("generate", "likelihood"),
                max_tokens: int = 16, continuation: Continuation = "option", batch_size: int = 32,
                tags: dict[str, Any] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """One record per item (see the module docstring) with the scoring `ways` asked for."""
    records = [{**(tags or {}), "id": item.id, "category": item.category, "answer": item.answer,
                "options": item.options, "correct": {}} for item in items]
    if "generate" in ways:
        for record, got in zip(records, generate_answers(backend, items, adapter, max_tokens, batch_size, progress)):
            record.update(got)
            record["correct"]["generate"] = got["choice_generate"] == record["answer"]
    if "likelihood" in ways:
        for record, got in zip(records, option_logliks(backend, items, adapter, continuation,
                                                       batch_size=batch_size, progress=progress)):
            record.update(got)
            for way in ("acc", "acc_norm"):
                record["correct"][way] = got[f"choice_{way}"] == record["answer"]
    return records


# ---------------------------------------------------------------- report


def mc_metrics(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy of each scoring way overall, per category and per category level ("face" of
    "face/age/basic_5"); the unparsed rate of generation; position bias: how often each letter
    is chosen beside how often it is the answer, and the accuracy on the items whose answer it is."""
    ways = [w for w in WAYS if any(w in r["correct"] for r in records)]
    letters = sorted({r["answer"] for r in records} | {_choice(r, w) for r in records for w in ways} - {None})
    out: dict[str, Any] = {"n": len(records), "ways": ways}
    out["accuracy"] = {w: _mean(r["correct"][w] for r in records) for w in ways}
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_level: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_category[r["category"]].append(r)
        parts = r["category"].split("/")
        for depth in range(1, len(parts)):
            by_level["/".join(parts[:depth])].append(r)
    out["per_category"] = {c: _group(rs, ways) for c, rs in sorted(by_category.items())}
    out["per_level"] = {c: _group(rs, ways) for c, rs in sorted(by_level.items())}
    if "generate" in ways:
        out["unparsed_rate"] = _mean(r["unparsed"] for r in records)
    answers = Counter(r["answer"] for r in records)
    out["answer_share"] = {letter: answers[letter] / len(records) for letter in letters} if records else {}
    out["choice_share"] = {w: {letter: _mean(_choice(r, w) == letter for r in records) for letter in letters}
                           for w in ways}
    out["accuracy_by_answer"] = {w: {letter: _mean(r["correct"][w] for r in records if r["answer"] == letter)
                                     for letter in letters} for w in ways}
    return out


def _choice(record: dict[str, Any], way: str) -> str | None:
    return record.get("choice_generate" if way == "generate" else f"choice_{way}")


def _group(records: Sequence[dict[str, Any]], ways: Sequence[str]) -> dict[str, Any]:
    return {"n": len(records), **{w: _mean(r["correct"][w] for r in records) for w in ways}}


def _mean(flags: Any) -> float:
    flags = [bool(f) for f in flags]
    return sum(flags) / len(flags) if flags else math.nan


def mc_blocks(metrics: dict[str, dict[str, Any]], title: str = "Multiple-choice evaluation") -> list[tuple[str, Any]]:
    """Report blocks (facellm.report) of {system: mc_metrics(...)}: systems side by side."""
    systems = list(metrics)
    columns = [(s, w) for s in systems for w in metrics[s]["ways"]]
    header = ["", "n", *(f"{s} {w}" for s, w in columns)]
    legend = ("generate: the letter parsed from the greedy answer (unparsed = wrong); acc / acc_norm: the "
              "option of highest log-likelihood, raw / per byte (lm-eval).")
    blocks: list[tuple[str, Any]] = [("h1", title), ("p", legend)]
    first = metrics[systems[0]] if systems else {"n": 0, "per_category": {}, "per_level": {}}
    rows = [["overall", first["n"], *(metrics[s]["accuracy"][w] for s, w in columns)]]
    for key in ("per_level", "per_category"):
        for name, group in first[key].items():
            rows.append([name, group["n"], *(metrics[s][key][name][w] for s, w in columns)])
    blocks += [("h2", "Accuracy"), ("table", (header, rows))]
    for s in systems:
        m = metrics[s]
        letters = list(m["answer_share"])
        bias = [["answer", *(m["answer_share"][x] for x in letters)]]
        bias += [[f"chosen ({w})", *(m["choice_share"][w][x] for x in letters)] for w in m["ways"]]
        bias += [[f"correct when the answer ({w})", *(m["accuracy_by_answer"][w][x] for x in letters)]
                 for w in m["ways"]]
        blocks.append(("h2", f"Position bias: {s}"))
        if "unparsed_rate" in m:
            blocks.append(("p", f"Unparsed answers (no letter found, scored wrong): {m['unparsed_rate']:.3f}."))
        blocks.append(("table", (["share of items per letter", *letters], bias)))
    return blocks
