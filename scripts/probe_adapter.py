"""A short probe of a LoRA adapter (or the base) through transformers, for comparing training
recipes in minutes rather than a full evaluation's quarter hour:

    FACELLM_HOME=$PWD/runs/home .venv/bin/python scripts/probe_adapter.py runs/lora/NAME \
        [--rows 30] [--groups expression,attributes,verification/images_only] [--split test]

Scores greedy answers to the first --rows rows of each (task, variant) of --groups (a task name
takes all its variants) with the same tasks and scoring as `facellm eval`
(facellm.evaluation.quick_eval), then prints, per group, how often each first answer line
occurs, which shows an adapter that answers the same whatever the image ("Yes" to every
question). adapter "none" probes the base.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("adapter", help="a LoRA adapter folder, or none")
    parser.add_argument("--dataset", default="runs/data/synthface")
    parser.add_argument("--split", default="test")
    parser.add_argument("--rows", type=int, default=30)
    parser.add_argument("--groups", default="expression,attributes,verification/images_only")
    parser.add_argument("--model", default="facellm_tiny")
    args = parser.parse_args()

    import torch

    from facellm.data.build import built_tasks, load_built
    from facellm.evaluation import quick_eval
    from facellm.inference.base import chat_prompt
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
    print(json.dumps(quick_eval(model, processor, rows.select(sorted(sum(picked.values(), []))), 320,
                                built_tasks(args.dataset)), indent=1))
    tokenizer = processor.tokenizer
    for key, indices in sorted(picked.items()):
        first_lines: Counter[tuple[str, str]] = Counter()
        for row in rows.select(indices):
            text = chat_prompt(processor, len(row["images"]), row["messages"][0]["content"][-1]["text"])
            inputs = processor(text=[text], images=list(row["images"]), add_special_tokens=False, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**inputs, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
            answer = tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
            reference = row["messages"][1]["content"][0]["text"]
            first_lines[(reference.split("\n")[0][:24], answer.split("\n")[0][:24])] += 1
        print(key, "(reference, answer) first lines:", sorted(first_lines.items()))


if __name__ == "__main__":
    main()
