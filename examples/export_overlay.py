"""Export an anomaly volume as OpenVDB and NumPy and overlay it on the CAD mesh.

    python3 examples/export_overlay.py PRED/CAT/INSTANCE.npz --mesh part.stl --out out/export [--threshold T]

Writes ``OUT/<name>.vdb`` (OpenVDB float grid, voxel size and origin in mm; Blender, Houdini, ParaView read it),
``OUT/<name>.npy`` + ``.npy.json`` (the dense (X, Y, Z) float32 array, NaN = unobserved, and its grid), the
isosurface of the voxels over the threshold as ``OUT/<name>_iso.ply`` (opens in any mesh viewer next to the CAD
model: both are in the same mm world frame) and ``OUT/<name>.png``: the voxels over the threshold drawn over the
mesh. The threshold defaults to the largest nominal instance score of the prediction (``scores.json`` next to the
volume's category folder), so a nominal part draws clean.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mv3dad.export import isosurface, load_volume, save_mesh, save_volume
from mv3dad.viz.render import RenderConfig, nominal_threshold, render_volume


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("volume", type=Path, help="a volume written by `mv3dad predict` (.npz)")
    ap.add_argument("--mesh", type=Path, required=True, help="the CAD mesh (or the instance's mesh.ply)")
    ap.add_argument("--out", type=Path, default=Path("out/export"))
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--views", type=int, default=3, help="viewpoints in the picture (1-6)")
    args = ap.parse_args(argv)

    vol = load_volume(args.volume)
    args.out.mkdir(parents=True, exist_ok=True)
    cat = vol.attrs.get("category") or args.volume.resolve().parent.name  # predict writes PRED/<category>/<id>.npz
    name = f"{cat}_{vol.attrs.get('instance_id') or args.volume.stem}"
    save_volume(vol, args.out / f"{name}.vdb", "vdb")
    save_volume(vol, args.out / f"{name}.npy", "npy")
    threshold, note = args.threshold, "given"
    scores = args.volume.resolve().parent.parent / "scores.json"
    if threshold is None and scores.is_file():
        threshold, note = nominal_threshold(scores, cat)
    if threshold is None:
        threshold, note = float(np.nanquantile(vol.values, 0.99)), "0.99 quantile of this part"
    hot = int(np.sum(np.nan_to_num(vol.values, nan=-np.inf) > threshold))
    if hot:
        save_mesh(isosurface(vol, threshold, where=str(args.volume)), args.out / f"{name}_iso.ply", "ply")
    render_volume(vol, args.out / f"{name}.png", obj=args.mesh, threshold=threshold,
                  config=RenderConfig(views=args.views), title=name, threshold_note=note)
    print(f"{name}: {hot} voxels over {threshold:.3g} ({note}); wrote {args.out}/{name}.vdb, .npy, "
          f"{'_iso.ply, ' if hot else ''}.png")


if __name__ == "__main__":
    main()
