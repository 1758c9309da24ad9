"""A short probe of a LoRA adapter (or the base) through transformers, for comparing training
recipes in minutes rather than a full evaluation's quarter hour:

    FACELLM_HOME=$PWD/runs/home .venv/bin/python scripts/probe_adapter.py runs/lora/NAME \
        [--rows 30] [--groups expression,attributes,verification/images_only] [--split test]

Scores greedy answers to the first --rows rows of each (task, variant) of --groups (a task name
takes all its variants) with the same tasks and scoring as `facellm eval`
(facellm.evaluation.greedy_records, as training's quick_eval), then prints, per group, how often each first answer line
occurs, which shows an adapter that answers the same whatever the image ("Yes" to every
question). adapter "none" probes the base.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="a LoRA adapter folder, or none")
    parser.add_argument("--dataset", default="runs/data/synthface")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--groups", default="expression,attributes,verification/images_only")
    parser.add_argument("--model", default="facellm_tiny")
    args = parser.parse_args()
    try:
        probe(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def probe(args: argparse.Namespace) -> None:
    import torch

    from facellm.data.build import built_tasks, load_built
    from facellm.evaluation import greedy_records, mean_scores
    from facellm.models.loading import load_model

    torch.set_num_threads(2)
    rows = load_built(args.dataset)[args.split]
    wanted = set(args.groups.split(","))
    picked: dict[str, list[int]] = defaultdict(list)
    for i, (task, variant) in enumerate(zip(rows["task"], rows["variant"])):
        key = f"{task}/{variant}"
        if (task in wanted or key in wanted) and len(picked[key]) < args.rows:
            picked[key].append(i)
    model, processor = load_model(args.model, device="cpu", adapter=None if args.adapter == "none" else args.adapter)
    tasks = built_tasks(args.dataset)
    records = greedy_records(model, processor, rows.select(sorted(sum(picked.values(), []))), 320, tasks)
    print(json.dumps(mean_scores(records, tasks), indent=1))
    first_lines: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for record in records:
        first_lines[f"{record.task}/{record.variant}"][(record.reference.split("\n")[0][:24],
                                                      record.response.split("\n")[0][:24])] += 1
    for key, counts in sorted(first_lines.items()):
        print(key, "(reference, answer) first lines:", sorted(counts.items()))


if __name__ == "__main__":
    sys.exit(main())
