"""Reader of the SiM3D benchmark in its authors' released layout, giving the same :class:`Dataset` as the mv3dad one.

::

    <root>/<class>/<class>_real/depth/<name>.npy  rgb/<name>_2.png        real2real training instance
    <root>/<class>/<class>_synth/DEPTH/<name>_depth.exr  RGB/<name>_2.png  synth2real training instance
    <root>/<class>/<test>/depth/<name>.npy  rgb/<name>_2.png               every other sub-folder: a test
                                                                           instance, anomalous iff "bad" in <test>

Views are in sorted file-name order. Real depth: ``inf`` (and any other non-finite or negative value) means no
measurement and becomes 0. Synthetic EXR depth: the maximum value is the background and becomes 0, negatives are
clipped to 0. SiM3D's calibration and ground-truth volumes are not distributed with its images, so they come from
``<calib_dir>/<class>.yaml`` (the ``calib/`` rig format, one camera per view in the same sorted order; optionally
``<calib_dir>/<class>_synth.yaml`` for the synthetic training views) and from ``gt_pattern`` (``.npz`` as in the
mv3dad layout). Details: ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mv3dad.data.layout import CategoryData, Dataset, SampleSequence, load_depth_array, read_gt_npz, read_png
from mv3dad.data.rig import Rig, load_rig
from mv3dad.data.scene import DataError, Sample, View
from mv3dad.geometry.camera import CalibrationError
from mv3dad.io import resolve_data_path

SIM3D_CLASSES = ("plastic_stool", "rubbish_bin", "wicker_vase", "bathroom_forniture", "container",
                 "plastic_vase", "sink_cabinet", "wooden_stool")
"""SiM3D's classes, spelt as on disk (``bathroom_forniture`` included)."""

SETUPS = ("real2real", "synth2real")
CALIB_PATTERN = "{calib_dir}/{cls}.yaml"
SYNTH_CALIB_PATTERN = "{calib_dir}/{cls}_synth.yaml"
GT_FOLDER = "gt"
"""A class sub-folder of this name is never a test instance (the default ground-truth folder)."""
_MAX_LISTED = 20


# ------------------------------------------------------------------------------------------------ depth
def read_real_depth(path: str | Path) -> np.ndarray:
    """A SiM3D scanner depth map (``.npy``) as float32 (H, W); inf / NaN / negative (no measurement) -> 0."""
    path = Path(path)
    depth = load_depth_array(path)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or not (np.issubdtype(depth.dtype, np.floating) or np.issubdtype(depth.dtype, np.integer)):
        raise DataError(f"{path}: depth must be a 2-D numeric array, got {depth.dtype} of shape {depth.shape}")
    depth = depth.astype(np.float32)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


def _exr_depth_channel(channels: dict, path: Path) -> np.ndarray:
    """The depth channel of an EXR: a ``Z`` channel (``*.Z`` in multi-layer files), else the only channel,
    else ``R`` (depth stored in an RGB image), else ``Y``."""
    names = sorted(channels)
    z = [n for n in names if n == "Z" or n.endswith(".Z")]
    pick = z[0] if z else names[0] if len(names) == 1 else "R" if "R" in names else "Y" if "Y" in names else None
    if pick is None:
        raise DataError(f"{path}: no depth channel (looked for Z, a single channel, R or Y) among {names}")
    return np.asarray(channels[pick].pixels)


def read_synth_depth(path: str | Path) -> np.ndarray:
    """A SiM3D synthetic depth map (``*_depth.exr``) as float32 (H, W).

    The maximum value is the background and becomes 0 (with an ``inf`` background, the inf pixels); remaining
    NaN / inf and negative values become 0.
    """
    import OpenEXR

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: depth file is missing")
    try:
        with OpenEXR.File(str(path), separate_channels=True) as f:
            depth = _exr_depth_channel(f.channels(), path).astype(np.float32)
    except RuntimeError as e:
        raise DataError(f"{path}: cannot read EXR: {e}") from None
    if depth.ndim != 2:
        raise DataError(f"{path}: depth channel must be 2-D, got shape {depth.shape}")
    finite_or_inf = depth[~np.isnan(depth)]
    if finite_or_inf.size:
        depth[depth == finite_or_inf.max()] = 0.0
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    return depth


