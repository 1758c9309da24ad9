"""Evaluate a model (base and/or LoRA adapters, any backend) on a facellm instruction dataset
and write a report: metrics.json, samples.jsonl, report.md, report.html, plots/, and the
calibrators it fitted (calibrators.json, facellm.calibrators: what the demo loads).

    facellm eval --config eval/configs/synthface_tiny.yaml [key=value ...] [--overwrite]

Records are written as they are made, under <output_dir>/records/<system>/{test,calibration}.jsonl:
a run that stops (a crash, a kill, a server gone) keeps them, and a rerun of the same config
continues where it stopped. A rerun of a changed config is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from facellm.config import ConfigError, at_least, load_config, positive
from facellm.schema import Split


@dataclass
class SystemArgs:
    name: str                               # how the report calls it
    adapter: str | None = None              # a key of `adapters`; None = the base model


@dataclass
class EvalConfig:
    dataset: str                            # a `facellm data build` output folder
    output_dir: str
    model: str = "facellm_tiny"             # registry name, hub id or folder
    adapters: dict[str, str] = field(default_factory=dict)      # served name -> adapter folder
    systems: list[SystemArgs] = field(default_factory=lambda: [SystemArgs("base")])
    backend: str = "vllm_server"            # vllm_server | vllm_local | hf
    # attach to a running OpenAI-compatible server (likelihood needs vLLM) instead of starting one;
    # a list of URLs spreads the requests over replicas that serve the same models
    server_url: str | list[str] | None = None
    served_model: str | None = None         # the server's name for the base model; None: the one non-adapter
    api_key_env: str | None = None          # environment variable holding the server's API key
    balance: Literal["least_busy", "round_robin"] = "least_busy"  # which replica takes the next request
    max_concurrency: int = 32               # requests in flight at once, over all replicas
    tasks: list[str] | None = None          # None: every task in the dataset
    rows_per_group: int | None = None       # first N test rows per (task, variant); None = all
    calibration_split: Split = "validation"  # LR calibrators and the embedding LR are fitted here
    calibration_rows_per_variant: int | None = None
    test_split: Split = "test"
    max_tokens: int = 384
    batch_size: int = 64
    likelihood: bool = True                 # model-likelihood LLRs (facellm.evaluation)
    embedding_lr: bool = True               # Sony et al.'s embedding LR
    embedding_reg_covar: float = 1e-3
    # the model's own per-image attribute answers, against its explanations' claims (test split)
    self_consistency: Literal["describe", "yesno"] | None = "describe"
    # evaluate each adapter merged into a copy of the base (<output_dir>/merged/<name>), served as a
    # model of its own: the same weights, without the per-request LoRA path (slow on vLLM's CPU backend).
    # "auto": merge when facellm starts the server itself, ask a running server (server_url) by name
    merge_adapters: bool | Literal["auto"] = False


def validate(cfg: EvalConfig) -> None:
    from facellm import registry
    from facellm.inference.factory import BACKENDS

    if cfg.backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {cfg.backend!r}")
    validate_server(cfg)
    for system in cfg.systems:
        if system.adapter is not None and system.adapter not in cfg.adapters:
            raise ConfigError(f"system {system.name!r} names adapter {system.adapter!r}, which is not in adapters "
                              f"({', '.join(cfg.adapters) or 'none'})")
    for task in cfg.tasks or ():
        if task not in registry.TASKS:
            raise ConfigError(f"tasks: unknown task {task!r}; known: {', '.join(registry.TASKS)}")
    if len({s.name for s in cfg.systems}) != len(cfg.systems):
        raise ConfigError("system names must be unique")
    for name in ("rows_per_group", "calibration_rows_per_variant", "max_tokens", "batch_size", "max_concurrency"):
        at_least(getattr(cfg, name), 1, name)
    positive(cfg.embedding_reg_covar, "embedding_reg_covar")


def validate_server(cfg: EvalConfig) -> None:
    """The server keys: URLs that are http(s) addresses, used only by the vllm_server backend."""
    urls = [cfg.server_url] if isinstance(cfg.server_url, str) else cfg.server_url or []
    if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls) or cfg.server_url == []:
        raise ConfigError(f"server_url must be a URL or a non-empty list of URLs, got {cfg.server_url!r}")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"server_url: {url!r} is not an http:// or https:// address")
    if urls and cfg.backend != "vllm_server":
        raise ConfigError(f"server_url is for backend vllm_server; backend is {cfg.backend!r}")
    for key in ("served_model", "api_key_env"):
        if getattr(cfg, key) is not None and not urls:
            raise ConfigError(f"{key} is for a running server: set server_url too")
    if not isinstance(cfg.merge_adapters, bool) and cfg.merge_adapters != "auto":
        raise ConfigError(f"merge_adapters must be true, false or auto, got {cfg.merge_adapters!r}")
    if cfg.merge_adapters is True and urls and any(s.adapter for s in cfg.systems):
        raise ConfigError("merge_adapters needs the adapter folders here: it cannot merge on a running server "
                          "(set merge_adapters=false or auto to ask the server for its adapters by name)")


def merging(cfg: EvalConfig) -> bool:
    """Whether adapter systems are evaluated through merged copies of the base (merge_adapters)."""
    return cfg.merge_adapters is True or (cfg.merge_adapters == "auto" and not cfg.server_url)


def select(rows: Any, tasks: list[str] | None, per_group: int | None, only: str | None = None) -> list[dict]:
    """The first `per_group` rows of each (task, variant), in dataset order."""
    taken: dict[tuple[str, str], int] = defaultdict(int)
    keep = []
    for i, (task, variant) in enumerate(zip(rows["task"], rows["variant"])):
        if (tasks and task not in tasks) or (only and task != only):
            continue
        if per_group is None or taken[task, variant] < per_group:
            taken[task, variant] += 1
            keep.append(i)
    return [rows[i] for i in keep]


def evaluate_system(backend: Any, system: SystemArgs, test: list[dict], cal: list[dict], cfg: EvalConfig,
                    records_dir: Path, served: str | None = None) -> tuple[dict[str, Any], list[Any]]:
    """served: the adapter name to request from `backend` (the system's own unless it was merged)."""
    from facellm.data.build import built_tasks
    from facellm.evaluation import (
        RecordLog,
        add_self_consistency,
        ask_own_answers,
        demographic_metrics,
        evaluate_rows,
        fusion_metrics,
        lr_systems,
        task_metrics,
    )
    from facellm.metrics import EmbeddingLR

    records, tasks = {}, built_tasks(cfg.dataset)
    for split, rows in (("test", test), ("calibration", cal)):
        records[split] = evaluate_rows(backend, rows, served, RecordLog(records_dir / f"{split}.jsonl"),
                                       max_tokens=cfg.max_tokens, batch_size=cfg.batch_size,
                                       likelihood=cfg.likelihood, tags={"system": system.name, "split": split},
                                       desc=f"{system.name}/{split}", tasks=tasks)
    extra = None
    if cfg.self_consistency:
        answers, extra = ask_own_answers(backend, test, records["test"], served,
                                         RecordLog(records_dir / "own_answers.jsonl"), cfg.self_consistency,
                                         cfg.batch_size)
        add_self_consistency(test, records["test"], answers)
    by_variant: dict[str, dict[str, list]] = defaultdict(lambda: {"test": [], "calibration": []})
    for split, recs in records.items():
        for r in recs:
            if r.task == "verification":
                by_variant[r.variant][split].append(r)
    embed = (lambda: EmbeddingLR(reg_covar=cfg.embedding_reg_covar)) if cfg.embedding_lr else None
    lr = {v: lr_systems(g["test"], g["calibration"], embed) for v, g in sorted(by_variant.items())}
    summary = {"adapter": system.adapter, "merged": served is None and system.adapter is not None,
               "tasks": task_metrics(records["test"], tasks), "lr": lr,
               "fusion": {v: fusion_metrics(kinds) for v, kinds in lr.items()},
               "demographics": demographic_metrics(records["test"], lr),
               "self_consistency": {"mode": cfg.self_consistency, "requests": extra}}
    return summary, records["test"] + records["calibration"]


def check_adapter_folders(cfg: EvalConfig) -> None:
    """An adapter folder this run loads must be a peft adapter folder (checked before anything starts)."""
    if cfg.server_url:
        return  # the running server holds its adapters
    for name, path in cfg.adapters.items():
        if not (Path(path) / "adapter_config.json").is_file():
            problem = "holds no adapter_config.json" if Path(path).is_dir() else "does not exist"
            raise ConfigError(f"adapters: {name}: {path} {problem}")


def check_api_key(cfg: EvalConfig) -> None:
    from facellm.inference.factory import api_key

    try:
        api_key(cfg.api_key_env)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def dataset_split(data: Any, name: str, key: str, dataset: str) -> Any:
    if name not in data:
        raise ConfigError(f"{key}: {dataset} has no split {name!r}; it has {', '.join(data) or 'none'}")
    return data[name]


def check_served(backend: Any, systems: list[SystemArgs]) -> None:
    """Every system's adapter is one the backend serves (asked before anything is generated)."""
    from facellm.inference.base import UnknownAdapterError

    where = getattr(backend, "url", "the backend")
    for system in systems:
        if system.adapter is not None and system.adapter not in backend.adapters:
            raise UnknownAdapterError(system.adapter, backend.adapters, f"{where} (system {system.name!r})")


def fingerprint(cfg: EvalConfig, system: SystemArgs, test: list[dict], cal: list[dict]) -> dict[str, Any]:
    """What defines one system's records: a rerun with the same fingerprint resumes them."""
    from facellm.evaluation import RECORD_FORMAT
    from facellm.inference.factory import model_folder

    adapter = cfg.adapters.get(system.adapter) if system.adapter else None
    attached = bool(cfg.server_url)  # the server's own model and adapter files are not ours to read
    stamp = {
        "model": cfg.served_model or cfg.model, "backend": cfg.backend, "adapter": system.adapter,
        "model_files": None if attached else _files_stamp(model_folder(cfg.model)),
        "adapter_files": None if attached or adapter is None else _files_stamp(adapter),
        "dataset": str(Path(cfg.dataset).resolve()), "dataset_build": _build_digest(cfg.dataset),
        "test_rows": _digest([r["id"] for r in test]), "calibration_rows": _digest([r["id"] for r in cal]),
        "max_tokens": cfg.max_tokens, "likelihood": cfg.likelihood, "record_format": RECORD_FORMAT,
    }
    if merging(cfg) and adapter is not None:  # only then: unmerged runs keep their fingerprints
        stamp["merged"] = True
    return stamp


def merged_model(cfg: EvalConfig, name: str, out: Path) -> Path:
    """The base with adapter `name` folded in (facellm.models.lora.merge_adapter), made once per
    base and adapter content under <out>/merged/<name> (a temporary sibling, then a rename)."""
    import json
    import os
    import shutil

    from facellm.inference.factory import model_folder
    from facellm.models.lora import merge_adapter

    folder = out / "merged" / name
    made_from = {"base": _files_stamp(model_folder(cfg.model)), "adapter": _files_stamp(cfg.adapters[name])}
    stamp = folder / "facellm_merge.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == made_from:
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merge_adapter(cfg.model, cfg.adapters[name], tmp)
    (tmp / "facellm_merge.json").write_text(json.dumps(made_from))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def serving_plan(cfg: EvalConfig, out: Path) -> list[tuple[str, dict[str, str], list[tuple[SystemArgs, str | None]]]]:
    """[(model, adapters, [(system, adapter to request)])]: one backend for the base and its
    adapters, or with merge_adapters one for the base systems and one per merged adapter."""
    if not merging(cfg):
        return [(cfg.model, cfg.adapters, [(s, s.adapter) for s in cfg.systems])]
    plan: list[tuple[str, dict[str, str], list[tuple[SystemArgs, str | None]]]] = []
    base = [(s, None) for s in cfg.systems if s.adapter is None]
    if base:
        plan.append((cfg.model, {}, base))
    for name in dict.fromkeys(s.adapter for s in cfg.systems if s.adapter is not None):
        plan.append((str(merged_model(cfg, name, out)), {}, [(s, None) for s in cfg.systems if s.adapter == name]))
    return plan


def _files_stamp(folder: str | Path) -> str:
    """Name, size and content of the files in `folder`: a rebuilt model or retrained adapter
    changes it; a re-export of the same weights (`facellm train --resume` of a finished run
    rewrites its files) does not, so a rerun of the main job resumes its evaluation. Files over
    64 MiB are read at the start, middle and end only (1 MiB each), not gigabytes of weights."""
    files = sorted(p for p in Path(folder).iterdir() if p.is_file())
    return _digest([(p.name, p.stat().st_size, _content_digest(p)) for p in files])


def _content_digest(path: Path, whole_below: int = 64 << 20, chunk: int = 1 << 20) -> str:
    import hashlib

    size, h = path.stat().st_size, hashlib.sha256()
    with open(path, "rb") as fh:
        if size <= whole_below:
            h.update(fh.read())
        else:
            for offset in (0, size // 2, size - chunk):
                fh.seek(offset)
                h.update(fh.read(chunk))
    return h.hexdigest()[:16]


def _build_digest(dataset: str) -> str | None:
    import json

    report = Path(dataset) / "build_report.json"
    return json.loads(report.read_text()).get("digest") if report.is_file() else None


def _digest(items: list[Any]) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def run(cfg: EvalConfig, overwrite: bool = False) -> Path:
    """Evaluate every system, resuming the records an interrupted run of the same config left;
    overwrite: start again where the records are of another config (else ResumeError)."""
    from facellm import calibrators
    from facellm.data.build import load_built
    from facellm.evaluation import prepare_records
    from facellm.inference.factory import open_backend
    from facellm.report import evaluation_blocks, write_report

    check_adapter_folders(cfg)
    check_api_key(cfg)
    data = load_built(cfg.dataset)
    test = select(dataset_split(data, cfg.test_split, "test_split", cfg.dataset), cfg.tasks, cfg.rows_per_group)
    cal = select(dataset_split(data, cfg.calibration_split, "calibration_split", cfg.dataset), cfg.tasks,
                 cfg.calibration_rows_per_variant, only="verification")
    out = Path(cfg.output_dir)
    folders = {s.name: prepare_records(out / "records" / s.name, fingerprint(cfg, s, test, cal), overwrite)
               for s in cfg.systems}
    results: dict[str, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
    for model, adapters, systems in serving_plan(cfg, out):
        with open_backend(cfg.backend, model, adapters, server_url=cfg.server_url,
                          served_model=cfg.served_model, api_key_env=cfg.api_key_env, balance=cfg.balance,
                          max_concurrency=cfg.max_concurrency, log_path=out / "server.log") as backend:
            check_served(backend, [SystemArgs(s.name, served) for s, served in systems])
            for system, served in systems:
                results[system.name] = evaluate_system(backend, system, test, cal, cfg, folders[system.name], served)
    metrics, records = {}, []
    for system in cfg.systems:  # the config's order, whichever server evaluated it
        metrics[system.name], recs = results[system.name]
        records += recs
    calibrators.write(out / "calibrators.json", calibrators.artifact(metrics, cfg.dataset, cfg.calibration_split))
    return write_report(out, metrics, records, evaluation_blocks(metrics, out))


def headline(metrics_path: Path) -> str:
    import json

    metrics = json.loads(metrics_path.read_text())
    lines = []
    for system, m in metrics.items():
        tasks = m["tasks"]
        parts = [f"{k} acc {v['accuracy']:.3f}" for k, v in tasks.items() if "accuracy" in v and isinstance(v["accuracy"], float)]
        parts += [f"{k} mean acc {v['mean_accuracy']:.3f}" for k, v in tasks.items() if "mean_accuracy" in v]
        cllrs = [(rep.get("cllr_logistic"), f"{variant}/{kind}") for variant, kinds in m["lr"].items()
                 for kind, rep in kinds.items() if kind != "fr_score"]
        if cllrs:
            best = min(cllrs, key=lambda c: float(c[0]))
            parts.append(f"best calibrated Cllr {float(best[0]):.3f} ({best[1]})")
        lines.append(f"{system}: " + "; ".join(parts))
    return "\n".join(lines)


def kept_records(output_dir: str) -> str:
    """Where an interrupted run's records are, for its error line ("" when there are none)."""
    folder = Path(output_dir) / "records"
    n = sum(len(p.read_bytes().splitlines()) for p in folder.glob("*/*.jsonl"))
    return f"; {n} records finished so far are kept in {folder}: rerun to resume" if n else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="facellm eval", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the records an earlier run of another config left in output_dir")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(EvalConfig, args.config, overrides)
        validate(cfg)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.check:
        print(f"{args.config}: ok")
        return 0
    from facellm.evaluation import ResumeError
    from facellm.inference.base import BackendError
    from facellm.inference.server import ServerStartError

    try:
        report = run(cfg, overwrite=args.overwrite)
    except (ConfigError, FileNotFoundError, ResumeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (BackendError, ServerStartError) as e:
        print(f"error: {e}{kept_records(cfg.output_dir)}", file=sys.stderr)
        return 1
    print(headline(report.parent / "metrics.json"))
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
