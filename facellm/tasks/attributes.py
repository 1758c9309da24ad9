"""Attribute QA: a yes/no question about one attribute, or "describe the attributes".

Sample: a FaceRecord with `attributes`. Conversations:
    yesno:    "Is the person wearing eyeglasses? Answer yes or no."  -> "Yes"
    describe: "List the facial attributes of this person."           -> "eyeglasses: yes\nbeard: no\n..."
"""

from __future__ import annotations

import random
import re
from typing import Any

from facellm.attributes import BINARY_ATTRIBUTES
from facellm.schema import FaceRecord, Sample
from facellm.tasks.base import Conversation

YESNO_PROMPTS = (
    "{question} Answer yes or no.",
    "Look at the face. {question} Answer yes or no.",
    "{question} Reply with yes or no.",
)
DESCRIBE_PROMPTS = (
    "List the facial attributes of this person.",
    "Describe the attributes of this face, one per line.",
    "Which of the listed attributes does this face have? Give each as yes or no.",
)


def attribute_label(key: str) -> str:
    """How an attribute is named in describe targets: `wearing_hat` -> `wearing hat`."""
    return key.replace("_", " ")


_LABEL_TO_KEY = {attribute_label(k): k for k in BINARY_ATTRIBUTES}


def binary_labels(record: FaceRecord) -> dict[str, bool]:
    """The record's binary attributes that the vocabulary knows, in vocabulary order."""
    return {k: bool(record.attributes[k]) for k in BINARY_ATTRIBUTES
            if isinstance(record.attributes.get(k), bool)}


class AttributeTask:
    name = "attributes"
    variants = ("yesno", "describe")

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
                target = "\n".join(f"{attribute_label(k)}: {'yes' if v else 'no'}" for k, v in labels.items())
                out.append(Conversation(sample.id, self.name, "describe", rng.choice(DESCRIBE_PROMPTS), target,
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
        return parse_attribute_lines(response)

    def score(self, parsed: Any, conversation: Conversation) -> dict[str, Any]:
        extras = conversation.extras
        if "attribute" in extras:
            return {"attribute": extras["attribute"], "label": extras["label"], "prediction": parsed,
                    "correct": parsed is not None and parsed == extras["label"]}
        per = {k: parsed.get(k) == v for k, v in extras["labels"].items()}
        return {"labels": extras["labels"], "prediction": parsed, "per_attribute": per,
                "correct": all(per.values())}


def parse_yes_no(text: str) -> bool | None:
    """The first yes/no word of a response; None when there is none."""
    match = re.search(r"\b(yes|no)\b", text.lower())
    return None if match is None else match.group(1) == "yes"


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