# ------------------------------------------------------------------------------------------------ instances
@dataclass(frozen=True, eq=False)
class _Instance:
    """Everything needed to load one SiM3D instance, found at open time."""

    category: str
    instance_id: str
    folder: Path
    kind: str  # "real", "synth" or "test"
    files: list[tuple[Path, Path]]  # (image, depth) per view, in view order
    rig: Rig
    gt_path: Path | None


def _view_files(folder: Path, kind: str) -> list[tuple[Path, Path]]:
    """(image, depth) paths of an instance folder in sorted depth-file order; errors name the missing file."""
    depth_dir, image_dir, pattern = ((folder / "DEPTH", folder / "RGB", "*_depth.exr") if kind == "synth"
                                     else (folder / "depth", folder / "rgb", "*.npy"))
    depths = sorted(depth_dir.glob(pattern), key=lambda p: p.name)
    if not depths:
        raise DataError(f"{depth_dir}: no depth maps ({pattern}) in this SiM3D instance folder")
    stems = [p.name[: -len("_depth.exr")] if kind == "synth" else p.stem for p in depths]
    images = [image_dir / f"{s}_2.png" for s in stems]
    for img, dep in zip(images, depths):
        if not img.is_file():
            raise DataError(f"{img}: image of depth map {dep.name} is missing")
    return list(zip(images, depths))


def _load(inst: _Instance, setup: str, depth_scale: float) -> Sample:
    """Read one instance's pixels (validated) and ground truth."""
    read_depth = read_synth_depth if inst.kind == "synth" else read_real_depth
    views = []
    for i, ((img, dep), cam) in enumerate(zip(inst.files, inst.rig.cameras)):
        view = View(read_png(img), read_depth(dep) * np.float32(depth_scale), cam)
        views.append(view.validate(f"{img} / {dep.name} (camera {i} of rig {inst.rig.name!r})"))
    label = "anomalous" if inst.kind == "test" and "bad" in inst.instance_id else "nominal"
    gt = read_gt_npz(inst.gt_path) if label == "anomalous" and inst.gt_path is not None else None
    meta = {"source": "sim3d", "setup": setup, "kind": inst.kind, "folder": str(inst.folder),
            "view_files": [[str(a), str(b)] for a, b in inst.files], "rig": inst.rig.name}
    return Sample(inst.category, inst.instance_id, views, label, gt, None, meta)


def _sequence(instances: list[_Instance], setup: str, depth_scale: float) -> SampleSequence:
    return SampleSequence([s.instance_id for s in instances], lambda i: _load(instances[i], setup, depth_scale))


def _listing(lines: list[str]) -> str:
    extra = len(lines) - _MAX_LISTED
    return "\n  ".join(lines[:_MAX_LISTED] + ([f"... and {extra} more"] if extra > 0 else []))


