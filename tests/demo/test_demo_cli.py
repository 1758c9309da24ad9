"""`facellm demo` start-up errors: each names what is wrong and exits 2 without a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from facellm.cli import main
from facellm.inference.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_adapter_needs_a_name(capsys):
    assert main(["demo", "--adapter", "runs/lora/facellm_tiny"]) == 2
    assert "--adapter takes NAME=PATH" in capsys.readouterr().err


def test_calibration_without_coefficients(tmp_path, capsys):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"base": {"tasks": {}, "lr": {}}}))
    assert main(["demo", "--calibration", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "calibrators.json" in err


def test_a_server_that_is_down_is_named(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    done = subprocess.run([sys.executable, "-m", "facellm.cli", "demo", "--backend", "vllm_server",
                           "--server-url", url], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"FACELLM_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert f"vLLM server at {url} is unavailable" in done.stderr
    assert "Traceback" not in done.stderr
