"""`facellm`: one entry point that dispatches to the runnable recipes.

    facellm ls [models|datasets|tasks|configs]
    facellm data build --config instruct_data/configs/synthface.yaml [key=value ...]
    facellm data export --dataset DIR --format swift|llamafactory|trl --out DIR
    facellm models build-default [--config finetune/configs/facellm_tiny_base.yaml]
    facellm train --config finetune/configs/facellm_tiny.yaml [key=value ...] [--resume]
    facellm serve --model NAME|PATH [--adapter name=path ...]
    facellm eval --config eval/configs/synthface_tiny.yaml [key=value ...]
    facellm eval mc --config eval/configs/synthface_mc.yaml [key=value ...]
    facellm demo [--model ...]

Recipes live beside the package in a source checkout (instruct_data/, finetune/, eval/, demo/,
serve/); this module only finds and runs them (`python -m <recipe>` does the same).
"""

from __future__ import annotations

import difflib
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A command is matched in this order: "eval mc" before "eval", whose arguments it would take.
COMMANDS: dict[str, str] = {
    "data build": "instruct_data.build",
    "data export": "instruct_data.export",
    "models build-default": "finetune.build_default",
    "train": "finetune.lora_sft",
    "serve": "serve.vllm_server",
    "eval mc": "eval.multiple_choice",
    "eval": "eval.run",
    "demo": "demo.app",
}
RECIPE_DIRS = ("instruct_data", "finetune", "eval", "demo", "serve")


def _usage(group: str | None = None) -> str:
    """The usage lines of every command, or of one group's (`facellm data`)."""
    lines = __doc__.split("\n\n")[1].splitlines()
    return "\n".join(line for line in lines if group is None or line.split()[1] == group)


def _groups() -> set[str]:
    return {words.split()[0] for words in COMMANDS if len(words.split()) > 1}


def _unknown(argv: list[str]) -> str:
    """The error for a command that is not one, with the closest command when there is one."""
    if argv[0] in _groups():  # `facellm data biuld`: compare with the group's commands
        typed, known = " ".join(argv[:2]), [w for w in COMMANDS if w.split()[0] == argv[0]]
    else:
        typed, known = argv[0], sorted({w.split()[0] for w in COMMANDS} | {"ls"})
    close = difflib.get_close_matches(typed, known, n=1)
    hint = f"; did you mean 'facellm {close[0]}'?" if close else ""
    return f"error: unknown command {typed!r}{hint}\n{_usage()}"


def run_recipe(module: str, argv: list[str]) -> int:
    if not (ROOT / (module.replace(".", "/") + ".py")).exists():
        print(f"error: recipe {module} not found under {ROOT}; facellm's recipes run from a source checkout",
              file=sys.stderr)
        return 2
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    sys.argv = [module, *argv]
    # run as __main__ afresh: a copy imported earlier in this process (a test, a notebook) would
    # make runpy warn about executing a module that is already in sys.modules
    sys.modules.pop(module, None)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def list_things(what: str | None) -> int:
    from facellm import registry

    tables = {
        "models": lambda: {k: f"{v.hub_id}  ({v.family})" for k, v in registry.models().items()},
        "datasets": lambda: registry.describe(registry.DATASETS),
        "tasks": lambda: {k: ", ".join(v.variants) for k, v in registry.TASKS.items()},
        "configs": lambda: {str(p.relative_to(ROOT)): _config_command(p)
                            for d in RECIPE_DIRS for p in sorted((ROOT / d).rglob("*.yaml"))},
    }
    if what is not None and what not in tables:
        close = difflib.get_close_matches(what, list(tables), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        print(f"error: facellm ls {what}: choose from {', '.join(tables)}{hint}", file=sys.stderr)
        return 2
    for name in [what] if what else list(tables):
        print(f"{name}:")
        for key, text in tables[name]().items():
            print(f"  {key:<44} {text}")
    return 0


def _config_command(path: Path) -> str:
    first = path.read_text().splitlines()[:1]
    return first[0].lstrip("# ").strip() if first else ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "ls":
        return list_things(argv[1] if len(argv) > 1 else None)
    for words, module in COMMANDS.items():
        n = len(words.split())
        if argv[:n] == words.split():
            return run_recipe(module, argv[n:])
    if argv[0] in _groups() and argv[1:2] in ([], ["-h"], ["--help"]):
        print(_usage(argv[0]))
        return 0
    print(_unknown(argv), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
