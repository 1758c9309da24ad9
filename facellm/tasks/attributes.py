"""Attribute QA: a yes/no question about one attribute, or "describe the attributes".

Sample: a FaceRecord with `attributes`. Conversations:
    yesno:    "Is the person wearing eyeglasses? Answer yes or no."  -> "Yes"
    describe: "List the facial attributes of this person."           -> "It has eyeglasses, a beard."

A describe answer names the attributes the face has, in the words of `Attribute.noun`; every
attribute it does not name is absent ("It has none of these attributes." for none). Each named
attribute is then a word the model emits when the image shows it, which a small model learns;
an answer per attribute ("eyeglasses: yes\nbeard: no\n...", still parsed) makes every line a
yes/no decision conditioned on the line's name, which the offline default's 4-layer language
model did not learn (describe at the constant-answer floor, 0.765; the named list 0.91 after 300
LoRA steps on the same base: README, issue 9).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from facellm import metrics as M
from facellm.attributes import BINARY_ATTRIBUTES
from facellm.schema import FaceRecord, Sample
from facellm.tasks.base import (
    Aggregation,
    Conversation,
    Record,
    Scored,
    TaskDefaults,
    accuracy,
    parse_rate,
)

YESNO_PROMPTS = (
    "{question} Answer yes or no.",
    "Look at the face. {question} Answer yes or no.",
    "{question} Reply with yes or no.",
)
DESCRIBE_PROMPTS = (
    "List the facial attributes of this person.",
    "Which attributes does this face have?",
    "Name the attributes of this face.",
)
NO_ATTRIBUTES = "It has none of these attributes."


def attribute_label(key: str) -> str:
    """How an attribute is named in describe targets: `wearing_hat` -> `wearing hat`."""
    return key.replace("_", " ")


_LABEL_TO_KEY = {attribute_label(k): k for k in BINARY_ATTRIBUTES}


def describe_answer(labels: dict[str, bool]) -> str:
    """The describe target: the attributes present, by noun, in `labels`' order."""
    present = [BINARY_ATTRIBUTES[k].noun for k, v in labels.items() if v]
    return f"It has {', '.join(present)}." if present else NO_ATTRIBUTES


def binary_labels(record: FaceRecord) -> dict[str, bool]:
    """The record's binary attributes that the vocabulary knows, in vocabulary order."""
    return {k: bool(record.attributes[k]) for k in BINARY_ATTRIBUTES
            if isinstance(record.attributes.get(k), bool)}


def per_attribute_accuracy(rs: Sequence[Record]) -> dict[str, float]:
    """Accuracy of each attribute over the records that ask it (yes/no) or list it (describe)
    (`facellm.metrics.per_attribute_accuracy` on their ground truth and answers)."""
    truths, preds = [], []
    for r in rs:
        if isinstance(r.label, dict):  # describe: every attribute at once
            truths.append(r.label)
            preds.append(r.prediction or {})
        else:
            truths.append({r.values["attribute"]: r.label})
            preds.append({} if r.prediction is None else {r.values["attribute"]: r.prediction})
    return M.per_attribute_accuracy(truths, preds)


def constant_mean_accuracy(rs: Sequence[Record]) -> float:
    """The mean attribute accuracy of the best answer that ignores the image: one word ("Yes")
    to every yes/no question, one attribute list for every face in describe."""
    values: dict[str, list[bool]] = {}
    for r in rs:
        for k, v in (r.label.items() if isinstance(r.label, dict) else [(r.values["attribute"], r.label)]):
            values.setdefault(k, []).append(bool(v))
    shares = {k: float(np.mean(v)) for k, v in values.items()}  # per attribute, how often "yes" is right
    if isinstance(rs[0].label, dict):
        return M.mean_accuracy({k: max(p, 1 - p) for k, p in shares.items()})
    return max(M.mean_accuracy(shares), M.mean_accuracy({k: 1 - p for k, p in shares.items()}))


