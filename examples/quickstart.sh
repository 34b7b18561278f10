#!/usr/bin/env bash
# The main job on the embedded default data, end to end on a CPU in a few minutes:
#   synthetic SiM3D-style benchmark -> DINO-Depth pretraining -> ModMap fit (all N x N view pairs)
#   -> predict 3D anomaly volumes -> evaluate (I-AUROC, V-AUPRO) -> export (.vdb, .ply) -> picture.
# Settings are scaled down for a laptop CPU; docs/quality.md has the full-size commands and measured figures.
set -euo pipefail
OUT="${1:-out/quickstart}"
CAT=vase
mkdir -p "$OUT"

mv3dad synth "$OUT/data" --categories "$CAT" --views 12 --image-size 128 --test-instances 6 --seed 0 --save-meshes

# DINO-Depth: self-supervised ViT-S/14 on an endless synthetic depth corpus (a short run; see docs/pretrain.md).
# configs/pretrain_depth_quick.yaml ships in the package (mv3dad/configs/), so this runs from any directory.
mv3dad pretrain-depth --config configs/pretrain_depth_quick.yaml --synthetic --out "$OUT/dino_depth" \
  --steps 20 --image-size 112 --batch-size 4

# The image encoder is DINOv2 ViT-B/14; its pretrained weights come from the timm hub or a local file
# (--image-weights FILE). Offline without a file, --random-init lets the demo run with an untrained one.
IMAGE_WEIGHTS=()
if [ -n "${MV3DAD_IMAGE_WEIGHTS:-}" ]; then IMAGE_WEIGHTS=(--image-weights "$MV3DAD_IMAGE_WEIGHTS"); fi
mv3dad fit "$OUT/data" --category "$CAT" --out "$OUT/run" --views all --depth-encoder "$OUT/dino_depth" \
  --image-size 112 --epochs 30 --random-init "${IMAGE_WEIGHTS[@]}"

mv3dad predict "$OUT/run" "$OUT/data" --out "$OUT/pred" --format vdb --format ply
mv3dad evaluate "$OUT/pred" --data "$OUT/data" --json "$OUT/results.json" --markdown "$OUT/results.md"

# A picture of the highest-scoring anomalous test instance's volume over its mesh.
read -r INST < <(python3 -c "
import json, sys
s = json.load(open('$OUT/pred/scores.json'))['scores']['$CAT']
print(max((v['score'], k) for k, v in s.items() if v['label'] == 'anomalous')[1])")
mv3dad render "$OUT/pred/$CAT/$INST.npz" --mesh "$OUT/data/$CAT/test/$INST/mesh.ply" --views 4 \
  --out "$OUT/anomaly_$CAT.png"
echo "benchmark preview: $OUT/data/preview.png"
echo "volumes:           $OUT/pred/$CAT/*.npz|.vdb|.ply"
echo "metrics:           $OUT/results.md"
echo "picture:           $OUT/anomaly_$CAT.png"
