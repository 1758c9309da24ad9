#!/usr/bin/env bash
# The main job on the offline default, end to end on this machine (no GPU, no hub):
# SynthFace data -> offline default model -> LoRA fine-tune -> vLLM serving -> evaluation
# with LR metrics -> report. Every step resumes or is skipped when its output is up to date.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export FACELLM_HOME=${FACELLM_HOME:-$ROOT/runs/home}
F="$ROOT/.venv/bin/facellm"
step() { echo; echo "==> facellm $*"; "$F" "$@"; }
step data build --config instruct_data/configs/synthface.yaml
step data build --config instruct_data/configs/synthface_pretrain.yaml
step models build-default --config finetune/configs/facellm_tiny_base.yaml
step train --config finetune/configs/facellm_tiny.yaml --resume
step eval --config eval/configs/synthface_tiny.yaml
