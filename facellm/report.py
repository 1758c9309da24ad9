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
    if hasattr(obj, "to_json"):  # an LRSystem: its metrics
        return _jsonable(obj.to_json())
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
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

LR_COLUMNS = ("n", "auc", "eer", "cllr_raw", "cllr_min", "cllr_pav", "cllr_logistic", "cllr_cal_logistic",
              "n_nonmated", "tmr_at_fmr_1e3", "tmr_at_fmr_1e4")
FUSION_COLUMNS = ("n", "cllr_fr_score", "cllr_fusion", "cllr_drop", "cllr_drop_se", "auc_fusion", "weight_fr_score",
                  "weight_llr")
SEPARABILITY_COLUMNS = ("n_mated", "n_nonmated", "silhouette", "davies_bouldin", "calinski_harabasz", "fisher_ratio")


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
    blocks += _separability_table(metrics, systems)
    blocks += _self_consistency_blocks(metrics, systems)
    blocks += _fusion_blocks(metrics, systems, plot_dir, plots)
    blocks += _demographic_blocks(metrics, systems, plot_dir, plots)
    for system in systems:
        blocks += _lr_plots(system, metrics[system].get("lr", {}), plot_dir, plots)
        for key, m in metrics[system]["tasks"].items():  # every classification task's (`classes` beside it)
            if "confusion" in m and "classes" in m:
                fig, ax = plots.new_figure(size=(5, 4.5))
                plots.plot_confusion(ax, m["confusion"], m["classes"], normalize=True)
                ax.set_title(f"{key} confusion ({system})")
                name = f"confusion_{key.replace('/', '_')}_{system}.png"
                plots.save_figure(fig, plot_dir / name)
                blocks.append(("img", (f"plots/{name}", f"{key} confusion matrix, {system}")))
    return blocks


def _report_metrics(key: str) -> tuple[str, ...]:
    """The scalars the task of metric group `key` ("verification/score") declares for the table;
    () for a task the registry does not know (the caller then shows every numeric metric)."""
    from facellm.registry import TASKS

    task = TASKS.get(key.split("/", 1)[0])
    return task.report_metrics if task is not None else ()


def _task_tables(metrics: dict[str, Any], systems: list[str]) -> list[Block]:
    rows = []
    keys = sorted({k for s in systems for k in metrics[s]["tasks"]})
    for key in keys:
        cells = [metrics[s]["tasks"].get(key, {}) for s in systems]
        names = _report_metrics(key) or tuple(dict.fromkeys(
            n for c in cells for n, v in c.items() if n != "n" and isinstance(v, (int, float))))
        for name in ("n", *names, *(() if "constant_accuracy" in names else ("constant_accuracy",))):
            values = [c.get(name) for c in cells]
            if any(v is not None for v in values):
                rows.append([key, name, *values])
    faith = []
    for key in keys:
        if any("faithfulness" in metrics[s]["tasks"].get(key, {}) for s in systems):
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


SELF_CONSISTENCY_COLUMNS = ("n_claims", "self_contradiction_rate", "hallucinated_claim_rate", "not_checkable_rate",
                            "explanations_with_same_value_difference")
AGREEMENT_COLUMNS = ("n", "agreement", "precision", "recall", "kappa")


