"""Demographic attribute QA: FairFace's age group and the gender label (FairFace, UTKFace).

Samples: FaceRecords of FairFace (`meta["age_bin"]`, `meta["gender"]`) and UTKFace (integer
`age`, binned into FairFace's groups; `meta["gender"]`). Conversations:
    age_group: "Which age group does this person belong to? ..." -> "Age group: 20-29"
    gender:    "What is the gender of this person? ..."          -> "Gender: female"

SynthFace records are never asked: they carry no gender and their own age groups
(young/adult/senior), and the offline default's tokenizer corpus (`tasks.corpus`) is drawn
from every task on SynthFace. Race is never a prompt target; it only breaks metrics down
(`evaluation.face_groups`).
"""

from __future__ import annotations

import random
import re

from facellm.schema import FaceRecord, Sample
from facellm.tasks.base import (
    CLASSIFICATION_REPORT,
    Aggregation,
    Conversation,
    Scored,
    TaskDefaults,
    classification,
)

AGE_GROUPS: tuple[str, ...] = ("0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
_GROUP_ENDS = (3, 10, 20, 30, 40, 50, 60, 70)  # exclusive upper ends of all groups but "70+"
_FAIRFACE_BINS = {g: g for g in AGE_GROUPS[:-1]} | {"more than 70": "70+"}
YEARS_SOURCES = ("utkface",)  # sources whose `age` is a real age in years, binned into AGE_GROUPS
GENDERS: tuple[str, ...] = ("male", "female")
_GENDER_WORDS = {"male": "male", "man": "male", "men": "male", "boy": "male",
                 "female": "female", "woman": "female", "women": "female", "girl": "female"}

AGE_GROUP_OPTIONS = ", ".join(AGE_GROUPS)
AGE_GROUP_PROMPTS = (
    f"Which age group does this person belong to? Answer with one of: {AGE_GROUP_OPTIONS}.",
    f"Estimate the age group of this person ({AGE_GROUP_OPTIONS}).",
)
GENDER_PROMPTS = (
    "What is the gender of this person? Answer male or female.",
    "Is this person male or female?",
)


def age_group_of_years(age: float) -> str:
    """FairFace's age group of an age in years: 26 -> "20-29", 75 -> "70+"."""
    return next((g for end, g in zip(_GROUP_ENDS, AGE_GROUPS) if age < end), AGE_GROUPS[-1])


def age_group_label(record: FaceRecord) -> str | None:
    """The record's age group: FairFace's bin, or the binned age of a `YEARS_SOURCES` record;
    None for any other record (SynthFace's ages are drawn within its own groups)."""
    if record.meta.get("age_bin") in _FAIRFACE_BINS:
        return _FAIRFACE_BINS[record.meta["age_bin"]]
    if record.source in YEARS_SOURCES and record.age is not None:
        return age_group_of_years(record.age)
    return None


def gender_label(record: FaceRecord) -> str | None:
    gender = record.meta.get("gender")
    return gender if gender in GENDERS else None


class _LabelTask(TaskDefaults):
    """One label of a face, asked with one of `prompts`, answered "<prefix> <label>", scored by
    exact match against one of `classes`; applies to the records `label_of` finds a label on."""

    name: str
    variants: tuple[str, ...]  # one: the registry lists it from the class
    prompts: tuple[str, ...]
    prefix: str
    classes: tuple[str, ...]
    report_metrics = CLASSIFICATION_REPORT

    def label_of(self, record: FaceRecord) -> str | None:
        raise NotImplementedError

    def parse(self, response: str, conversation: Conversation) -> str | None:
        raise NotImplementedError

    def applies_to(self, sample: Sample) -> bool:
        return isinstance(sample, FaceRecord) and self.label_of(sample) is not None

    def conversations(self, sample: FaceRecord, rng: random.Random,
                      variants: tuple[str, ...] | None = None) -> list[Conversation]:
        label = self.label_of(sample)
        return [Conversation(sample.id, self.name, self.variants[0], rng.choice(self.prompts), f"{self.prefix} {label}",
                             [sample.image], {"label": label})]

    def score(self, parsed: str | None, conversation: Conversation) -> Scored:
        label = conversation.extras["label"]
        return Scored(label, parsed, parsed == label, float(parsed == label))

    def aggregations(self) -> dict[str, Aggregation]:
        return classification(self.classes)

    def prompt_variant(self, prompt: str) -> str | None:
        return self.variants[0] if prompt in self.prompts else None


class AgeGroupTask(_LabelTask):
    """Age group (FairFace's 9 bins) of a FairFace or UTKFace face; scored by accuracy."""

    name, variants, prompts, prefix, classes = "age_group", ("bins",), AGE_GROUP_PROMPTS, "Age group:", AGE_GROUPS

    def label_of(self, record: FaceRecord) -> str | None:
        return age_group_label(record)

    def parse(self, response: str, conversation: Conversation) -> str | None:
        return parse_age_group(response)


class GenderTask(_LabelTask):
    """Gender label (male / female) of a FairFace or UTKFace face; scored by accuracy."""

    name, variants, prompts, prefix, classes = "gender", ("binary",), GENDER_PROMPTS, "Gender:", GENDERS

    def label_of(self, record: FaceRecord) -> str | None:
        return gender_label(record)

    def parse(self, response: str, conversation: Conversation) -> str | None:
        return parse_gender(response)


def parse_age_group(text: str) -> str | None:
    """The age group after "Age group:", else the first in the text: a range ("20-29",
    "20 to 29"), "70+" / "more than 70" / "over 70", or a number of years binned ("34" -> "30-39")."""
    lowered = text.lower()
    match = re.search(r"age group\s*:\s*(.*)", lowered)
    lowered = match.group(1) if match else lowered
    match = re.search(r"(\d+)\s*(?:-|–|to)\s*(\d+)|(\d+)\s*\+|(?:more than|over|above)\s*(\d+)|(\d+(?:\.\d+)?)",
                      lowered)
    if match is None:
        return None
    low, high, plus, more, years = match.groups()
    if low is not None:
        group = f"{int(low)}-{int(high)}"
        return group if group in AGE_GROUPS else None
    if plus is not None or more is not None:
        return AGE_GROUPS[-1] if int(plus or more) >= 70 else None
    return age_group_of_years(float(years))


def parse_gender(text: str) -> str | None:
    """The gender after "Gender:", else the first gender word (male, woman, ...) in the text."""
    lowered = text.lower()
    match = re.search(r"gender\s*:\s*([a-z]+)", lowered)
    words = [match.group(1)] if match else re.findall(r"[a-z]+", lowered)
    return next((_GENDER_WORDS[w] for w in words if w in _GENDER_WORDS), None)