def open_sim3d(root: str | Path, calib_dir: str | Path = "calib/sim3d",
               gt_pattern: str | None = "{root}/{cls}/gt/{instance}.npz", setup: str = "real2real", *,
               classes: Sequence[str] | None = None, depth_scale: float = 1.0) -> Dataset:
    """Open a SiM3D tree lazily as a :class:`Dataset` (``ds[cls].train``: the one training instance of
    ``setup``; ``ds[cls].test``: the test instances in sorted folder order).

    Args:
        root: the SiM3D root holding one folder per class.
        calib_dir: folder of per-class rig files ``<class>.yaml`` (optional ``<class>_synth.yaml`` for the
            synthetic training views); a relative path not found from the current folder is taken from the
            repository root.
        gt_pattern: path pattern of the anomalous test instances' ground-truth ``.npz`` with placeholders
            ``{root}``, ``{cls}``, ``{instance}``; None to read no ground truth. Neither a class sub-folder
            named ``gt`` nor the pattern's folder when it lies directly in the class folder is a test instance.
        setup: ``"real2real"`` (train on ``<class>_real``) or ``"synth2real"`` (train on ``<class>_synth``).
        classes: classes to read; None for every SiM3D class present under ``root``.
        depth_scale: factor taking the stored depth units to mm (1.0 when they are mm).

    Raises:
        DataError: naming every missing calibration / ground-truth file with the pattern used, or the first
            missing or malformed folder or view file.
    """
    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {SETUPS}, got {setup!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: SiM3D root folder is missing")
    calib = resolve_data_path(calib_dir)
    if classes is None:
        classes = [c for c in SIM3D_CLASSES if (root / c).is_dir()]
        if not classes:
            raise DataError(f"{root}: no SiM3D class folder found (expected some of {list(SIM3D_CLASSES)})")
    missing: list[str] = []
    rigs: dict[str, tuple[Rig, Rig]] = {}
    for cls in classes:
        if not (root / cls).is_dir():
            raise DataError(f"{root / cls}: class folder is missing")
        path = Path(CALIB_PATTERN.format(calib_dir=calib, cls=cls))
        if not path.is_file():
            missing.append(f"calibration of class {cls!r}: {path} (pattern {CALIB_PATTERN!r}, calib_dir={calib})")
            continue
        synth = Path(SYNTH_CALIB_PATTERN.format(calib_dir=calib, cls=cls))
        try:
            rig = load_rig(path)
            rigs[cls] = (rig, load_rig(synth) if synth.is_file() else rig)
        except CalibrationError as e:
            raise DataError(str(e)) from e
    if missing:
        raise DataError("SiM3D calibration files are missing (SiM3D does not ship them; write them in the calib/ "
                        "rig format, see calib/README.md):\n  " + _listing(missing))

    data, missing = {}, []
    for cls in classes:
        cdir = root / cls
        train_kind = "real" if setup == "real2real" else "synth"
        train_dir = cdir / f"{cls}_{train_kind}"
        if not train_dir.is_dir():
            raise DataError(f"{train_dir}: training folder of setup {setup!r} is missing")
        skip = {f"{cls}_real", f"{cls}_synth", GT_FOLDER}
        if gt_pattern is not None:
            gt_dir = _gt_path(gt_pattern, root, cls, "x").parent
            if gt_dir.parent.resolve() == cdir.resolve():
                skip.add(gt_dir.name)
        train = _Instance(cls, train_dir.name, train_dir, train_kind, _view_files(train_dir, train_kind),
                          rigs[cls][1 if train_kind == "synth" else 0], None)
        tests = []
        for folder in (p for p in sorted(cdir.iterdir(), key=lambda p: p.name)
                       if p.is_dir() and not p.name.startswith(".") and p.name not in skip):
            gt_path = _gt_path(gt_pattern, root, cls, folder.name) if gt_pattern is not None else None
            if gt_path is not None and "bad" in folder.name and not gt_path.is_file():
                missing.append(f"ground truth of {cls}/{folder.name}: {gt_path} (pattern {gt_pattern!r})")
            tests.append(_Instance(cls, folder.name, folder, "test", _view_files(folder, "real"), rigs[cls][0],
                                   gt_path))
        for inst in [train, *tests]:
            if len(inst.files) != len(inst.rig):
                raise DataError(f"{inst.folder}: {len(inst.files)} views but calibration rig {inst.rig.name!r} "
                                f"has {len(inst.rig)} cameras")
        data[cls] = CategoryData(cls, _sequence([train], setup, depth_scale), _sequence(tests, setup, depth_scale))
    if missing:
        raise DataError("SiM3D ground-truth volumes are missing (pass gt_pattern=None to read none):\n  "
                        + _listing(missing))
    info = {"format": "sim3d", "setup": setup, "calib_dir": str(calib), "gt_pattern": gt_pattern,
            "depth_scale": depth_scale}
    return Dataset(root, list(classes), info, data)


def _gt_path(pattern: str, root: Path, cls: str, instance: str) -> Path:
    try:
        return Path(pattern.format(root=root, cls=cls, instance=instance))
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"gt_pattern {pattern!r}: only the placeholders {{root}}, {{cls}}, {{instance}} are "
                         f"allowed ({e})") from None
