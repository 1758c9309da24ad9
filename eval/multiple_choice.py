"""Evaluate models (base and/or LoRA adapters, any backend) on a multiple-choice face benchmark:
FaceXBench, Face-Human-Bench, or a SynthFace set with exact answers built first. Writes
metrics.json, samples.jsonl, report.md and report.html into output_dir.

    facellm eval mc --config eval/configs/synthface_mc.yaml [key=value ...]
    facellm eval mc --config eval/configs/synthface_mc.yaml synthface=null items=/data/facexbench/benchmark

Each system is scored by generation (the letter parsed from its answer) and by option
likelihood (lm-eval's acc and acc_norm); see facellm/multiple_choice/scoring.py.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facellm.config import ConfigError, at_least, load_checked, overrides_epilog


@dataclass
class SynthFaceMCArgs:
    n_per_category: int = 25        # items per category (attributes, expression, age, verification)
    seed: int = 0                   # the SynthFace faces and the option order
    size: int = 160                 # rendered size, before alignment
    align: bool = True              # align as the data build does (YuNet, 112 px, margin 0.3)


@dataclass
class MCEvalConfig:
    items: str                      # a benchmark file or folder of them (*.json, *.jsonl)
    output_dir: str
    synthface: SynthFaceMCArgs | None = None   # build the SynthFace set into `items` first; null: read `items`
    items_format: Literal["auto", "facexbench", "face_human_bench"] = "auto"
    image_root: str | None = None   # where relative image paths start; default: the items file's folder
    image_version: str | None = None  # Face-Human-Bench image: cropped (default where there is one) | original | boxed
    seed: int = 0                   # Face-Human-Bench's option rotation
    limit: int | None = None        # the first N items per category; None = all
    model: str = "facellm_tiny"     # registry name, hub id or folder
    adapters: dict[str, str] = field(default_factory=dict)             # served name -> adapter folder
    systems: dict[str, str | None] = field(default_factory=lambda: {"base": None})  # report name -> adapter (null: base)
    backend: Literal["vllm_server", "vllm_local", "hf"] = "vllm_server"
    server_url: str | None = None   # attach to a running vLLM server instead of starting one
    scoring: list[Literal["generate", "likelihood"]] = field(default_factory=lambda: ["generate", "likelihood"])
    continuation: Literal["option", "letter"] = "option"  # what likelihood scores: the option's text or letter
    max_tokens: int = 16
    batch_size: int = 32


def validate(cfg: MCEvalConfig) -> None:
    for name, adapter in cfg.systems.items():
        if adapter is not None and adapter not in cfg.adapters:
            raise ConfigError(f"systems: {name!r} names adapter {adapter!r}, which is not in adapters "
                              f"({', '.join(cfg.adapters) or 'none'})")
    if not cfg.systems:
        raise ConfigError("systems: name at least one system")
    if not cfg.scoring:
        raise ConfigError("scoring: choose generate, likelihood or both")
    for name in ("limit", "max_tokens", "batch_size"):
        at_least(getattr(cfg, name), 1, name)
    if cfg.synthface:
        at_least(cfg.synthface.n_per_category, 1, "synthface.n_per_category")
        at_least(cfg.synthface.size, 32, "synthface.size")


def build_items(cfg: MCEvalConfig) -> tuple[list[Any], dict[str, int]]:
    """The items to ask (the SynthFace set written first when asked), and what was left out and why."""
    from facellm.inference.base import MAX_IMAGES
    from facellm.multiple_choice import load_items
    from facellm.multiple_choice.synthface import synthface_mc_items, write_facexbench

    if cfg.synthface:
        from facellm.align import AlignSpec

        s = cfg.synthface
        write_facexbench(synthface_mc_items(s.n_per_category, s.seed, s.size, AlignSpec() if s.align else None),
                         cfg.items)
    items = load_items(cfg.items, cfg.items_format, cfg.image_root, cfg.image_version, cfg.seed)
    taken: Counter[str] = Counter()
    kept, skipped = [], Counter()
    for item in items:
        if len(item.images) > MAX_IMAGES:  # the backends take one face or a pair
            skipped[f"more than {MAX_IMAGES} images"] += 1
        elif cfg.limit is None or taken[item.category] < cfg.limit:
            taken[item.category] += 1
            kept.append(item)
    missing = [p for item in kept for p in item.images if isinstance(p, str) and not Path(p).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image files of {cfg.items} do not exist, e.g. {missing[0]} "
                                "(image_root sets where relative paths start)")
    return kept, dict(skipped)


def check_adapters(cfg: MCEvalConfig, backend: Any) -> None:
    """Every system's adapter is one the backend serves (asked before anything is generated)."""
    from facellm.inference.base import UnknownAdapterError

    for name, adapter in cfg.systems.items():
        if adapter is not None and adapter not in backend.adapters:
            raise UnknownAdapterError(adapter, backend.adapters, f"the backend (system {name!r})")


def run(cfg: MCEvalConfig) -> Path:
    from facellm.inference.factory import open_backend
    from facellm.multiple_choice import mc_blocks, mc_metrics, score_items
    from facellm.report import write_report

    for name, path in ({} if cfg.server_url else cfg.adapters).items():
        if not (Path(path) / "adapter_config.json").is_file():
            raise ConfigError(f"adapters: {name}: {path} is no peft adapter folder (no adapter_config.json)")
    items, skipped = build_items(cfg)
    if not items:
        raise ConfigError(f"items: {cfg.items} holds no item this run can ask (left out: {skipped or 'none'})")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    systems, records = {}, []
    with open_backend(cfg.backend, cfg.model, cfg.adapters, server_url=cfg.server_url,
                      log_path=out / "server.log") as backend:
        check_adapters(cfg, backend)
        for name, adapter in cfg.systems.items():
            recs = score_items(backend, items, adapter, ways=cfg.scoring, max_tokens=cfg.max_tokens,
                               continuation=cfg.continuation, batch_size=cfg.batch_size, tags={"system": name})
            systems[name] = mc_metrics(recs)
            records += recs
    metrics = {"items": str(cfg.items), "n_items": len(items), "skipped": skipped, "systems": systems}
    blocks = mc_blocks(systems, f"Multiple choice: {cfg.items}")
    if skipped:
        blocks.insert(1, ("p", "Left out: " + ", ".join(f"{n} items with {why}" for why, n in skipped.items()) + "."))
    return write_report(out, metrics, records, blocks, title="facellm multiple choice")


def headline(metrics: dict[str, Any]) -> str:
    lines = []
    for system, m in metrics["systems"].items():
        parts = [f"{way} {acc:.3f}" for way, acc in m["accuracy"].items()]
        if "unparsed_rate" in m:
            parts.append(f"unparsed {m['unparsed_rate']:.3f}")
        lines.append(f"{system} ({m['n']} items): " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm eval mc", description=__doc__.splitlines()[0],
                                     epilog=overrides_epilog("items=/data/facexbench/benchmark backend=hf"),
                                     allow_abbrev=False)
    parser.add_argument("--config", required=True, help="the run's YAML config")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_checked(MCEvalConfig, args.config, overrides, validate)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    import json

    from facellm.inference.base import BackendError
    from facellm.inference.server import ServerStartError
    from facellm.multiple_choice import MCFormatError

    try:
        report = run(cfg)
    except (ConfigError, FileNotFoundError, MCFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (BackendError, ServerStartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(headline(json.loads((report.parent / "metrics.json").read_text())))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