def _self_consistency_blocks(metrics: dict[str, Any], systems: list[str]) -> list[Block]:
    from facellm.evaluation import self_consistency_tracking

    rows = [[system, key.removeprefix("verification/"), *[m["self_consistency"].get(c) for c in SELF_CONSISTENCY_COLUMNS],
             *[m["self_consistency"]["agreement"].get(c) for c in AGREEMENT_COLUMNS]]
            for system in systems for key, m in metrics[system]["tasks"].items() if "self_consistency" in m]
    if not rows:
        return []
    across = self_consistency_tracking({s: metrics[s] for s in systems})
    t, a = across["tracking"], across["agreement"]
    costs = [f"{s}: {metrics[s]['self_consistency']['requests']} ({metrics[s]['self_consistency']['mode']})"
             for s in systems if (metrics[s].get("self_consistency") or {}).get("requests") is not None]
    return [("h2", "Self-consistency of verification explanations"),
            ("p", "No ground truth needed: the model is asked the attributes task's questions about each face of a "
                  "pair on its own, and each claim of its pairwise explanation is checked against those answers. "
                  "self_contradiction_rate: claims its own answers contradict / claims they can check; "
                  "not_checkable_rate: claims about attributes it gave no answer on / all claims; "
                  "explanations_with_same_value_difference: a difference naming one value for both faces. "
                  "Beside them the ground-truth hallucinated_claim_rate and, per claim checkable both ways, how "
                  "self-contradiction agrees with hallucination (precision and recall of self-contradiction as a "
                  "detector of hallucinated claims, Cohen's kappa)."),
            ("table", (["system", "variant", *SELF_CONSISTENCY_COLUMNS, *[f"claims {c}" for c in AGREEMENT_COLUMNS]],
                       rows)),
            ("p", f"Across the {t['n_cells']} (system, variant) cells with both rates: Pearson r {fmt(t['pearson'])}, "
                  f"Spearman rho {fmt(t['spearman'])} of the self-contradiction rate against the hallucinated-claim "
                  f"rate; pooled per-claim agreement {fmt(a['agreement'])}, kappa {fmt(a['kappa'])} over {a['n']} "
                  f"claims. Extra requests: {', '.join(costs) or 'none'}.")]


def _lr_tables(metrics: dict[str, Any], systems: list[str]) -> list[Block]:
    rows = []
    for system in systems:
        for variant, kinds in metrics[system].get("lr", {}).items():
            for kind, rep in kinds.items():
                rows.append([system, variant, kind, *[rep.metrics.get(c) for c in LR_COLUMNS]])
    if not rows:
        return []
    notes = sorted({rep.metrics["tmr_note"] for s in systems for kinds in metrics[s].get("lr", {}).values()
                    for rep in kinds.values() if rep.metrics.get("tmr_note")})
    return [("h2", "Likelihood-ratio metrics of verification explanations"),
            ("p", "log10 LRs; calibrators fitted on the calibration split, metrics on the test split. "
                  "cllr_raw: the system's own LLRs; cllr_min: after PAV on the test set itself (the floor); "
                  "cllr_pav / cllr_logistic: after calibration fitted on the calibration split; "
                  "cllr_cal_logistic = cllr_logistic - cllr_min. tmr_at_fmr_1e3 / 1e4: true-match rate at "
                  "false-match rate 1e-3 / 1e-4 over the n_nonmated non-mated test pairs; nan (not estimable) "
                  "with fewer than 1/FMR of them."),
            ("table", (["system", "variant", "LR system", *LR_COLUMNS], rows)),
            *[("p", f"TMR {note}.") for note in notes]]


def _separability_table(metrics: dict[str, Any], systems: list[str]) -> list[Block]:
    rows = [[system, variant, *[sep.get(c) for c in SEPARABILITY_COLUMNS]]
            for system in systems for variant, kinds in metrics[system].get("lr", {}).items()
            if "embedding" in kinds and (sep := kinds["embedding"].metrics.get("separability"))]
    if not rows:
        return []
    return [("h2", "Separability of explanation embeddings"),
            ("p", "Sentence embeddings of the test explanations, mated against non-mated pairs (Sony et al.): "
                  "silhouette (-1..1) and Calinski-Harabasz higher, Davies-Bouldin lower is better separated; "
                  "Fisher ratio = |mean difference|^2 / (sum of the two classes' spreads)."),
            ("table", (["system", "variant", *SEPARABILITY_COLUMNS], rows))]


