"""The text of every task's prompts and targets over a sample of SynthFace, for training the
offline default's tokenizer: every word a task uses becomes a single token."""

from __future__ import annotations

from facellm.tasks import attributes, caption, expression, landmarks, verification
from facellm.tasks.age import PROMPTS as AGE_PROMPTS
from facellm.tasks.base import sample_rng


def task_corpus(n_identities: int = 80, images_per_identity: int = 3, n_pairs: int = 200, seed: int = 0) -> list[str]:
    from facellm import registry, synthface

    texts: list[str] = [*attributes.YESNO_PROMPTS, *attributes.DESCRIBE_PROMPTS, *expression.PROMPTS,
                        *verification.PROMPTS, *AGE_PROMPTS, *caption.SINGLE_PROMPTS, *caption.PAIR_PROMPTS,
                        *landmarks.TEXTS]
    texts += [f"{q} {a}" for q, a in caption.GLOSSARY]
    records = synthface.synthface_records("train", n_identities, images_per_identity, seed, size=32)
    pairs = synthface.synthface_pairs(records, n_pairs, seed=seed)
    for name, task_cls in registry.TASKS.items():
        task = task_cls()
        for sample in [*records, *pairs]:
            if task.applies_to(sample):
                for conv in task.conversations(sample, sample_rng(seed, sample.id, name)):
                    texts += [conv.prompt, conv.target]
    return texts
