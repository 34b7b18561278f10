"""Benchmark: synthetic views rendered per second at 512 x 512 for a ~200k-triangle mesh (open3d backend).

Measures, side by side in one run and on the same views of the hemisphere12 rig:

1. ``cast``   - open3d ray casting alone (rays prepared beforehand): the floor;
2. ``render`` - rays + ray casting + texturing and Blinn-Phong shading (``RenderMesh.render``);
3. ``scanner``- ``render`` + the scanner artefacts of one view (``scanner_view``): what ``mv3dad synth`` does
   per view.

Usage::

    python tools/bench_render.py [--size 512] [--triangles 200000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels")
    ap.add_argument("--triangles", type=int, default=200_000, help="approximate triangle count of the mesh")
    ap.add_argument("--category", default="container", help="procedural category to refine to that size")
    ap.add_argument("--repeats", type=int, default=5, help="passes over the 12 views (best pass is reported)")
    args = ap.parse_args()

    import numpy as np
    import open3d as o3d

    from mv3dad.data import builtin_rig
    from mv3dad.synth import shapes
    from mv3dad.synth.artefacts import ArtefactConfig, scanner_view
    from mv3dad.synth.materials import material_for
    from mv3dad.synth.render import RenderMesh, camera_rays

    shape = shapes.build_category(args.category)
    edge = 8.0
    mesh = shapes.to_trimesh(shapes.refine(shape, edge))
    while len(mesh.faces) < 0.9 * args.triangles and edge > 1.0:  # refine until about the requested size
        edge *= 0.9
        mesh = shapes.to_trimesh(shapes.refine(shape, edge))
    rm = RenderMesh.build(mesh, material_for(args.category))
    cams = builtin_rig("hemisphere12").scaled(args.size).cameras
    rays = [o3d.core.Tensor.from_numpy(camera_rays(c)) for c in cams]
    cfg, spec = ArtefactConfig(), np.array([m.spec_dropout for m in rm.materials])
    rng = np.random.default_rng(0)
    scene = rm._scene  # noqa: SLF001 - the benchmark times the raw open3d call
    scanner_view(rm.render(cams[0]), False, spec, cfg, rng)  # warm-up: BVH build, numba compilation

    def cast():
        for r in rays:
            scene.cast_rays(r)

    def render():
        for c in cams:
            rm.render(c)

    def scanner():
        for c in cams:
            scanner_view(rm.render(c), False, spec, cfg, rng)

    hits = np.mean([(rm.render(c).depth > 0).mean() for c in cams])
    results = {}
    for name, fn in (("cast", cast), ("render", render), ("scanner", scanner)):
        best = float("inf")
        for _ in range(args.repeats):
            t = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t)
        results[name] = best / len(cams)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"mesh: {args.category}, {len(mesh.faces)} triangles; {args.size}x{args.size} px; "
          f"{hits:.0%} of pixels on the object; {os.cpu_count()} cpus, load average {load:.1f}")
    for name, sec in results.items():
        print(f"{name:8s} {sec * 1e3:7.1f} ms/view  {1 / sec:6.1f} views/s  "
              f"({sec / results['cast']:.2f} x cast)")


if __name__ == "__main__":
    main()