def _fusion_blocks(metrics: dict[str, Any], systems: list[str], plot_dir: Path, plots: Any) -> list[Block]:
    rows = [[system, variant, kind, *[rep.get(c) for c in FUSION_COLUMNS]]
            for system in systems for variant, kinds in metrics[system].get("fusion", {}).items()
            for kind, rep in kinds.items()]
    if not rows:
        return []
    blocks: list[Block] = [
        ("h2", "Evidence beyond the FR score"),
        ("p", "Does the explanation add anything to the FR score? A logistic fusion of the FR score with each "
              "explanation LLR, fitted on the calibration split, against the FR score alone calibrated the same "
              "way, both on the test split. cllr_drop = cllr_fr_score - cllr_fusion (> 0: the explanation adds "
              "evidence), cllr_drop_se its standard error over test pairs: a drop within about two of them is "
              "noise. In the score variants the model was shown the FR score. The embedding LR's GMMs are "
              "fitted on the calibration split too, so the fusion may overweight it."),
        ("table", (["system", "variant", "LR system", *FUSION_COLUMNS], rows))]
    for system in systems:
        fusion = {v: kinds for v, kinds in metrics[system].get("fusion", {}).items() if kinds}
        if not fusion:
            continue
        fig, axes = plots.new_figure(1, len(fusion), size=(4.5, 3.6))
        for ax, (variant, kinds) in zip(np.atleast_1d(axes), fusion.items()):
            plot_fusion(ax, kinds)
            ax.set_title(f"{system} / {variant}")
        name = f"fusion_{system}.png"
        plots.save_figure(fig, plot_dir / name)
        blocks.append(("img", (f"plots/{name}", f"Cllr of the FR score alone and fused with each explanation LR, "
                                                f"{system}")))
    return blocks


def plot_fusion(ax: Any, kinds: dict[str, dict[str, Any]]) -> None:
    """Cllr of the FR score alone and of its fusion with each LR system, the fusion with +-2
    standard errors of the drop."""
    names = list(kinds)
    x = np.arange(len(names))
    alone = [kinds[k]["cllr_fr_score"] for k in names]
    fused = [kinds[k]["cllr_fusion"] for k in names]
    errors = [2 * kinds[k]["cllr_drop_se"] if np.isfinite(kinds[k]["cllr_drop_se"]) else 0.0 for k in names]
    ax.bar(x - 0.2, alone, 0.4, label="FR score alone", color="gray")
    ax.bar(x + 0.2, fused, 0.4, yerr=errors, capsize=3, label="FR score + LLR", color="tab:green")
    ax.set_xticks(x, [f"+ {k}" for k in names], rotation=30, ha="right")
    ax.set_ylabel("Cllr (bits), test split")
    top = np.nanmax(np.r_[alone, np.add(fused, errors)]) if names else 1.0
    ax.set_ylim(0, 1.3 * top if np.isfinite(top) and top > 0 else 1.0)  # room for the legend
    ax.grid(True, axis="y", linestyle=":")
    ax.legend(loc="upper center", ncol=2, fontsize=8)


# ---------------------------------------------------------------- demographic differentials

DEMOGRAPHIC_PLOT_METRICS = ("fmr", "fnmr", "fr_fmr", "fr_fnmr", "hallucinated_claim_rate")


def _demographic_blocks(metrics: dict[str, Any], systems: list[str], plot_dir: Path, plots: Any) -> list[Block]:
    blocks: list[Block] = []
    for system in systems:
        for key, data in metrics[system].get("demographics", {}).items():
            groups = list(data["groups"])
            names = list(dict.fromkeys(m for t in data["groups"].values() for m in t))
            rows = []
            for m in names:
                ratio = data["ratios"].get(m, {})
                rows.append([m, *[data["groups"][g].get(m) for g in groups], ratio.get("ratio"),
                             ratio.get("max_group"), ratio.get("min_group")])
            blocks += [("h3", f"{system}: by {key.replace('_', ' ')}"),
                       ("table", (["metric", *groups, "max/min", "max group", "min group"], rows))]
            blocks += _demographic_plot(system, key, data, plot_dir, plots)
    if not blocks:
        return []
    return [("h2", "Demographic differentials"),
            ("p", "Test-split metrics per demographic group from the rows' ground truth (NIST FRVT Part 3): "
                  "fmr / fnmr: false-match and false-non-match rates of the model's verdict (Match accepts; "
                  "Non-Match, Uncertain and no verdict reject); fr_fmr / fr_fnmr: of the FR score at the "
                  "dataset's decision threshold; cllr/<LR system>: Cllr after logistic calibration. A pair "
                  "belongs to a group when both faces do, else to the group mixed, which the max/min ratio (largest "
                  "group value over smallest) leaves out; inf: the smallest is 0. Mind the counts (n_...)."),
            *blocks]


