"""Print the README's results tables from a main job's outputs, so that they come from a run and
not from hand-copied numbers:

    .venv/bin/python scripts/readme_results.py [--runs runs] [--log main.log]

--runs: the main job's runs/ folder (eval/synthface_tiny and eval/synthface_mc in it).
--log: the main job's output (`bash scripts/run_main.sh > main.log`), for its step-time table.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

VARIANTS = ("images_only", "score", "score_decision")


def num(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    x = float(x)
    return "nan" if math.isnan(x) else f"{x:.{digits}f}"


def best_lr(lr: dict[str, Any], variant: str) -> str:
    """The explanation LR system (not the FR score) with the lowest logistic-calibrated Cllr."""
    kinds = {k: float(v["cllr_logistic"]) for k, v in lr.get(variant, {}).items() if k != "fr_score"}
    if not kinds:
        return "-"
    kind = min(kinds, key=kinds.get)
    return f"{kinds[kind]:.3f} ({kind})"


def best_fusion(fusion: dict[str, Any]) -> str:
    kinds = fusion.get("score_decision") or {}
    if not kinds:
        return "-"
    kind = min(kinds, key=lambda k: float(kinds[k]["cllr_fusion"]))
    f = kinds[kind]
    return f"{float(f['cllr_fusion']):.3f} with {kind} (drop {float(f['cllr_drop']):.3f} +- {float(f['cllr_drop_se']):.3f})"


def task_rows(metrics: dict[str, Any], systems: list[str]) -> list[tuple[str, list[str]]]:
    def t(system: str, key: str) -> dict[str, Any]:
        return metrics[system]["tasks"].get(key, {})

    def per_variant(system: str, get: Any) -> str:
        return " / ".join(num(get(t(system, f"verification/{v}"))) for v in VARIANTS)

    rows = [
        ("expression accuracy (macro-F1)",
         [f"{num(t(s, 'expression').get('accuracy'))} ({num(t(s, 'expression').get('macro_f1'))})" for s in systems]),
        ("attribute mean accuracy, yes/no / describe (describe exact match)",
         [f"{num(t(s, 'attributes/yesno').get('mean_accuracy'))} / {num(t(s, 'attributes/describe').get('mean_accuracy'))}"
          f" ({num(t(s, 'attributes/describe').get('exact_match'))})" for s in systems]),
        ("age MAE, years (parse rate)", [f"{num(t(s, 'age').get('mae'))} ({num(t(s, 'age').get('parse_rate'))})"
                                        for s in systems]),
        ("verification accuracy, images only / + score / + score and decision",
         [per_variant(s, lambda m: m.get("accuracy")) for s in systems]),
        ("constant-answer floor (one answer whatever the image): expression / yes/no / describe / verification",
         [" / ".join(num(t(s, k).get("constant_accuracy")) for k in
                     ("expression", "attributes/yesno", "attributes/describe", "verification/images_only"))
          for s in systems]),
        ("hallucinated-claim rate, per variant",
         [per_variant(s, lambda m: (m.get("faithfulness") or {}).get("hallucinated_claim_rate")) for s in systems]),
        ("self-contradiction rate, per variant",
         [per_variant(s, lambda m: (m.get("self_consistency") or {}).get("self_contradiction_rate")) for s in systems]),
        ("calibrated Cllr (logistic), best explanation LR, images only",
         [best_lr(metrics[s]["lr"], "images_only") for s in systems]),
        ("same, score and decision variant", [best_lr(metrics[s]["lr"], "score_decision") for s in systems]),
        ("calibrated Cllr of the FR score alone",
         [num((metrics[s]["lr"].get("score_decision", {}).get("fr_score") or {}).get("cllr_logistic")) for s in systems]),
        ("FR score fused with the best explanation LLR, score and decision: Cllr",
         [best_fusion(metrics[s].get("fusion", {})) for s in systems]),
    ]
    return rows


def mc_row(mc: dict[str, Any], systems: list[str]) -> tuple[str, list[str]]:
    cells = []
    for s in systems:
        m = mc["systems"].get(s)
        if m is None:
            cells.append("-")
            continue
        acc = m["accuracy"]
        cells.append(f"{num(acc['generate'], 2)} / {num(acc['acc'], 2)} / {num(acc['acc_norm'], 2)} "
                     f"({100 * float(m['unparsed_rate']):.0f}%)")
    return (f"SynthFace multiple choice ({mc['n_items']} items): generation / likelihood acc / acc_norm (unparsed)",
            cells)


def step_table(log: Path) -> list[str]:
    lines = log.read_text().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("step times"))
    out = ["| step | wall time |", "|---|---|"]
    for line in lines[start + 1:]:
        name, _, seconds = line.rstrip().rpartition(" ")
        if not seconds.endswith("s"):
            break
        out.append(f"| `{name.strip()}` | {seconds[:-1]} s |")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--log", type=Path, help="the main job's output, for the step times")
    args = parser.parse_args()
    metrics = json.loads((args.runs / "eval/synthface_tiny/metrics.json").read_text())
    systems = list(metrics)
    rows = task_rows(metrics, systems)
    mc_path = args.runs / "eval/synthface_mc/metrics.json"
    if mc_path.is_file():
        rows.append(mc_row(json.loads(mc_path.read_text()), systems))
    print(f"| metric (SynthFace test split) | {' | '.join(systems)} |")
    print("|---|" + "---|" * len(systems))
    for name, cells in rows:
        print(f"| {name} | {' | '.join(cells)} |")
    if args.log:
        print()
        print("\n".join(step_table(args.log)))


if __name__ == "__main__":
    main()
