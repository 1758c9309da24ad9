"""The launcher: readiness, the URL it hands out, and a clear error when start-up fails."""

from __future__ import annotations

import os

import httpx
import pytest

from facellm.inference.server import ServerStartError, start_server


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
