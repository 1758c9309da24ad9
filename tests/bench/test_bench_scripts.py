"""Every bench script runs with no arguments on a fresh clone: its parser takes none, and no
default names anything outside the checkout or FACELLM_HOME (the benches themselves are long
and are not run here)."""

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted((ROOT / "bench").glob("bench_*.py"))
NOT_YET: dict[str, str] = {}  # script name -> why its parser still needs arguments


def load(path: Path):
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def allowed_roots() -> list[Path]:
    from facellm.models.loading import resolve_cache_dir

    return [ROOT.resolve(), resolve_cache_dir().resolve()]


def named_path(value: str) -> Path | None:
    """The file or folder a default names: a registry model's folder, a path (also as NAME=PATH), or None."""
    from facellm.models.loading import resolve_model_path
    from facellm.models.registry import MODELS

    value = value.split("=", 1)[-1]  # NAME=PATH (an adapter by name)
    if value in MODELS:
        return resolve_model_path(value)[0].resolve()
    if "/" in value or value.startswith("~"):
        return (ROOT / Path(value).expanduser()).resolve()
    return None


def test_every_script_is_checked():
    assert {p.name for p in SCRIPTS} >= {"bench_build.py", "bench_sft.py", "bench_default.py", "bench_serving.py"}


@pytest.mark.parametrize("path", [pytest.param(p, id=p.name, marks=[pytest.mark.xfail(reason=NOT_YET[p.name], strict=True)]
                                               if p.name in NOT_YET else []) for p in SCRIPTS])
def test_parser_takes_no_arguments_and_its_defaults_stay_inside(path, monkeypatch, tmp_path):
    monkeypatch.setenv("FACELLM_HOME", str(tmp_path / "home"))
    assert "def build_parser(" in path.read_text(), f"{path.name} has no build_parser()"
    args = load(path).build_parser().parse_args([])
    for name, value in vars(args).items():
        if isinstance(value, str) and (target := named_path(value)) is not None:
            assert any(target.is_relative_to(root) for root in allowed_roots()), f"--{name} default {value} -> {target}"


def test_the_sft_bench_default_model_resolves_on_a_fresh_clone(monkeypatch, tmp_path):
    monkeypatch.setenv("FACELLM_HOME", str(tmp_path / "empty"))  # nothing built or installed yet
    args = load(ROOT / "bench" / "bench_sft.py").build_parser().parse_args([])
    target = named_path(args.model)
    assert (target / "config.json").is_file() and target.is_relative_to(ROOT)  # the shipped base
    assert not os.path.exists(tmp_path / "empty")
