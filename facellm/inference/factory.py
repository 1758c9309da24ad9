"""Open a backend by kind, the way eval and the demo both do.

    with open_backend("vllm_server", "facellm_tiny", {"facellm-lora": "runs/lora/facellm_tiny"}) as backend:
        backend.chat([...])

`vllm_server` starts a server on 127.0.0.1 unless `server_url` attaches to a running
OpenAI-compatible one, or to several replicas of one (a list of URLs):

    with open_backend("vllm_server", "facellm_tiny", server_url=["http://gpu0:8000", "http://gpu1:8000"],
                      served_model="Qwen/Qwen2.5-VL-7B-Instruct", api_key_env="VLLM_API_KEY") as backend:
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from facellm.inference.base import Backend

BackendKind = Literal["vllm_server", "vllm_local", "hf"]
BACKENDS: tuple[str, ...] = ("vllm_server", "vllm_local", "hf")


def model_folder(model: str) -> str:
    """A registry name, hub id or folder -> what the backends load."""
    from facellm.models.loading import resolve_model_path

    return str(resolve_model_path(model)[0])


@contextmanager
def open_backend(kind: BackendKind, model: str, adapters: dict[str, str] | None = None, *,
                 server_url: str | Sequence[str] | None = None, served_model: str | None = None,
                 api_key_env: str | None = None, balance: str = "least_busy", max_concurrency: int = 32,
                 host: str = "127.0.0.1", timeout_s: float = 300.0,
                 log_path: str | Path | None = None) -> Iterator[Backend]:
    """Yield a ready backend; a server this started is stopped on exit.

    server_url: a running server's URL, or a list of replicas' (requests go to the least busy,
        or in turn: balance="round_robin"). served_model: the name the server serves the base
        model under (None: the one it serves that is not an adapter). api_key_env: the
        environment variable holding the server's API key (None: no key).
    max_concurrency: most requests in flight at once (over all replicas)."""
    adapters = {name: str(path) for name, path in (adapters or {}).items()}
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")
    if kind == "vllm_server":
        from facellm.inference.vllm_server import VLLMServerBackend

        if server_url:
            backend = VLLMServerBackend(server_url, model=served_model, api_key=api_key(api_key_env),
                                        balance=balance, max_concurrency=max_concurrency, timeout_s=timeout_s)
            try:
                backend.served_models()  # fails now, with the URL, if the server is down or is no vLLM
                yield backend
            finally:
                backend.close()
            return
        from facellm.inference.server import start_server

        with start_server(model_folder(model), adapters, host=host, log_path=log_path) as handle:
            backend = VLLMServerBackend(handle.url, max_concurrency=max_concurrency, timeout_s=timeout_s)
            try:
                yield backend
            finally:
                backend.close()
        return
    if kind == "vllm_local":
        from facellm.inference.vllm_local import VLLMLocalBackend as Local
    else:
        from facellm.inference.hf import HFBackend as Local
    backend = Local(model_folder(model), adapters)
    try:
        yield backend
    finally:
        backend.close()


def api_key(env: str | None) -> str | None:
    """The API key in environment variable `env` (never in a config file); ValueError if unset."""
    if env is None:
        return None
    if not os.environ.get(env):
        raise ValueError(f"api_key_env: the environment variable {env} holding the server's API key is not set")
    return os.environ[env]
