#!/usr/bin/env bash
# How many views, and source views per target, can be dropped for speed before detection suffers?
# RUN: a run from `mv3dad fit`; DATA: its dataset. The sweep predicts with N random views (several seeds) and K
# source views per target (K matters for cross-view methods: ModMap), computes the frozen features once (cached in
# OUT/features) and writes OUT/study.csv, OUT/study.md and OUT/study.png (quality against time per sample).
# Usage: RUN=out/demo/runs/modmap_vase DATA=out/demo/data VIEWS=3,6,12 SOURCES=1,3 SEEDS=3 bash examples/study_views.sh
set -euo pipefail
: "${RUN:?set RUN to a run folder from mv3dad fit}"
: "${DATA:?set DATA to the dataset root}"
OUT="${OUT:-out/study_views}"
ARGS=(--views "${VIEWS:-3,6,12}" --seeds "${SEEDS:-3}")
if [ -n "${SOURCES:-}" ]; then ARGS+=(--sources "$SOURCES"); fi
mv3dad study-views "$RUN" "$DATA" --out "$OUT" "${ARGS[@]}"
# Many parts or settings: the same sweep spreads each prediction over processes (one GPU each where present):
#   torchrun --standalone --nproc_per_node 2 -m mv3dad study-views "$RUN" "$DATA" --out "$OUT" ...
