"""The launcher: readiness, the URL it hands out, a clear error when start-up fails, and that
nothing it starts outlives it: not on SIGTERM or SIGINT to `facellm serve` while vLLM is still
starting, not on an exception, not when the process that started it is killed."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from facellm.inference.base import NO_USAGE_STATS
from facellm.inference.server import (
    SERVER_MODULE,
    ServerStartError,
    free_port,
    start_server,
)

ROOT = Path(__file__).resolve().parents[2]


def test_running_server_is_ready_on_loopback(server):
    assert server.url.startswith("http://127.0.0.1:")
    assert httpx.get(server.url + "/health", timeout=10).status_code == 200
    ids = [m["id"] for m in httpx.get(server.api_url + "/models", timeout=10).json()["data"]]
    assert ids[1:] == ["lora_a", "lora_b"]
    assert "--chat-template" in server.command and "--worker-extension-cls" in server.command


def test_server_that_dies_during_start_up_raises_with_the_log_tail(tmp_path):
    empty = tmp_path / "not_a_model"
    empty.mkdir()
    with pytest.raises(ServerStartError, match="exited with code .* during start-up; last lines of") as e:
        start_server(empty, log_path=tmp_path / "server.log", startup_timeout_s=180, verbose=False)
    assert str(empty) in str(e.value)  # the log tail names what vLLM could not load
    # the server's process group is gone: nothing is left running
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    cmdlines = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdlines.append(f.read().decode(errors="replace"))
        except OSError:
            continue
    assert not any(str(empty) in c for c in cmdlines)


# ---------------------------------------------------------------- nothing outlives its starter


def group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    members = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            members.append(int(entry))
    return members


def server_pid(port: int) -> int | None:
    """The vLLM server process started for `port`, if there is one yet."""
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if SERVER_MODULE in args and "--port" in args and args[args.index("--port") + 1] == str(port):
            return int(entry)
    return None


def wait_for(condition: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout_s:.0f} s")


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def groups() -> list[int]:
    """The process groups a test saw; what is left of them is killed after it, pass or fail."""
    seen: list[int] = []
    yield seen
    for pgid in seen:
        for pid in group_members(pgid):
            os.kill(pid, signal.SIGKILL)


def engine_started(port: int, groups: list[int]) -> int:
    """Wait until the server for `port` has started vLLM's engine process (the group then holds
    more than the server): the moment a stop has the most to stop. Returns the group's id."""
    pgid = wait_for(lambda: server_pid(port), 180, "vLLM server process")
    groups.append(pgid)
    wait_for(lambda: len(group_members(pgid)) >= 2, 180, "vLLM engine process")
    assert not listening(port), "the server was ready already: this checks a stop during start-up"
    return pgid


def assert_all_stopped(pgid: int, port: int, timeout_s: float) -> None:
    wait_for(lambda: not group_members(pgid), timeout_s, "end of the server's process group")
    assert not listening(port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda sig: sig.name)
def test_serve_stopped_while_the_server_starts_leaves_nothing_running(model_dir, groups, sig):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in NO_USAGE_STATS}  # serve sets them itself
    serve = subprocess.Popen([sys.executable, "-m", "facellm.cli", "serve", "--model", str(model_dir), "--port",
                              str(port), "--max-model-len", "2048"], cwd=ROOT, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pgid = engine_started(port, groups)
        environ = Path(f"/proc/{pgid}/environ").read_bytes().split(b"\0")
        assert b"VLLM_NO_USAGE_STATS=1" in environ and b"DO_NOT_TRACK=1" in environ
        serve.send_signal(sig)
        _, err = serve.communicate(timeout=90)
    finally:
        serve.kill()
    assert serve.returncode == 0 and f"stopped by {sig.name} before the server was ready" in err
    assert_all_stopped(pgid, port, timeout_s=10)  # serve returns once its stop is done


def test_a_killed_starter_leaves_nothing_running(model_dir, groups):
    port = free_port()
    starter = subprocess.Popen([sys.executable, "-c", "import sys; from facellm.inference.server import start_server; "
                                f"start_server(sys.argv[1], port={port}, max_model_len=2048, verbose=False)",
                                str(model_dir)], cwd=ROOT)
    try:
        pgid = engine_started(port, groups)
    finally:
        starter.kill()  # SIGKILL: no handler, no atexit; only the watchdog is left to stop the server
    starter.wait()
    assert_all_stopped(pgid, port, timeout_s=60)


def test_a_start_that_times_out_leaves_nothing_running(model_dir, groups, tmp_path):
    port = free_port()

    def watch() -> None:
        while (pid := server_pid(port)) is None:
            time.sleep(0.2)
        groups.append(pid)

    threading.Thread(target=watch, daemon=True).start()
    with pytest.raises(ServerStartError, match="was not ready after 15 s"):
        start_server(model_dir, port=port, max_model_len=2048, log_path=tmp_path / "server.log",
                     startup_timeout_s=15, verbose=False)
    assert groups, "the server process never appeared"
    assert_all_stopped(groups[0], port, timeout_s=1)


# ---------------------------------------------------------------- facellm serve's command line


def facellm_serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facellm.cli", "serve", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, check=False)


def test_serve_passes_gpu_flags_and_everything_after_the_separator_verbatim(model_dir, adapters):
    engine = ["--enable-prefix-caching", "--max-num-seqs", "7", "--tensor-parallel-size", "4",
              "--kv-transfer-config", '{"kv_connector": "X", "kv_role": "kv_both"}', "--some-future-flag"]
    proc = facellm_serve("--model", str(model_dir), "--adapter", f"lora_a={adapters['lora_a']}",
                         "--tensor-parallel-size", "2", "--pipeline-parallel-size", "2", "--data-parallel-size", "3",
                         "--gpu-memory-utilization", "0.85", "--dtype", "bfloat16", "--max-lora-rank", "64",
                         "--max-loras", "1", "--port", "8123", "--print-command", "--", *engine)
    assert proc.returncode == 0, proc.stderr
    command = shlex.split(proc.stdout.strip())
    assert command[1:3] == ["-m", SERVER_MODULE]

    def value(flag: str) -> str:
        return command[command.index(flag) + 1]

    assert [value(f) for f in ("--tensor-parallel-size", "--pipeline-parallel-size", "--data-parallel-size",
                               "--gpu-memory-utilization", "--dtype", "--max-lora-rank", "--max-loras", "--port")] \
        == ["2", "2", "3", "0.85", "bfloat16", "64", "1", "8123"]
    assert command[-len(engine):] == engine  # last and verbatim: vLLM takes the user's --tensor-parallel-size 4
    assert value("--lora-modules") == f"lora_a={adapters['lora_a']}" and value("--host") == "127.0.0.1"


@pytest.mark.parametrize("args, message", [
    (["--tensor-parallel-size", "0"], "--tensor-parallel-size must be at least 1"),
    (["--gpu-memory-utilization", "1.2"], "--gpu-memory-utilization must be in (0, 1]"),
    (["--max-lora-rank", "12", "--adapter", "a=ADAPTER"], "--max-lora-rank must be one of 1, 8, 16"),
    (["--adapter", "a=/no/such/adapter"], "--adapter a: /no/such/adapter does not exist"),
    (["--max-loras", "2"], "--max-loras is for serving adapters"),
])
def test_serve_refuses_its_own_bad_flags_before_anything_loads(adapters, args, message):
    args = [a.replace("ADAPTER", adapters["lora_a"]) for a in args]
    start = time.monotonic()
    proc = facellm_serve(*args, "--", "--anything-goes-here")
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert time.monotonic() - start < 30  # no model, no vLLM: a failed start takes minutes
