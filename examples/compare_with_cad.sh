#!/usr/bin/env bash
# Compare new parts with the part's CAD model: `--method deviation --reference-mesh` (the best setup without
# downloadable weights: every test scan is registered to the CAD model and each pixel scores its distance to it).
# DATA: a dataset in the mv3dad layout (default: a small synthetic one made here, with the CAD meshes saved);
# CAT: the category; MESH: the CAD mesh (STL/OBJ/PLY/GLB, mm, any pose; default the training instance's mesh.ply).
# REGISTRATION=rigid for dimensional inspection (a wrong scale is then itself a defect).
# Usage: DATA=bench CAT=vase MESH=part.stl OUT=out/cad bash examples/compare_with_cad.sh
set -euo pipefail
OUT="${OUT:-out/compare_with_cad}"
CAT="${CAT:-vase}"
if [ -z "${DATA:-}" ]; then
  DATA="$OUT/data"
  [ -f "$DATA/benchmark.json" ] || mv3dad synth "$DATA" --categories "$CAT" --views "${VIEWS:-12}" \
    --image-size "${IMAGE_SIZE:-256}" --test-instances "${TEST_INSTANCES:-6}" --save-meshes --no-preview
fi
MESH="${MESH:-$DATA/$CAT/train/000/mesh.ply}"
mv3dad fit "$DATA" --category "$CAT" --out "$OUT/run" --method deviation --reference-mesh "$MESH" \
  --registration "${REGISTRATION:-similarity}"
mv3dad predict "$OUT/run" "$DATA" --out "$OUT/pred" --save-maps
mv3dad evaluate "$OUT/pred" --data "$DATA" --json "$OUT/results.json" --markdown "$OUT/results.md"
# per part: the instance score (max deviation, mm) and the registration (scale, fitness, RMSE)
python3 - "$OUT/pred/scores.json" "$CAT" <<'PY'
import json, sys
rec = json.load(open(sys.argv[1]))["scores"][sys.argv[2]]
for iid, r in rec.items():
    reg = r.get("registration", {})
    print(f"{iid}: {r['label']:9s} max deviation {r['score']:.2f} mm  scale {reg.get('scale', float('nan')):.4f} "
          f"fitness {reg.get('fitness', float('nan')):.3f}")
PY
echo "volumes: $OUT/pred/$CAT/*.npz   table: $OUT/results.md"
