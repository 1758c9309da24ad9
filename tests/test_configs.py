"""Every shipped config names its command in its first line and validates without building
anything; bad configs fail with a clear message before any work starts."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from facellm.cli import COMMANDS, main as cli_main
from facellm.config import ConfigError, apply_overrides, from_dict, load_config

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(p for d in ("instruct_data", "finetune", "eval", "demo", "serve") for p in (ROOT / d).rglob("*.yaml")
                 if "accelerate" not in p.parts)


def recipe_of(path: Path) -> str:
    header = path.read_text().splitlines()[0]
    assert header.startswith("# facellm ") or header.startswith("# python -m "), f"{path}: no command header"
    words = header.removeprefix("# ").split()
    if words[0] == "facellm":
        for command, module in COMMANDS.items():
            if words[1:1 + len(command.split())] == command.split():
                return module
    return words[2]


def test_every_recipe_folder_has_configs():
    assert {p.relative_to(ROOT).parts[0] for p in CONFIGS} >= {"instruct_data", "finetune", "eval"}
    assert len(CONFIGS) >= 12


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_config_validates(path, capsys):
    module = recipe_of(path)
    assert f"--config {path.relative_to(ROOT)}" in path.read_text().splitlines()[0]
    recipe = importlib.import_module(module)
    assert recipe.main(["--config", str(path), "--check"]) == 0
    assert "ok" in capsys.readouterr().out


@pytest.mark.parametrize("module,config,override,message", [
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "dataset=synthfase", "did you mean synthface"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "tasks.expresion={}", "did you mean expression"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "dataset_args.n_identity=3", "n_identities"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "tasks.verification.variants=[images]",
     "not in"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "model=qwen2_vl_2", "did you mean qwen2_vl_2b"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "lora.r=0", "lora.r must be >= 1"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "train.stepz=3", "did you mean steps"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "train.lr=fast", "must be a number"),
    ("eval.run", "eval/configs/synthface_tiny.yaml", "backend=tgi", "backend must be one of"),
    # values that passed --check and failed later (issue 10)
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "seed=1.5", "seed must be an integer, got 1.5"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "decision_fmr=5", "decision_fmr must be in (0, 1)"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "dataset_args.pairs_per_split={trian: 10}",
     "unknown key 'trian' in dataset_args.pairs_per_split; did you mean train?"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "dataset_args.n_identities=abc",
     "dataset_args.n_identities must be an integer, got 'abc'"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "dataset_args.n_identities=-3",
     "n_identities must be >= 1, got -3"),
    ("instruct_data.build", "instruct_data/configs/celeba.yaml", "dataset_args.fr_scores=maybe", "true or false"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "--overwrit", "unknown option '--overwrit'"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "train.steps=-5", "train.steps must be >= 1, got -5"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "train.batch_size=0", "train.batch_size must be >= 1"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "lora.dropout=2.0", "lora.dropout must be in [0, 1)"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "model=smolvlm_256m",
     "lora.vision: vLLM serves vision-tower LoRA for qwen2_vl models, not idefics3"),
    ("instruct_data.build", "instruct_data/configs/synthface.yaml", "align.margin=3", "align margin must be in [0, 1]"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "eval.split=dev",
     "eval.split must be one of train, validation, test, got 'dev'"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "train.lr_schedule=cosin", "did you mean cosine"),
    ("finetune.lora_sft", "finetune/configs/facellm_tiny.yaml", "--resum", "unknown option '--resum'"),
    ("finetune.build_default", "finetune/configs/facellm_tiny_base.yaml", "size=big", "size must be one of test, small"),
    ("finetune.build_default", "finetune/configs/facellm_tiny_base.yaml", "steps=0", "steps must be >= 1"),
    ("eval.run", "eval/configs/synthface_tiny.yaml", "test_split=dev", "test_split must be one of"),
    ("eval.run", "eval/configs/synthface_tiny.yaml", "batch_size=0", "batch_size must be >= 1"),
])
def test_bad_config_is_refused(module, config, override, message, capsys):
    recipe = importlib.import_module(module)
    assert recipe.main(["--config", str(ROOT / config), override, "--check"]) == 2
    assert message.lower() in capsys.readouterr().err.lower()


@pytest.mark.parametrize("command, config", [
    ("data build", "instruct_data/configs/celeba.yaml"), ("train", "finetune/configs/facellm_tiny.yaml"),
    ("models build-default", "finetune/configs/facellm_tiny_base.yaml"), ("eval", "eval/configs/synthface_tiny.yaml"),
])
def test_check_imports_nothing_heavy(command, config):
    code = (f"import sys; from facellm.cli import main; rc = main({[*command.split(), '--config', config, '--check']!r}); "
            "print(rc, sorted(m for m in ('torch', 'transformers', 'datasets', 'cv2', 'gradio', 'vllm') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout + done.stderr


def test_recipe_configs_mirror_what_they_configure():
    """What --check cannot see without importing torch: the train arguments and model sizes."""
    import typing
    from dataclasses import fields

    from facellm.models.default import SIZES
    from facellm.training import TrainConfig
    from finetune.build_default import BuildDefaultConfig
    from finetune.lora_sft import LoraArgs, TrainArgs, _lora_kwargs

    params = {f.name for f in fields(TrainConfig)}
    assert {f.name for f in fields(TrainArgs)} | set(_lora_kwargs(LoraArgs())) <= params
    hints, train_hints = typing.get_type_hints(TrainArgs), typing.get_type_hints(TrainConfig)
    for name, hint in hints.items():
        if typing.get_origin(hint) is typing.Literal:
            assert hint == train_hints[name], name
    assert typing.get_args(typing.get_type_hints(BuildDefaultConfig)["size"]) == tuple(SIZES)


def test_overrides_and_strictness(tmp_path):
    from dataclasses import dataclass, field

    @dataclass
    class Inner:
        r: int = 1

    @dataclass
    class Outer:
        name: str
        inner: Inner = field(default_factory=Inner)
        items: list[Inner] = field(default_factory=list)

    data = apply_overrides({"name": "a"}, ["inner.r=4", "items=[{r: 2}, {r: 3}]"])
    cfg = from_dict(Outer, data)
    assert cfg.inner.r == 4 and [i.r for i in cfg.items] == [2, 3]
    with pytest.raises(ConfigError, match="missing the required key 'name'"):
        from_dict(Outer, {})
    with pytest.raises(ConfigError, match="not of the form key=value"):
        apply_overrides({}, ["inner.r"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Outer, bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Outer, tmp_path / "missing.yaml")


def test_cli_ls_and_unknown_command(capsys):
    assert cli_main(["ls", "models"]) == 0
    out = capsys.readouterr().out
    assert "facellm_tiny" in out and "Qwen/Qwen2.5-VL-3B-Instruct" in out
    assert cli_main(["ls", "configs"]) == 0
    assert "instruct_data/configs/synthface.yaml" in capsys.readouterr().out
    assert cli_main(["frobnicate"]) == 2
    assert cli_main(["ls", "widgets"]) == 2
