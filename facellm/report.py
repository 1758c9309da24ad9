"""Write an evaluation report folder: metrics.json, samples.jsonl, report.md, report.html, plots/.

The Markdown and HTML pages are rendered from the same list of blocks (headings, tables,
images), so they cannot disagree.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

Block = tuple[str, Any]  # ("h2", text) | ("p", text) | ("table", (header, rows)) | ("img", (path, caption))


def fmt(x: Any) -> str:
    if isinstance(x, bool) or x is None:
        return "-" if x is None else str(x)
    if isinstance(x, float):
        return "nan" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.3f}")
    return str(x)


def to_markdown(blocks: Sequence[Block]) -> str:
    out = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + value)
        elif kind == "p":
            out.append(value)
        elif kind == "table":
            header, rows = value
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "---|" * len(header))
            out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
        elif kind == "img":
            path, caption = value
            out.append(f"![{caption}]({path})")
        out.append("")
    return "\n".join(out)


def to_html(blocks: Sequence[Block], title: str) -> str:
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2", "h3"):
            body.append(f"<{kind}>{html.escape(value)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{html.escape(value)}</p>")
        elif kind == "table":
            header, rows = value
            head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
            cells = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
        elif kind == "img":
            path, caption = value
            body.append(f'<figure><img src="{html.escape(path)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
             "img{max-width:520px}figure{display:inline-block;margin:0.5em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def write_report(out_dir: str | Path, metrics: dict[str, Any], records: Sequence[dict[str, Any]],
                 blocks: Sequence[Block], title: str = "facellm evaluation") -> Path:
    """Write the report files; returns the path of report.html."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(_jsonable(metrics), indent=2))
    with (out / "samples.jsonl").open("w") as fh:
        for record in records:
            fh.write(json.dumps(_jsonable(record)) + "\n")
    (out / "report.md").write_text(to_markdown(blocks))
    (out / "report.html").write_text(to_html(blocks, title))
    return out / "report.html"


# ---------------------------------------------------------------- evaluation report

LR_COLUMNS = ("n", "auc", "eer", "cllr_raw", "cllr_min", "cllr_pav", "cllr_logistic", "cllr_cal_logistic")


def evaluation_blocks(metrics: dict[str, Any], out_dir: str | Path) -> list[Block]:
    """Tables (systems side by side) and plots (under out_dir/plots) of an evaluation's metrics:
    metrics = {system: {"tasks": task_metrics(...), "lr": {variant: lr_systems(...)}}}."""
    from facellm import plots

    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    systems = list(metrics)
    blocks: list[Block] = [("h1", "facellm evaluation"), ("p", f"Systems: {', '.join(systems)}.")]
    blocks += _task_tables(metrics, systems)
    blocks += _lr_tables(metrics, systems)
    for system in systems:
        blocks += _lr_plots(system, metrics[system].get("lr", {}), plot_dir, plots)
        confusion = metrics[system]["tasks"].get("expression", {}).get("confusion")
        if confusion is not None:
            fig, ax = plots.new_figure(size=(5, 4.5))
            from facellm.schema import EXPRESSIONS

            plots.plot_confusion(ax, confusion, EXPRESSIONS, normalize=True)
            ax.set_title(f"expression confusion ({system})")
            name = f"confusion_{system}.png"
            plots.save_figure(fig, plot_dir / name)
            blocks.append(("img", (f"plots/{name}", f"Expression confusion matrix, {system}")))
    return blocks


def _task_tables(metrics: dict[str, Any], systems: list[str]) -> list[Block]:
    rows = []
    keys = sorted({k for s in systems for k in metrics[s]["tasks"]})
    for key in keys:
        for name in ("accuracy", "mean_accuracy", "macro_f1", "uar", "war", "mae", "auc", "eer",
                     "tmr_at_fmr_1e2", "tmr_at_fmr_1e3", "parse_rate"):
            values = [metrics[s]["tasks"].get(key, {}).get(name) for s in systems]
            if any(v is not None for v in values):
                rows.append([key, name, *values])
    faith = []
    for key in keys:
        if key.startswith("verification/"):
            for name in ("hallucinated_claim_rate", "supported_claim_rate", "claims_per_explanation",
                         "explanations_with_hallucination"):
                faith.append([key, name, *[metrics[s]["tasks"].get(key, {}).get("faithfulness", {}).get(name)
                                           for s in systems]])
    blocks: list[Block] = [("h2", "Task metrics (test split)"), ("table", (["task", "metric", *systems], rows))]
    if faith:
        blocks += [("h2", "Faithfulness of verification explanations"),
                   ("p", "Attribute claims parsed from each explanation and checked against ground truth; "
                         "rates are pooled over verifiable claims."),
                   ("table", (["task", "metric", *systems], faith))]
    return blocks


def _lr_tables(metrics: dict[str, Any], systems: list[str]) -> list[Block]:
    rows = []
    for system in systems:
        for variant, kinds in metrics[system].get("lr", {}).items():
            for kind, rep in kinds.items():
                rows.append([system, variant, kind, *[rep.get(c) for c in LR_COLUMNS]])
    if not rows:
        return []
    return [("h2", "Likelihood-ratio metrics of verification explanations"),
            ("p", "log10 LRs; calibrators fitted on the calibration split, metrics on the test split. "
                  "cllr_raw: the system's own LLRs; cllr_min: after PAV on the test set itself (the floor); "
                  "cllr_pav / cllr_logistic: after calibration fitted on the calibration split; "
                  "cllr_cal_logistic = cllr_logistic - cllr_min."),
            ("table", (["system", "variant", "LR system", *LR_COLUMNS], rows))]


def _lr_plots(system: str, lr: dict[str, Any], plot_dir: Path, plots: Any) -> list[Block]:
    from facellm.metrics.lr import ece_curve

    blocks: list[Block] = []
    for variant, kinds in lr.items():
        if not kinds:
            continue
        labels = next(iter(kinds.values()))["_labels"]
        fig, axes = plots.new_figure(1, 3, size=(5, 4.2))
        plots.plot_roc(axes[0], labels, {k: np.clip(r["_llrs"], -300, 300) for k, r in kinds.items()})
        axes[0].set_title(f"ROC, {system} / {variant}")
        best = min(kinds, key=lambda k: kinds[k]["cllr_logistic"])
        calibrated = kinds[best]["_calibrated"]["logistic"]
        plots.plot_tippett(axes[1], calibrated, labels)
        axes[1].set_title(f"Tippett, {best} (logistic-calibrated)")
        plots.plot_ece(axes[2], ece_curve(calibrated, labels))
        axes[2].set_title(f"ECE, {best} (logistic-calibrated)")
        name = f"lr_{system}_{variant}.png"
        plots.save_figure(fig, plot_dir / name)
        blocks.append(("img", (f"plots/{name}", f"ROC of every LR system, and Tippett and ECE plots of the best "
                                                f"calibrated one ({best}), {system} / {variant}")))
    return blocks