class AttributeTask(TaskDefaults):
    """Metrics per variant ("attributes/yesno", "attributes/describe"): mean over attributes of
    each attribute's accuracy, and exact match (a describe answer right on every attribute)."""

    name = "attributes"
    variants = ("yesno", "describe")
    report_metrics = ("mean_accuracy", "exact_match", "parse_rate")

    def __init__(self, questions_per_sample: int = 1):
        self.questions_per_sample = questions_per_sample

    def applies_to(self, sample: Sample) -> bool:
        return isinstance(sample, FaceRecord) and bool(binary_labels(sample))

    def conversations(self, sample: FaceRecord, rng: random.Random,
                      variants: tuple[str, ...] | None = None) -> list[Conversation]:
        labels = binary_labels(sample)
        out = []
        for variant in variants or self.variants:
            if variant == "yesno":
                out += [self._yesno(sample, labels, rng, k) for k in range(self.questions_per_sample)]
            elif variant == "describe":
                out.append(Conversation(sample.id, self.name, "describe", rng.choice(DESCRIBE_PROMPTS),
                                        describe_answer(labels),
                                        [sample.image], {"labels": labels}))
            else:
                raise ValueError(f"attributes task has no variant {variant!r}; choose from {self.variants}")
        return out

    def _yesno(self, sample: FaceRecord, labels: dict[str, bool], rng: random.Random, k: int) -> Conversation:
        # Draw the answer first, then an attribute with that answer: otherwise "no" dominates
        # (a face has one hair colour out of five).
        want = rng.random() < 0.5
        keys = [a for a, v in labels.items() if v == want] or list(labels)
        key = rng.choice(keys)
        prompt = rng.choice(YESNO_PROMPTS).format(question=BINARY_ATTRIBUTES[key].question)
        variant = "yesno" if self.questions_per_sample == 1 else f"yesno{k}"
        return Conversation(sample.id, self.name, variant, prompt, "Yes" if labels[key] else "No",
                            [sample.image], {"attribute": key, "label": labels[key]})

    def parse(self, response: str, conversation: Conversation) -> Any:
        if conversation.variant.startswith("yesno"):
            return parse_yes_no(response)
        return parse_attributes(response)

    def score(self, parsed: Any, conversation: Conversation) -> Scored:
        extras = conversation.extras
        if "attribute" in extras:
            correct = parsed is not None and parsed == extras["label"]
            return Scored(extras["label"], parsed, correct, float(correct), {"attribute": extras["attribute"]})
        right = [parsed.get(k) == v for k, v in extras["labels"].items()]
        return Scored(extras["labels"], parsed, all(right), float(np.mean(right)) if right else 0.0)

    def metric_group(self, variant: str) -> str:
        return f"{self.name}/{'yesno' if variant.startswith('yesno') else variant}"

    def aggregations(self) -> dict[str, Aggregation]:
        def parsed_share(rs: Sequence[Record]) -> float:  # describe: an answer that names no attribute is unparsed
            return parse_rate(rs) if rs[0].variant.startswith("yesno") else float(np.mean([bool(r.prediction) for r in rs]))

        return {"mean_accuracy": lambda rs: M.mean_accuracy(per_attribute_accuracy(rs)),
                "per_attribute": per_attribute_accuracy, "exact_match": accuracy,
                "parse_rate": parsed_share, "constant_accuracy": constant_mean_accuracy}

    def prompt_variant(self, prompt: str) -> str | None:
        if prompt in DESCRIBE_PROMPTS:
            return "describe"
        questions = {a.question for a in BINARY_ATTRIBUTES.values()}
        return "yesno" if any(p.format(question=q) == prompt for p in YESNO_PROMPTS for q in questions) else None

    def answer_text(self, parsed: Any) -> str:
        if isinstance(parsed, dict) and len(parsed) == len(BINARY_ATTRIBUTES):  # a list: the rest absent
            return "has " + (", ".join(BINARY_ATTRIBUTES[k].noun for k, v in parsed.items() if v) or "none of the attributes")
        if isinstance(parsed, dict):
            return ", ".join(f"{attribute_label(k)} {'yes' if v else 'no'}" for k, v in parsed.items()) or "none parseable"
        return "not parseable" if parsed is None else ("yes" if parsed else "no")


def parse_yes_no(text: str) -> bool | None:
    """The first yes/no word of a response; None when there is none."""
    match = re.search(r"\b(yes|no)\b", text.lower())
    return None if match is None else match.group(1) == "yes"


def parse_attributes(text: str) -> dict[str, bool]:
    """A describe answer -> {attribute key: present}. `name: yes|no` lines (parse_attribute_lines)
    when there are any; else a list of the attributes the face has ("It has eyeglasses, a beard.",
    `describe_answer`), read by the faithfulness claim parser (synonyms, "no hat"), which answers
    every vocabulary attribute: unnamed ones are absent. {} when the text is neither (unparsed)."""
    lines = parse_attribute_lines(text)
    if lines:
        return lines
    if NO_ATTRIBUTES.lower().rstrip(".") in text.lower():
        return dict.fromkeys(BINARY_ATTRIBUTES, False)
    named: dict[str, bool] = {}
    for claim in M.parse_claims(text, faces=1):
        named.setdefault(claim.attribute, claim.value)  # the first mention, as parse_attribute_lines
    if not named.keys() & BINARY_ATTRIBUTES.keys():
        return {}
    return {k: named.get(k, False) for k in BINARY_ATTRIBUTES}


def parse_attribute_lines(text: str) -> dict[str, bool]:
    """`black hair: yes` lines -> {"black_hair": True}; unknown names and other lines are ignored."""
    out = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        key = _LABEL_TO_KEY.get(name.strip(" -*").lower())
        answer = parse_yes_no(value) if sep else None
        if key is not None and answer is not None:
            out.setdefault(key, answer)
    return out
