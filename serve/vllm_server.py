"""Serve a model and its LoRA adapters with vLLM's OpenAI-compatible server.

    facellm serve --model facellm_tiny --adapter facellm-lora=runs/lora/facellm_tiny [--port 8000]

Binds 127.0.0.1 unless --host says otherwise, uses the model's (training) chat template, waits
until the server is healthy, prints the URL, and stops the server on Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def parse_adapters(items: list[str]) -> dict[str, str]:
    adapters = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapter {item!r} is not of the form name=path")
        adapters[name] = path
    return adapters


def main(argv: list[str] | None = None) -> int:
    from facellm.inference.factory import model_folder
    from facellm.inference.server import ServerStartError, start_server

    parser = argparse.ArgumentParser(prog="facellm serve", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="facellm_tiny", help="registry name, hub id or folder")
    parser.add_argument("--adapter", action="append", default=[], help="name=path of a LoRA adapter (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--max-lora-rank", type=int, default=None)
    parser.add_argument("--dtype", default=None, help="default: float32 on CPU, auto on GPU")
    args = parser.parse_args(argv)
    try:
        adapters = parse_adapters(args.adapter)
        handle = start_server(model_folder(args.model), adapters, host=args.host, port=args.port,
                              max_model_len=args.max_model_len, max_lora_rank=args.max_lora_rank, dtype=args.dtype,
                              verbose=False)
    except (ValueError, FileNotFoundError, ServerStartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    served = ", ".join(["base", *adapters]) if adapters else "base"
    print(f"serving {args.model} ({served}) at {handle.api_url}  (log: {handle.log_path}); Ctrl-C stops it",
          flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1.0) and handle.process.poll() is None:
            pass
    except KeyboardInterrupt:
        pass
    finally:
        handle.stop()
    if handle.process.returncode not in (0, None, -signal.SIGTERM, -signal.SIGKILL) and not stop.is_set():
        print(f"error: the server exited with code {handle.process.returncode}; log: {handle.log_path}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
