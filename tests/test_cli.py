"""The `facellm` entry point: groups, typos, --help of every recipe, and options spelled out."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from facellm.cli import main

ROOT = Path(__file__).resolve().parent.parent
CONFIG_RECIPES = {  # command -> a config it runs
    "data build": "instruct_data/configs/synthface.yaml",
    "train": "finetune/configs/facellm_tiny.yaml",
    "models build-default": "finetune/configs/facellm_tiny_base.yaml",
    "eval mc": "eval/configs/synthface_mc.yaml",
}


@pytest.mark.parametrize("group, commands", [("data", ["data build", "data export"]),
                                             ("models", ["models build-default"])])
@pytest.mark.parametrize("extra", [[], ["--help"]])
def test_a_group_lists_its_commands(group, commands, extra, capsys):
    assert main([group, *extra]) == 0
    out = capsys.readouterr().out
    assert all(f"facellm {c} " in out for c in commands) and "facellm train" not in out


@pytest.mark.parametrize("argv, hint", [
    (["data", "biuld"], "did you mean 'facellm data build'?"),
    (["trian"], "did you mean 'facellm train'?"),
    (["modles", "build-default"], "did you mean 'facellm models'?"),
    (["ls", "modles"], "did you mean models?"),
])
def test_a_typo_gets_did_you_mean(argv, hint, capsys):
    assert main(argv) == 2
    assert hint in capsys.readouterr().err


@pytest.mark.parametrize("command", CONFIG_RECIPES)
def test_recipe_help_names_the_config_and_the_overrides(command, capsys):
    assert main([*command.split(), "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "key=value override the config" in out
    assert "--config" in out and "YAML" in out


@pytest.mark.parametrize("command", CONFIG_RECIPES)
def test_a_shortened_option_is_not_taken_for_the_long_one(command, capsys):
    shortened = {"data build": "--overwrit", "train": "--resum", "models build-default": "--chec",
                 "eval mc": "--chec"}[command]
    assert main([*command.split(), "--config", CONFIG_RECIPES[command], shortened, "--check"]) == 2
    assert f"unknown option '{shortened}'" in capsys.readouterr().err


def test_export_refuses_a_shortened_option(capsys):
    assert main(["data", "export", "--dataset", "d", "--form", "swift", "--out", "o"]) == 2
    assert "--form" in capsys.readouterr().err


def test_demo_help_answers_before_gradio_and_torch_load():
    code = ("import sys; from facellm.cli import main; rc = main(['demo', '--help']); "
            "print(rc, sorted(m for m in ('gradio', 'torch', 'cv2') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr
    assert "--adapter NAME=PATH" in done.stdout
