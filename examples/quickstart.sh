#!/usr/bin/env bash
# The main job on the embedded default data, end to end on a CPU in a few minutes: `mv3dad demo` generates a small
# SiM3D-style benchmark, compares each part with its CAD model and with the measured scan (`--method deviation`),
# pretrains DINO-Depth and fits ModMap briefly, predicts, evaluates, exports volumes and draws pictures.
# Usage: bash examples/quickstart.sh [OUT] [demo options...]   (see `mv3dad demo --help`)
set -euo pipefail
OUT="${1:-out/demo}"
shift || true
exec mv3dad demo "$OUT" "$@"
