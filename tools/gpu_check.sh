#!/usr/bin/env bash
# The prepared check for a lent GPU machine (issue 14, item 5): GPU tests, predict per stage for 36 views at
# 896 px (random ViT-B/14 + ViT-S/14 in bf16), DINO-Depth pretraining throughput. Runs from the source tree
# without installing (PYTHONPATH), no network; writes gpu_check.json + gpu_check.md into the output folder.
#   bash tools/gpu_check.sh [OUT_DIR] [--smoke] [more tools/gpu_check.py options]
# OUT_DIR defaults to $OUT if set, else gpu_check_out. --smoke: tiny sizes, runs on a CPU (checks the script).
# Budget: under 5 minutes on an H100/H200 (each stage is guarded; a failed stage is recorded, the rest still run).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check_out}"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then out="$1"; shift; fi
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" > "$out/nvidia-smi.txt"
timeout 290 python3 tools/gpu_check.py "$out" "$@" 2>&1 | tee "$out/gpu_check.log"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] && echo "gpu_check: stopped at the 290 s limit; the stages finished so far are in $out" >&2
exit "$rc"
