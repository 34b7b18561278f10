"""``mv3dad evaluate``: I-AUROC, V-AUPRO and V-AUROC (3D) or I-AUROC, P-AUROC, AUPRO (single-view) per category.

V-AUROC is the voxel-level AUROC over the observed voxels of all test instances (the 3D analogue of P-AUROC). It
is not in the paper's tables; it is reported because it does not depend on the instance score (the max of the
volume) nor on a false-positive limit, so it shows whether the scores are higher on the defects at all.

Multiview predictions are evaluated in 3D: ground truth and prediction are compared voxel by voxel on the
prediction's grid. Single-view predictions (N = 1, e.g. CPIR) are evaluated in 2D on the view's anomaly map (NaN
off the foreground = not evaluated), against the view's ground-truth mask: a pixel is anomalous when its measured
3D point falls in a ground-truth voxel. A nominal test instance has no
ground-truth volume: its ground truth is all zeros on the prediction's grid. A ground truth on a different grid
is resampled onto the prediction's grid by nearest voxel centre (exact when both grids share voxel size and
lattice, as with ``mv3dad predict --grid gt``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr

from mv3dad.data import open_dataset
from mv3dad.data.scene import DataError
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.geometry.projection import depth_to_points
from mv3dad.io.atomic import atomic_write
from mv3dad.io.read import read_json
from mv3dad.metrics import MetricsConfig, evaluate as metrics_evaluate, oracle_ceiling
from mv3dad.metrics.evaluate import EVALUATE_LIMITS
from mv3dad.pipeline.predict import SCORES_FILE

LIMITS = EVALUATE_LIMITS


def gt_on_grid(gt: xr.DataArray | None, grid: VoxelGrid) -> np.ndarray:
    """(X, Y, Z) uint8 ground truth on ``grid`` (zeros where there is none)."""
    out = np.zeros(grid.shape, np.uint8)
    if gt is None:
        return out
    g = VoxelGrid.from_dataarray(gt)
    if g == grid:
        return np.asarray(gt.values, dtype=np.uint8)
    idx = np.argwhere(np.asarray(gt.values) > 0)
    dst = grid.world_to_index(g.index_to_world(idx))
    ok = grid.contains(dst)
    out[tuple(dst[ok].T)] = 1
    return out


def gt_mask_2d(gt: xr.DataArray | None, view) -> np.ndarray:
    """(H, W) uint8 ground-truth mask of a view: pixels whose measured 3D point lies in a ground-truth voxel."""
    out = np.zeros(view.depth.shape, np.uint8)
    if gt is None:
        return out
    pts, valid = depth_to_points(view.depth, view.camera)
    g = VoxelGrid.from_dataarray(gt)
    idx = g.world_to_index(pts)
    ok = g.contains(idx)
    hit = np.zeros(len(pts), bool)
    hit[ok] = np.asarray(gt.values)[tuple(idx[ok].T)] > 0
    out[valid] = hit
    return out


def _fmt(x: float) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def check_dataset_identity(pred: Path, record: dict, data: str | Path, cat: str, tests: dict) -> None:
    """Refuse predictions made on another dataset than ``data``: every test instance's label and content digest
    (recorded by ``predict``, :func:`mv3dad.pipeline.predict.sample_digest`) must match; failed samples and
    predictions of instances the dataset lacks are errors too.

    Raises:
        DataError: naming both datasets and the first differing instances.
    """
    from mv3dad.pipeline.predict import sample_digest

    inst = record["scores"][cat]
    made_on = (record.get("dataset") or {}).get("path") or record.get("data")
    failed = [f"{iid} ({e['error']})" for iid, e in inst.items() if e.get("error")]
    if failed:
        raise DataError(f"{pred / SCORES_FILE}: predict failed on {cat}/{', '.join(failed[:3])}; fix those samples "
                        f"and rerun `mv3dad predict` (the scored samples are kept)")
    extra = sorted(set(inst) - set(tests))
    diffs = [f"{cat}/{iid}: not in {data}" for iid in extra]
    for iid, s in tests.items():
        e = inst.get(iid)
        if e is None:
            continue
        if e.get("label") is not None and e["label"] != s.label:
            diffs.append(f"{cat}/{iid}: label {e['label']} in the predictions, {s.label} in {data}")
        elif e.get("digest") is not None and e["digest"] != sample_digest(s):
            diffs.append(f"{cat}/{iid}: other content (digest {e['digest']} vs {sample_digest(s)})")
    if diffs:
        raise DataError(f"{pred}: the predictions were made on {made_on}, which is not the dataset {data} "
                        f"given to evaluate: " + "; ".join(diffs[:4]) + (f" (+{len(diffs) - 4} more)"
                                                                          if len(diffs) > 4 else ""))


def run_evaluate(pred: str | Path, data: str | Path, json_out: str | Path | None = None, evaluate: str = "observed",
                 mode: str = "exact", allow_incomplete: bool = False, ceiling: bool = False) -> tuple[dict, str]:
    """Compute the metrics of a prediction directory; returns ``(results, markdown table)``.

    Reads the predictions (``scores.json``, the volumes or, single-view, the maps) and the test set's ground
    truth, and computes each category's figures with :func:`mv3dad.metrics.evaluate` (I-AUROC on the instance
    scores the prediction reported); ``results`` maps each category and ``"mean"`` to them. ``evaluate`` (which
    elements count) and ``mode`` (exact or MVTec-compatible AUPRO) are :class:`~mv3dad.metrics.MetricsConfig`
    fields; see docs/metrics.md. ``ceiling`` adds each category's ``"ceiling"``: the figures of an oracle on the
    same observed elements (:func:`mv3dad.metrics.oracle_ceiling`), what the predictions could reach at best.
    """
    from mv3dad.export import load_volume

    from mv3dad.io import check_output_file

    pred = Path(pred)
    if json_out is not None:
        check_output_file(json_out, "--json")
    if not (pred / SCORES_FILE).is_file():
        raise FileNotFoundError(f"{pred / SCORES_FILE}: no predictions here (run `mv3dad predict` first)")
    record = read_json(pred / SCORES_FILE, "prediction scores")
    ds = open_dataset(data, allow_incomplete=allow_incomplete)
    single_view = record.get("n_views") == 1
    config = MetricsConfig(fpr_limits=LIMITS, evaluate=evaluate, mode=mode)
    results: dict = {}
    for cat, inst in record["scores"].items():
        if cat not in ds.categories:
            raise DataError(f"{data}: no category {cat!r} for the predictions in {pred}")
        tests = {s.instance_id: s for s in ds[cat].test}
        check_dataset_identity(pred, record, data, cat, tests)
        missing = sorted(set(tests) - set(inst))
        if missing:
            raise DataError(f"{pred}/{cat}: no prediction for test instances {missing}")
        scores, gts = [], []
        for iid, s in tests.items():
            if single_view:
                views = [s.views[i] for i in record["rig_views"]] if record.get("rig_views") else s.views
                scores.append(np.load(pred / cat / f"{iid}_maps.npz", allow_pickle=False)["maps"][0]
                              .astype(np.float32))
                gts.append(gt_mask_2d(s.gt, views[0]))
            else:
                vol = load_volume(pred / cat / f"{iid}.npz")
                scores.append(np.asarray(vol.values, dtype=np.float32))
                gts.append(gt_on_grid(s.gt, VoxelGrid.from_dataarray(vol)))
        labels = [int(s.label == "anomalous") for s in tests.values()]
        results[cat] = metrics_evaluate(scores, gts, labels, [inst[iid]["score"] for iid in tests], config)
        if ceiling:
            results[cat]["ceiling"] = oracle_ceiling(scores, gts, LIMITS, evaluate)
    if single_view:
        keys, head = ("i_auroc", "p_auroc", "aupro_30", "aupro_1"), ("I-AUROC", "P-AUROC", "AUPRO@30%", "AUPRO@1%")
    else:
        keys, head = (("i_auroc", "v_aupro_1", "v_aupro_30", "v_auroc"),
                      ("I-AUROC", "V-AUPRO@1%", "V-AUPRO@30%", "V-AUROC"))
    results["mean"] = {k: float(np.nanmean([results[c].get(k, np.nan) for c in record["scores"]])) for k in keys}
    lines = ["| category | " + " | ".join(head) + " |", "|---" * (len(keys) + 1) + "|"]
    for cat in [*record["scores"], "mean"]:
        lines.append(f"| {cat} | " + " | ".join(_fmt(results[cat][k]) for k in keys) + " |")
    table = "\n".join(lines)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(json_out, json.dumps(results, indent=2), fsync=True)
    return results, table
