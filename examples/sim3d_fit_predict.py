"""Fit and predict on a dataset in SiM3D's released layout, with your calibration files.

    python3 examples/sim3d_fit_predict.py SIM3D_ROOT --calib CALIB_DIR --class plastic_vase --out out/sim3d \
        [--method deviation] [--setup real2real] [--views all] [-- extra fit options]

SiM3D ships images and depth but neither calibration nor ground-truth volumes: write one rig file per class,
``CALIB_DIR/<class>.yaml`` (the ``mv3dad/calib/`` format: one camera per view, in the views' sorted file-name order;
optionally ``<class>_synth.yaml`` for the synthetic training views), and put ground truth at
``SIM3D_ROOT/<class>/gt/<instance>.npz`` (docs/data.md). The script reads the tree with
:func:`mv3dad.data.open_sim3d`, writes it once in the mv3dad layout (``OUT/data``; reused when rerun), then runs
``mv3dad fit`` -> ``predict`` -> ``evaluate``.

``--make-tiny DIR`` first writes a tiny SiM3D-layout tree (from ``mv3dad synth``: depth ``.npy`` with ``inf`` for
no measurement, ``rgb/<view>_2.png``, ground truth, and the calibration file) to try the script without the data.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np


def make_tiny(root: Path, cls: str, src: Path | None = None, views: int = 6, image_size: int = 160,
              test_instances: int = 3) -> Path:
    """A tiny SiM3D-layout tree under ``root`` (and ``root/calib/<cls>.yaml``) from the vase of the mv3dad-layout
    benchmark ``src`` (default: one made here with ``mv3dad synth``); returns the calibration folder."""
    from PIL import Image

    from mv3dad.data import open_dataset
    from mv3dad.data.rig import Rig, save_rig

    src = src or root / "_synth"
    if not (src / "benchmark.json").is_file():
        subprocess.run(["mv3dad", "synth", str(src), "--categories", "vase", "--views", str(views), "--image-size",
                        str(image_size), "--test-instances", str(test_instances), "--no-preview", "--no-progress"],
                       check=True)
    ds = open_dataset(src)["vase"]
    samples = [(f"{cls}_real", ds.train[0])] + [
        (f"{'bad' if s.label == 'anomalous' else 'good'}_{s.instance_id}", s) for s in ds.test]
    for folder, s in samples:
        for i, v in enumerate(s.views):
            depth = np.where(v.depth > 0, v.depth, np.inf)  # SiM3D: inf = no measurement
            (root / cls / folder / "depth").mkdir(parents=True, exist_ok=True)
            (root / cls / folder / "rgb").mkdir(parents=True, exist_ok=True)
            np.save(root / cls / folder / "depth" / f"C{i:02d}.npy", depth)
            img = v.image if v.image.ndim == 2 else v.image.mean(axis=2)
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / cls / folder / "rgb" / f"C{i:02d}_2.png")
        if s.gt is not None:
            from mv3dad.geometry.grid import VoxelGrid

            g = VoxelGrid.from_dataarray(s.gt)
            (root / cls / "gt").mkdir(parents=True, exist_ok=True)
            np.savez_compressed(root / cls / "gt" / f"{folder}.npz", gt=np.asarray(s.gt.values, np.uint8),
                                origin=np.asarray(g.origin, float), voxel_size=np.float64(g.voxel_size))
    calib = root / "calib"
    save_rig(Rig(cls, [v.camera for v in ds.train[0].views]), calib / f"{cls}.yaml")
    return calib


def to_mv3dad(sim3d_root: Path, calib: Path, cls: str, setup: str, out: Path) -> Path:
    """Write the class's training and test instances in the mv3dad layout (once)."""
    from mv3dad.data import open_sim3d
    from mv3dad.data.layout import write_benchmark_info, write_sample

    if (out / "benchmark.json").is_file():
        return out
    ds = open_sim3d(sim3d_root, calib_dir=calib, setup=setup, classes=[cls])
    for s in ds[cls].train:
        write_sample(out, s, "train", overwrite=True)
    for s in ds[cls].test:
        write_sample(out, s, "test", overwrite=True)
    write_benchmark_info(out, [cls], source=str(sim3d_root), setup=setup)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("root", type=Path, help="SiM3D root (one folder per class)")
    ap.add_argument("--calib", type=Path, default=None, help="folder of <class>.yaml rig files")
    ap.add_argument("--class", dest="cls", default="plastic_vase")
    ap.add_argument("--out", type=Path, default=Path("out/sim3d"))
    ap.add_argument("--method", default="deviation")
    ap.add_argument("--setup", default="real2real")
    ap.add_argument("--views", default="all")
    ap.add_argument("--make-tiny", action="store_true", help="first write a tiny SiM3D-layout tree at ROOT")
    ap.add_argument("--tiny-from", type=Path, default=None, help="--make-tiny from this mv3dad-layout benchmark "
                                                                 "with a vase category (default: synthesise one)")
    ap.add_argument("fit_args", nargs="*", help="extra `mv3dad fit` options (after --)")
    args = ap.parse_args(argv)

    calib = args.calib
    if args.make_tiny:
        calib = make_tiny(args.root, args.cls, args.tiny_from)
    if calib is None:
        ap.error("--calib is required (SiM3D ships no calibration)")
    data = to_mv3dad(args.root, calib, args.cls, args.setup, args.out / "data")
    run, pred = args.out / "run", args.out / "pred"

    def mv3dad(*a):
        subprocess.run([sys.executable, "-m", "mv3dad", *map(str, a)], check=True)

    mv3dad("fit", data, "--category", args.cls, "--out", run, "--method", args.method, "--views", args.views,
           "--setup", args.setup, *args.fit_args)
    mv3dad("predict", run, data, "--out", pred)
    mv3dad("evaluate", pred, "--data", data, "--markdown", args.out / "results.md")
    print(f"run {run}, predictions {pred}, table {args.out / 'results.md'}")


if __name__ == "__main__":
    main()
