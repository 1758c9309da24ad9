"""Supervised pre-training of a vision-language model's vision tower on SynthFace's exact labels.

Caption pre-training alone teaches a randomly initialised vision tower to see only through the
language model's gradient, and on 2 CPU cores that is too weak: after 3000 caption steps the
offline default scored its own image's caption barely better than another face's, while a
logistic regression on the raw pixels read the expression at 0.84 (README, issue 9). So, as a
vision encoder is pre-trained on labelled images before it joins a language model, the tower
(and its merger) is first trained here with one linear head per label on the mean of the image's
output tokens: the expression, the identity traits that verification explanations name, the
per-image attributes, and the continuous identity parameters (z-scored) that tell two people
with the same traits apart. The heads are then dropped; caption pre-training follows.

    metrics = pretrain_vision(model, processor, rows, steps=1000, eval_rows=val_rows)

Rows are instruction rows whose gt holds a SynthFace sample (facellm.synthface); rows with more
or fewer than one image, and repeats of an image, are skipped. Deterministic for a seed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from facellm.training.sft import adamw

# (name, where in gt["sample"]): categorical labels, one softmax head each.
CATEGORICAL: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("expression", ("expression",)),
    ("face_shape", ("meta", "identity_params", "face_shape")),
    ("skin_tone", ("meta", "identity_params", "skin_tone")),
    ("eye_color", ("meta", "identity_params", "eye_color")),
    ("hair_style", ("meta", "identity_params", "hair_style")),
    ("hair_color", ("meta", "identity_params", "hair_color")),
    ("age_group", ("meta", "identity_params", "age_group")),
)
# Per-image yes/no attributes, one logistic output each.
BINARY: tuple[str, ...] = ("bangs", "beard", "mustache", "eyeglasses", "wearing_hat", "wearing_earrings",
                           "wearing_lipstick")
# Continuous identity parameters (px at 112, relative sizes), regressed after z-scoring.
CONTINUOUS: tuple[str, ...] = ("face_width", "face_height", "eye_spacing", "eye_size", "nose_size", "mouth_width",
                               "brow_thickness")


def _get(sample: dict[str, Any], path: tuple[str, ...]) -> Any:
    for key in path:
        sample = sample[key]
    return sample


def _single_images(rows: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    """(images, samples) of the rows with exactly one image, one per distinct sample id."""
    images, samples, seen = [], [], set()
    for row in rows:
        if len(row["images"]) != 1:
            continue
        sample = json.loads(row["gt"]).get("sample") or {}
        if "meta" not in sample or sample["id"] in seen:
            continue
        seen.add(sample["id"])
        images.append(row["images"][0])
        samples.append(sample)
    return images, samples


class _Labels:
    """The label vocabularies and z-scores, fitted on the training samples."""

    def __init__(self, samples: list[dict[str, Any]]):
        self.classes = {name: sorted({str(_get(s, path)) for s in samples}) for name, path in CATEGORICAL}
        cont = np.array([[float(s["meta"]["identity_params"][k]) for k in CONTINUOUS] for s in samples])
        self.mean, self.std = cont.mean(0), cont.std(0) + 1e-6

    def encode(self, samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = {name: torch.tensor([self.classes[name].index(str(_get(s, path))) if str(_get(s, path))
                                   in self.classes[name] else -100 for s in samples])
               for name, path in CATEGORICAL}
        out["binary"] = torch.tensor([[float(s["attributes"][k]) for k in BINARY] for s in samples])
        cont = np.array([[float(s["meta"]["identity_params"][k]) for k in CONTINUOUS] for s in samples])
        out["continuous"] = torch.tensor((cont - self.mean) / self.std, dtype=torch.float32)
        return out


class _Heads(torch.nn.Module):
    def __init__(self, hidden: int, labels: _Labels):
        super().__init__()
        self.categorical = torch.nn.ModuleDict({n: torch.nn.Linear(hidden, len(c)) for n, c in labels.classes.items()})
        self.binary = torch.nn.Linear(hidden, len(BINARY))
        self.continuous = torch.nn.Linear(hidden, len(CONTINUOUS))

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {n: head(pooled) for n, head in self.categorical.items()}
        out["binary"] = self.binary(pooled)
        out["continuous"] = self.continuous(pooled)
        return out


def _loss(out: dict[str, torch.Tensor], y: dict[str, torch.Tensor]) -> torch.Tensor:
    f = torch.nn.functional
    loss = sum(f.cross_entropy(out[n], y[n], ignore_index=-100) for n, _ in CATEGORICAL)
    return loss + f.binary_cross_entropy_with_logits(out["binary"], y["binary"]) + f.mse_loss(out["continuous"], y["continuous"])


def _pooled(model: Any, processor: Any, images: Sequence[Any]) -> torch.Tensor:
    """The mean output token (after the merger) of each image, (n, hidden)."""
    inputs = processor.image_processor(images=list(images), return_tensors="pt")
    feats = model.get_image_features(inputs["pixel_values"].to(model.device), inputs["image_grid_thw"].to(model.device))
    return torch.stack([f.mean(0) for f in feats.pooler_output])


def _scores(model: Any, processor: Any, heads: _Heads, images: list[Any], y: dict[str, torch.Tensor],
            batch: int) -> dict[str, float]:
    """Accuracy per categorical head, mean binary accuracy, R^2 of the continuous parameters."""
    with torch.inference_mode():
        outs = [heads(_pooled(model, processor, images[i:i + batch])) for i in range(0, len(images), batch)]
    out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
    scores = {}
    for n, _ in CATEGORICAL:
        known = y[n] != -100  # a value the training samples never had cannot be predicted
        scores[f"acc/{n}"] = float((out[n][known].argmax(1) == y[n][known]).float().mean()) if known.any() else math.nan
    scores["acc/binary"] = float(((out["binary"] > 0).float() == y["binary"]).float().mean())
    resid = ((out["continuous"] - y["continuous"]) ** 2).mean(0)
    var = y["continuous"].var(0, unbiased=False) + 1e-12
    scores["r2/continuous"] = float((1 - resid / var).mean())
    return scores


def _print_now(line: str) -> None:
    print(line, flush=True)  # a stage of minutes: its progress shows as it happens, also in a log file


def pretrain_vision(model: Any, processor: Any, rows: Any, *, steps: int, batch_size: int = 64, lr: float = 1e-3,
                    warmup: int = 50, weight_decay: float = 0.01, seed: int = 0, eval_rows: Any = None,
                    log_every: int = 100, log: Callable[[str], None] = _print_now) -> dict[str, Any]:
    """Train `model`'s vision tower and merger in place on the labels of `rows`' SynthFace
    samples (see the module docstring); the rest of the model is left as it was.

    steps, batch_size, lr, warmup, weight_decay: AdamW with linear warm-up, then cosine decay to 0.
    eval_rows: rows whose images score the heads at the end (and every log_every steps).
    Returns {"images": n, "steps": steps, "seconds": s, "validation": {metric: value}}.
    """
    images, samples = _single_images(rows)
    if not images:
        raise ValueError("no single-image rows with a SynthFace sample in gt: vision pre-training needs SynthFace rows")
    labels = _Labels(samples)
    y = labels.encode(samples)
    if eval_rows is not None:
        val_images, val_samples = _single_images(eval_rows)
        val_y = labels.encode(val_samples) if val_images else None
    else:
        val_images, val_y = [], None

    vision = model.model.visual  # Qwen2-VL's tower + merger (transformers' Qwen2VLModel.visual)
    frozen = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(False)
    vision.requires_grad_(True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        heads = _Heads(model.config.text_config.hidden_size, labels).to(model.device)
    params = [p for p in vision.parameters()] + list(heads.parameters())
    opt = adamw(params, lr, weight_decay)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    order = np.random.default_rng(seed)
    model.train()
    start, validation = time.monotonic(), {}
    for step in range(1, steps + 1):
        idx = order.integers(0, len(images), batch_size)
        out = heads(_pooled(model, processor, [images[i] for i in idx]))
        loss = _loss(out, {k: v[torch.as_tensor(idx)] for k, v in y.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps:
            line = f"vision pre-training step {step}/{steps}: loss {loss.item():.3f} ({time.monotonic() - start:.0f} s)"
            if val_y is not None:
                model.eval()
                validation = _scores(model, processor, heads, val_images, val_y, batch_size)
                model.train()
                line += " " + " ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in validation.items())
            log(line)
    model.eval()
    for name, p in model.named_parameters():
        p.requires_grad_(frozen[name])
    return {"images": len(images), "steps": steps, "seconds": round(time.monotonic() - start, 1),
            "validation": {k: round(v, 4) for k, v in validation.items()}}
