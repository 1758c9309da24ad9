#!/usr/bin/env bash
# The main job on the offline default, end to end on this machine (no GPU, no hub):
# SynthFace data -> offline default base (the shipped one when current) -> LoRA fine-tune ->
# vLLM serving -> evaluation with LR metrics -> report, and the SynthFace multiple-choice set. Every step resumes or is skipped when
# its output is up to date. Ends with a table of each step's wall time.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
export FACELLM_HOME=${FACELLM_HOME:-$ROOT/runs/home}
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
F="$ROOT/.venv/bin/facellm"
TIMES=()
step() {
  local t0=$SECONDS
  echo; echo "==> facellm $*"
  "$F" "$@"
  TIMES+=("$(printf '%-58s %6ds' "$*" $((SECONDS - t0)))")
}
START=$SECONDS
step data build --config instruct_data/configs/synthface.yaml
BASE_CFG=finetune/configs/facellm_tiny_base.yaml
if ! "$F" models build-default --config "$BASE_CFG" --status; then
  step data build --config instruct_data/configs/synthface_pretrain.yaml
fi
step models build-default --config "$BASE_CFG"
step train --config finetune/configs/facellm_tiny.yaml --resume
step eval --config eval/configs/synthface_tiny.yaml
step eval mc --config eval/configs/synthface_mc.yaml
echo; echo "step times (wall clock)"
printf '%s\n' "${TIMES[@]}"
printf '%-58s %6ds\n' "total (set-up excluded)" $((SECONDS - START))
