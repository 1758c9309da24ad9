"""Open a backend by kind, the way eval and the demo both do.

    with open_backend("vllm_server", "facellm_tiny", {"facellm-lora": "runs/lora/facellm_tiny"}) as backend:
        backend.chat([...])

`vllm_server` starts a server on 127.0.0.1 unless `server_url` attaches to a running one.
"""

from __future__ import annotations

from collections.abc import Iterator
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
                 server_url: str | None = None, host: str = "127.0.0.1", timeout_s: float = 300.0,
                 log_path: str | Path | None = None) -> Iterator[Backend]:
    """Yield a ready backend; a server this started is stopped on exit."""
    adapters = {name: str(path) for name, path in (adapters or {}).items()}
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")
    if kind == "vllm_server":
        from facellm.inference.vllm_server import VLLMServerBackend

        if server_url:
            backend = VLLMServerBackend(server_url, timeout_s=timeout_s)
            try:
                backend.served_models()  # fails now, with the URL, if the server is down or is no vLLM
                yield backend
            finally:
                backend.close()
            return
        from facellm.inference.server import start_server

        with start_server(model_folder(model), adapters, host=host, log_path=log_path) as handle:
            backend = VLLMServerBackend(handle.url, timeout_s=timeout_s)
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
