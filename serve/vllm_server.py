"""Serve a model and its LoRA adapters with vLLM's OpenAI-compatible server.

    facellm serve --model facellm_tiny --adapter facellm-lora=runs/lora/facellm_tiny [--port 8000]

Binds 127.0.0.1 unless --host says otherwise, uses the model's (training) chat template, waits
until the server is healthy, prints the URL, and stops the server on Ctrl-C, SIGTERM or SIGHUP,
also while it is still starting (and the launcher's watchdog stops it if `serve` is killed).
"""

from __future__ import annotations

import argparse
import signal
import sys

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def parse_adapters(items: list[str]) -> dict[str, str]:
    adapters = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapter {item!r} is not of the form name=path")
        adapters[name] = path
    return adapters


def _interrupt(signum: int, frame: object) -> None:
    # As Ctrl-C: unwinds through start_server / the wait below, which stop the server; a second
    # signal must not cut that stop short (the stop itself is bounded: SIGKILL after a grace time).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


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
    for sig in STOP_SIGNALS:  # before the server starts: a start takes minutes
        signal.signal(sig, _interrupt)
    try:
        adapters = parse_adapters(args.adapter)
        handle = start_server(model_folder(args.model), adapters, host=args.host, port=args.port,
                              max_model_len=args.max_model_len, max_lora_rank=args.max_lora_rank, dtype=args.dtype,
                              verbose=False)
    except (ValueError, FileNotFoundError, ServerStartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"stopped by {e or 'SIGINT'} before the server was ready", file=sys.stderr)
        return 0
    served = ", ".join(["base", *adapters]) if adapters else "base"
    print(f"serving {args.model} ({served}) at {handle.api_url}  (log: {handle.log_path}); Ctrl-C stops it",
          flush=True)
    try:
        code = handle.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        handle.stop()
    print(f"error: the server exited with code {code}; log: {handle.log_path}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