def _demographic_plot(system: str, key: str, data: dict[str, Any], plot_dir: Path, plots: Any) -> list[Block]:
    variants = sorted({m.split("/")[1] for t in data["groups"].values() for m in t
                       if m.startswith("verification/") and m.endswith("/fmr")})
    if not variants:
        return []
    fig, axes = plots.new_figure(1, len(variants), size=(4.5, 3.6))
    for ax, variant in zip(np.atleast_1d(axes), variants):
        plot_group_rates(ax, {g: {m: t.get(f"verification/{variant}/{m}", float("nan"))
                                  for m in DEMOGRAPHIC_PLOT_METRICS} for g, t in data["groups"].items()})
        ax.set_title(f"{system} / {variant}, by {key.replace('_', ' ')}")
    name = f"demographics_{system}_{key}.png"
    plots.save_figure(fig, plot_dir / name)
    return [("img", (f"plots/{name}", f"Verification error rates and hallucinated-claim rate per {key}, {system}"))]


def plot_group_rates(ax: Any, rates: dict[str, dict[str, float]]) -> None:
    """Grouped bars: for each group (x), one bar per rate; nan rates are not drawn."""
    groups = list(rates)
    names = list(dict.fromkeys(m for r in rates.values() for m in r))
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(groups))
    for i, m in enumerate(names):
        values = np.array([rates[g].get(m, np.nan) for g in groups], dtype=float)
        ax.bar(x - 0.4 + (i + 0.5) * width, np.nan_to_num(values, nan=0.0), width, label=m)
    ax.set_xticks(x, groups, rotation=30, ha="right")
    ax.set_ylim(0, 1.35)  # room for the legend above rates of 1
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("rate")
    ax.grid(True, axis="y", linestyle=":")
    ax.legend(loc="upper center", ncol=3, fontsize=7)


def _lr_plots(system: str, lr: dict[str, Any], plot_dir: Path, plots: Any) -> list[Block]:
    from facellm.metrics.lr import ece_curve

    blocks: list[Block] = []
    for variant, kinds in lr.items():
        if not kinds:
            continue
        labels = next(iter(kinds.values())).labels
        fig, axes = plots.new_figure(1, 4, size=(5, 4.2))
        llrs = {k: r.llrs for k, r in kinds.items()}
        plots.plot_roc(axes[0], labels, llrs)
        axes[0].set_title(f"ROC, {system} / {variant}")
        plots.plot_det(axes[1], labels, llrs)
        axes[1].set_title(f"DET, {system} / {variant}")
        best = min(kinds, key=lambda k: kinds[k].metrics["cllr_logistic"])
        calibrated = kinds[best].calibrated["logistic"]
        plots.plot_tippett(axes[2], calibrated, labels)
        axes[2].set_title(f"Tippett, {best} (logistic-calibrated)")
        plots.plot_ece(axes[3], ece_curve(calibrated, labels))
        axes[3].set_title(f"ECE, {best} (logistic-calibrated)")
        name = f"lr_{system}_{variant}.png"
        plots.save_figure(fig, plot_dir / name)
        blocks.append(("img", (f"plots/{name}", f"ROC and DET of every LR system, and Tippett and ECE plots of "
                                                f"the best calibrated one ({best}), {system} / {variant}")))
    return blocks
