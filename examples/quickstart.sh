#!/usr/bin/env bash
# The main job on the embedded default data: a small synthetic benchmark and its preview picture.
set -euo pipefail
OUT="${1:-out/quickstart}"
mv3dad synth "$OUT/data" --categories vase,stool --views 12 --image-size 128 --test-instances 4 --seed 0
echo "benchmark: $OUT/data   preview: $OUT/data/preview.png"
