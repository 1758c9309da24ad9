"""Two-process DDP on CPU (gloo) through `accelerate launch` with finetune/accelerate/cpu_ddp.yaml."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import run_sft
from facellm.training.logging import read_metrics

REPO = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).with_name("accelerate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_cpu_processes_train_in_step_and_only_rank_0_writes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    command = [str(ACCELERATE), "launch", "--config_file", str(REPO / "finetune/accelerate/cpu_ddp.yaml"),
               "--main_process_port", str(free_port()), str(Path(run_sft.__file__)),
               "--out", str(out), "--steps", "3", "--report"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]

    reports = {rank: json.loads(Path(f"{out}.report-{rank}.json").read_text()) for rank in (0, 1)}
    assert [reports[rank]["rank"] for rank in (0, 1)] == [0, 1]
    assert reports[0]["weights"] == reports[1]["weights"]
    assert reports[1]["writes"] == []
    assert any("metrics.jsonl" in w for w in reports[0]["writes"])
    # one record per step, from one writer; 2 processes x batch 2 x accumulation 2 = 8 rows a step
    records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [(r["step"], r["epoch"]) for r in records] == [(1, 1.3333), (2, 2.6667), (3, 4.0)]
    assert (out / "adapter_model.safetensors").is_file()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-2", "step-3"]
