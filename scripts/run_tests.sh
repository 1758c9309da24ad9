#!/usr/bin/env bash
# Set up .venv (+ Chromium for the demo's browser tests) and run the whole test suite,
# the slow end-to-end tests included. Extra arguments go to pytest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh" --test
cd "$ROOT"
export FACELLM_HOME=${FACELLM_HOME:-$ROOT/runs/test-home}
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
exec "$ROOT/.venv/bin/python" -m pytest -W error::RuntimeWarning "$@"
