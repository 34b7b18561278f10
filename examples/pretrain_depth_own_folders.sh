#!/usr/bin/env bash
# Train DINO-Depth (the self-supervised depth encoder) on your own depth maps.
# DEPTH_DIRS: one or more folders (space-separated) of depth maps in any layout the corpus reader knows: the mv3dad
# layout, SiM3D, MVTec 3D-AD, Eyecandies, or a plain folder of .npy/.tiff/.exr/.png depth files (docs/pretrain.md).
# Add SYNTHETIC=1 to mix in the endless synthetic corpus. Real training: the full recipe
# (configs/pretrain_depth.yaml), 10^4+ steps, a GPU; `torchrun --nproc_per_node N -m mv3dad pretrain-depth ...` for
# several GPUs.
# Usage: DEPTH_DIRS="/data/scans_a /data/scans_b" OUT=out/dino_depth STEPS=2000 bash examples/pretrain_depth_own_folders.sh
set -euo pipefail
: "${DEPTH_DIRS:?set DEPTH_DIRS to one or more folders of depth maps}"
OUT="${OUT:-out/dino_depth}"
STEPS="${STEPS:-200}"
IMAGE_SIZE="${IMAGE_SIZE:-112}"
BATCH="${BATCH:-8}"
CONFIG="${CONFIG:-configs/pretrain_depth_quick.yaml}"   # packaged config (found from any folder)
ARGS=()
for d in $DEPTH_DIRS; do ARGS+=(--data "$d"); done
if [ "${SYNTHETIC:-0}" = 1 ]; then ARGS+=(--synthetic); fi
RESUME=()
if [ -f "$OUT/history.json" ]; then RESUME=(--resume); fi   # rerun = continue
mv3dad pretrain-depth --config "$CONFIG" --out "$OUT" "${ARGS[@]}" --steps "$STEPS" --image-size "$IMAGE_SIZE" \
  --batch-size "$BATCH" "${RESUME[@]}"
# The encoder is OUT/encoder.safetensors + encoder.json; use it with `mv3dad fit ... --depth-encoder $OUT`.
echo "DINO-Depth encoder: $OUT"
