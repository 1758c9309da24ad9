"""Serve a model and its LoRA adapters with vLLM's OpenAI-compatible server.

    facellm serve --model facellm_tiny --adapter facellm-lora=runs/lora/facellm_tiny [--port 8000]
    facellm serve --model Qwen/Qwen2.5-VL-7B-Instruct --tensor-parallel-size 2 --gpu-memory-utilization 0.85 \
        --dtype bfloat16 -- --enable-prefix-caching --max-num-seqs 128

Everything after `--` goes to vLLM verbatim, last (vLLM takes the last of a repeated flag);
facellm's own flags are checked before anything loads, and --print-command prints the vLLM
command line instead of starting it. Binds 127.0.0.1 unless --host says otherwise, uses the model's (training) chat template, waits
until the server is healthy, prints the URL, and stops the server on Ctrl-C, SIGTERM or SIGHUP,
also while it is still starting (and the launcher's watchdog stops it if `serve` is killed).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PARALLEL_FLAGS = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")


def parse_adapters(items: list[str]) -> dict[str, str]:
    adapters = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--adapter {item!r} is not of the form name=path")
        adapters[name] = path
    return adapters


def split_engine_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """(facellm's own arguments, the vLLM engine arguments after the first `--`)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def check_args(args: argparse.Namespace, adapters: dict[str, str]) -> None:
    """facellm's own flags, before anything loads: ValueError / FileNotFoundError saying which."""
    from facellm.inference.base import VLLM_LORA_RANKS, vllm_lora_rank

    for name in (*PARALLEL_FLAGS, "max_model_len", "max_loras"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.gpu_memory_utilization is not None and not 0 < args.gpu_memory_utilization <= 1:
        raise ValueError(f"--gpu-memory-utilization must be in (0, 1], got {args.gpu_memory_utilization}")
    for name, path in adapters.items():
        if not (Path(path) / "adapter_config.json").is_file():
            problem = "holds no adapter_config.json" if Path(path).is_dir() else "does not exist"
            raise FileNotFoundError(f"--adapter {name}: {path} {problem}")
    if args.max_lora_rank is not None:
        if args.max_lora_rank not in VLLM_LORA_RANKS:
            raise ValueError(f"--max-lora-rank must be one of {', '.join(map(str, VLLM_LORA_RANKS))} "
                             f"(vLLM's), got {args.max_lora_rank}")
        needed = vllm_lora_rank(list(adapters.values()))
        if adapters and args.max_lora_rank < needed:
            raise ValueError(f"--max-lora-rank {args.max_lora_rank} is below the adapters' rank (needs {needed})")
    if args.max_loras is not None and not adapters:
        raise ValueError("--max-loras is for serving adapters: give --adapter name=path")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facellm serve", description=__doc__.splitlines()[0],
                                     usage="facellm serve [options] [-- vLLM engine arguments]")
    parser.add_argument("--model", default="facellm_tiny", help="registry name, hub id or folder")
    parser.add_argument("--adapter", action="append", default=[], help="name=path of a LoRA adapter (repeatable)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--max-lora-rank", type=int, default=None,
                        help="default: the smallest vLLM allows for the adapters")
    parser.add_argument("--max-loras", type=int, default=None, help="adapters one batch may mix; default: all")
    parser.add_argument("--dtype", default=None, choices=DTYPES, help="default: float32 on CPU, auto on GPU")
    for name in PARALLEL_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help="default: vLLM's (1)")
    parser.add_argument("--gpu-memory-utilization", type=float, default=None,
                        help="share of each GPU's memory vLLM takes; default: vLLM's (0.9)")
    parser.add_argument("--print-command", action="store_true",
                        help="print the vLLM command line and exit without starting it")
    return parser


def print_command(args: argparse.Namespace, adapters: dict[str, str], engine_args: list[str]) -> None:
    import shlex
    import tempfile

    from facellm.inference.factory import model_folder
    from facellm.inference.server import (
        free_port,
        resolve_chat_template,
        server_command,
    )

    folder = model_folder(args.model)
    template = resolve_chat_template(folder, None, Path(tempfile.mkdtemp(prefix="facellm-serve-")) / "chat_template.jinja")
    command = server_command(folder, adapters, host=args.host, port=args.port or free_port(args.host),
                             dtype=args.dtype or "auto", max_model_len=args.max_model_len,
                             max_lora_rank=args.max_lora_rank, max_loras=args.max_loras, chat_template=template,
                             parallel=parallel_sizes(args), gpu_memory_utilization=args.gpu_memory_utilization,
                             extra_args=engine_args)
    print(shlex.join(command))


def parallel_sizes(args: argparse.Namespace) -> dict[str, int]:
    return {name: getattr(args, name) for name in PARALLEL_FLAGS if getattr(args, name) is not None}


def _interrupt(signum: int, frame: object) -> None:
    # As Ctrl-C: unwinds through start_server / the wait below, which stop the server; a second
    # signal must not cut that stop short (the stop itself is bounded: SIGKILL after a grace time).
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    from facellm.inference.factory import model_folder
    from facellm.inference.server import ServerStartError, start_server

    own, engine_args = split_engine_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(own)
    try:
        adapters = parse_adapters(args.adapter)
        check_args(args, adapters)
        if args.print_command:
            print_command(args, adapters, engine_args)
            return 0
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for sig in STOP_SIGNALS:  # before the server starts: a start takes minutes
        signal.signal(sig, _interrupt)
    try:
        handle = start_server(model_folder(args.model), adapters, host=args.host, port=args.port,
                              max_model_len=args.max_model_len, max_lora_rank=args.max_lora_rank,
                              max_loras=args.max_loras, dtype=args.dtype, parallel=parallel_sizes(args),
                              gpu_memory_utilization=args.gpu_memory_utilization, extra_args=engine_args,
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
