"""The mv3dad on-disk layout: reader, atomic writer, and the lazy :class:`Dataset` view of a benchmark.

::

    <root>/benchmark.json                       {"format": "mv3dad", "version": 1, "categories": [...], ...}
    <root>/<category>/<split>/<instance_id>/    split in {train, test}
        meta.json      {"category", "instance_id", "label": "nominal|anomalous", "defects": [...], ...}
        cameras.yaml   the rig (calib/ format), one camera per view, in view order
        views/000_image.png  views/000_depth.npy  ...   (PNG 8/16 bit gray or 8 bit RGB; float32 mm, 0 = none)
        gt.npz         optional: "gt" uint8 (X, Y, Z), "origin" (3,) mm, "voxel_size" () mm
        mesh.ply       optional: the instance mesh, for pictures

A benchmark being written holds ``<root>/INCOMPLETE`` (removed last, after ``benchmark.json``); the reader refuses
it unless asked to read it anyway (with a warning). Folders whose name starts with ``.`` are ignored by the reader: the writer builds an instance in
``<split>/.tmp-<instance_id>-<pid>`` and renames it into place, so a killed writer leaves only a hidden folder.
Details and conventions: ``docs/data.md``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from mv3dad.data.rig import Rig, load_rig, save_rig
from mv3dad.data.scene import DataError, Sample, View
from mv3dad.geometry.camera import CalibrationError
from mv3dad.geometry.grid import VoxelGrid
from mv3dad.io import atomic_write, read_json

FORMAT = "mv3dad"
VERSION = 1
BENCHMARK_FILE = "benchmark.json"
INCOMPLETE_FILE = "INCOMPLETE"
"""Marker written by ``mv3dad synth`` before its first instance and removed after ``benchmark.json``: its presence
means the benchmark is being written or the writer was interrupted."""
SPLITS = ("train", "test")
LABELS = ("nominal", "anomalous")
PNG_COMPRESS_LEVEL = 3
"""zlib level of written PNGs: about 1.5x faster than Pillow's default 6 for ~10 % larger 8-bit files."""


# ------------------------------------------------------------------------------------------------ images
def read_png(path: str | Path) -> np.ndarray:
    """A PNG as float32 in [0, 1]: (H, W) for gray (8 or 16 bit), (H, W, 3) for RGB (alpha dropped).

    Raises:
        DataError: naming ``path`` when it is missing, unreadable or of an unsupported mode.
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
    except FileNotFoundError:
        raise DataError(f"{path}: image file is missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read image: {e}") from None
    if im.mode in ("LA", "RGBA", "P", "PA"):  # drop alpha, expand palettes
        im = im.convert("L" if im.mode == "LA" else "RGB")
    if im.mode in ("L", "RGB"):
        return np.asarray(im, dtype=np.float32) / 255.0
    if im.mode.startswith("I"):  # 16-bit gray ("I;16", "I;16B"; older Pillow gives "I")
        arr = np.asarray(im).astype(np.float32)
        if arr.min() < 0 or arr.max() > 65535:
            raise DataError(f"{path}: integer image values outside the 16-bit range")
        return arr / 65535.0
    raise DataError(f"{path}: unsupported image mode {im.mode!r} (expected 8/16-bit gray or 8-bit RGB)")


def png_image(image: np.ndarray, bits: int, where: str) -> Image.Image:
    """Quantise a float image in [0, 1] ((H, W) or (H, W, 3)) to an 8- or 16-bit Pillow image."""
    if bits not in (8, 16):
        raise ValueError(f"image_bits must be 8 or 16, got {bits}")
    if image.size and (image.min() < 0 or image.max() > 1):
        raise DataError(f"{where}: image values must lie in [0, 1], got [{image.min()}, {image.max()}]")
    if bits == 16 and image.ndim == 3:
        raise DataError(f"{where}: 16-bit PNG holds grayscale images only (Pillow cannot write 16-bit RGB); "
                        f"use image_bits=8 for RGB")
    scale = 255.0 if bits == 8 else 65535.0
    q = np.rint(np.asarray(image, dtype=np.float64) * scale).astype(np.uint8 if bits == 8 else np.uint16)
    return Image.fromarray(q)


# ------------------------------------------------------------------------------------------------ depth / gt
def load_depth_array(path: str | Path) -> np.ndarray:
    """The array of a depth ``.npy`` file as stored (no pickles); ``DataError`` naming ``path`` when unreadable."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: depth file is missing") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read depth: {e}") from None


def read_depth_npy(path: str | Path) -> np.ndarray:
    """A float32 (H, W) depth map in mm from ``.npy``; NaN, inf and negative depth are errors in this layout.

    Raises:
        DataError: naming ``path`` and the problem.
    """
    path = Path(path)
    depth = load_depth_array(path)
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise DataError(f"{path}: depth must be a 2-D float array, got {depth.dtype} of shape {depth.shape}")
    if not np.all(np.isfinite(depth)):
        raise DataError(f"{path}: depth holds {int(np.sum(~np.isfinite(depth)))} NaN/inf values; the mv3dad "
                        f"layout stores 0 for no measurement")
    if np.any(depth < 0):
        raise DataError(f"{path}: depth holds negative values")
    return depth.astype(np.float32, copy=False)


def read_gt_npz(path: str | Path, name: str = "gt") -> xr.DataArray:
    """A ground-truth volume from ``.npz`` ("gt" uint8 (X, Y, Z) 0/1, "origin" (3,) mm, "voxel_size" () mm).

    Returns:
        uint8 DataArray with dims (x, y, z) and voxel-centre coordinates in mm.

    Raises:
        DataError: naming ``path`` and the problem.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = {"gt", "origin", "voxel_size"} - set(z.files)
            if missing:
                raise DataError(f"{path}: ground-truth file lacks arrays {sorted(missing)}")
            gt, origin, vs = z["gt"], z["origin"], z["voxel_size"]
    except FileNotFoundError:
        raise DataError(f"{path}: ground-truth file is missing") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ground truth: {e}") from None
    if gt.ndim != 3 or origin.shape != (3,) or vs.size != 1:
        raise DataError(f"{path}: expected gt (X, Y, Z), origin (3,), voxel_size (); got "
                        f"{gt.shape}, {origin.shape}, {vs.shape}")
    if not np.isin(gt, (0, 1)).all():
        raise DataError(f"{path}: gt must hold only 0 and 1")
    try:
        grid = VoxelGrid(origin, float(vs), gt.shape)
    except ValueError as e:
        raise DataError(f"{path}: {e}") from None
    return grid.to_dataarray(gt.astype(np.uint8), name=name)


def write_gt_npz(path: Path, gt: xr.DataArray) -> None:
    """Write a ground-truth DataArray (dims x, y, z; values 0/1) as compressed ``.npz``."""
    try:
        grid = VoxelGrid.from_dataarray(gt)
    except ValueError as e:
        raise DataError(f"{path}: ground truth is not a regular x/y/z volume: {e}") from None
    values = np.asarray(gt.values)
    if not np.isin(values, (0, 1)).all():
        raise DataError(f"{path}: ground truth must hold only 0 and 1")
    with open(path, "wb") as f:
        np.savez_compressed(f, gt=values.astype(np.uint8), origin=grid.origin, voxel_size=np.float64(grid.voxel_size))


# ------------------------------------------------------------------------------------------------ instances
def _json_default(o):
    """JSON encoder for NumPy scalars and arrays inside ``meta``."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"meta value of type {type(o).__name__} is not JSON-serialisable")


def _check_name(value: str, what: str) -> None:
    """A category or instance id must be a plain, visible folder name."""
    if not value or value.startswith(".") or "/" in value or "\\" in value or value in (".", ".."):
        raise DataError(f"{what} {value!r} is not a valid folder name (non-empty, no '/', not starting with '.')")


def write_sample(root: str | Path, sample: Sample, split: str, image_bits: int = 8, *,
                 overwrite: bool = False) -> Path:
    """Write ``sample`` to ``<root>/<category>/<split>/<instance_id>/`` atomically.

    Every view is validated first (nothing is written for a bad sample). The instance is built in the hidden
    folder ``<split>/.tmp-<instance_id>-<pid>`` and renamed into place; on any error the temp folder is removed.

    Args:
        root: benchmark root folder.
        sample: the instance; ``sample.meta`` is stored in meta.json (with category, instance_id, label).
        split: ``"train"`` or ``"test"``.
        image_bits: 8 or 16 (16 only for grayscale images).
        overwrite: replace an existing instance instead of refusing.

    Returns:
        The instance folder.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if image_bits not in (8, 16):
        raise ValueError(f"image_bits must be 8 or 16, got {image_bits}")
    _check_name(sample.category, "category")
    _check_name(sample.instance_id, "instance_id")
    where = f"{sample.category}/{split}/{sample.instance_id}"
    if sample.label not in LABELS:
        raise DataError(f"{where}: label must be one of {LABELS}, got {sample.label!r}")
    if not sample.views:
        raise DataError(f"{where}: sample has no views")
    for i, view in enumerate(sample.views):
        view.camera.validate(f"{where}: view {i} camera")
        view.validate(f"{where}: view {i}")
    pngs = [png_image(v.image, image_bits, f"{where}: view {i}") for i, v in enumerate(sample.views)]
    meta = {**sample.meta, "category": sample.category, "instance_id": sample.instance_id, "label": sample.label,
            "n_views": len(sample.views), "image_bits": image_bits}
    meta_text = json.dumps(meta, indent=2, default=_json_default)

    final = Path(root) / sample.category / split / sample.instance_id
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final}: instance already exists (pass overwrite=True to replace it)")
    tmp = final.parent / f".tmp-{sample.instance_id}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "views").mkdir(parents=True)
        for i, (view, png) in enumerate(zip(sample.views, pngs)):
            png.save(tmp / "views" / f"{i:03d}_image.png", compress_level=PNG_COMPRESS_LEVEL)
            np.save(tmp / "views" / f"{i:03d}_depth.npy", view.depth.astype(np.float32))
        rig_name = sample.meta.get("rig")
        save_rig(Rig(rig_name if isinstance(rig_name, str) else sample.instance_id, sample.cameras),
                 tmp / "cameras.yaml")
        if sample.gt is not None:
            write_gt_npz(tmp / "gt.npz", sample.gt)
        if sample.mesh_path:
            _write_mesh(Path(sample.mesh_path), tmp / "mesh.ply")
        (tmp / "meta.json").write_text(meta_text)
        _move_into_place(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_mesh(src: Path, dst: Path) -> None:
    """Copy a PLY mesh, or convert any mesh trimesh reads (STL/OBJ/GLB/...) to PLY."""
    if not src.is_file():
        raise DataError(f"{src}: mesh file is missing")
    if src.suffix.lower() == ".ply":
        shutil.copyfile(src, dst)
        return
    import trimesh

    try:
        mesh = trimesh.load(src, force="mesh")
    except Exception as e:  # trimesh raises many types for unreadable files
        raise DataError(f"{src}: cannot read mesh: {e}") from None
    mesh.export(dst, file_type="ply")


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final``; an existing ``final`` is first renamed aside (hidden) and then removed."""
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except BaseException:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_sample(instance_dir: str | Path) -> Sample:
    """Read and validate one instance folder of the mv3dad layout.

    Raises:
        DataError: naming the file and the problem (missing file, view count different from the camera count,
            image/depth/camera shape mismatch, NaN/inf or negative depth, bad calibration, bad metadata).
    """
    d = Path(instance_dir)
    if not d.is_dir():
        raise DataError(f"{d}: instance folder is missing")
    meta = read_json(d / "meta.json", "meta.json")
    for key in ("category", "instance_id", "label"):
        if not isinstance(meta.get(key), str):
            raise DataError(f"{d / 'meta.json'}: field {key!r} is missing or not a string")
    if meta["label"] not in LABELS:
        raise DataError(f"{d / 'meta.json'}: label must be one of {LABELS}, got {meta['label']!r}")
    try:
        rig = load_rig(d / "cameras.yaml")
    except CalibrationError as e:
        raise DataError(str(e)) from e
    views_dir = d / "views"
    n = len(rig)
    indices = _view_indices(views_dir, d / "cameras.yaml", n)
    cameras = rig.cameras if len(indices) == n else [rig.cameras[i] for i in indices]
    views = []
    for i, cam in zip(indices, cameras):
        img_path, dep_path = views_dir / f"{i:03d}_image.png", views_dir / f"{i:03d}_depth.npy"
        view = View(read_png(img_path), read_depth_npy(dep_path), cam)
        views.append(view.validate(f"{img_path} / {dep_path.name} (camera {i} of {d / 'cameras.yaml'})"))
    if indices != list(range(len(indices))):
        meta = {**meta, "view_indices": indices}  # the rig views this scan holds, from its file names
    gt = read_gt_npz(d / "gt.npz") if (d / "gt.npz").exists() else None
    mesh = d / "mesh.ply"
    return Sample(meta["category"], meta["instance_id"], views, meta["label"], gt,
                  str(mesh) if mesh.is_file() else None, meta)


def _view_indices(views_dir: Path, cameras_file: Path, n: int) -> list[int]:
    """The view numbers of a sample's files: 0..n-1 for a complete scan. A scan missing views keeps the numbers of
    the views it holds (e.g. 000, 001, 003): with ``n`` cameras (one per file, in file order) or the whole rig's
    cameras (file number = camera index), the file names give the view map."""
    def numbers(pattern: str) -> list[int]:
        out = []
        for p in views_dir.glob(pattern):
            stem = p.name[: -len(pattern) + 1]
            if not stem.isdigit():
                raise DataError(f"{p}: view files are named NNN{pattern[1:]} (NNN = the view number)")
            out.append(int(stem))
        return sorted(out)

    depth, image = numbers("*_depth.npy"), numbers("*_image.png")
    if depth == list(range(n)) and image == depth:
        return depth
    if depth != image and len(depth) == len(image) == n:
        return list(range(n))  # misnumbered files: reading 000..n-1 names the first missing one
    if depth != image:
        raise DataError(f"{views_dir}: holds {len(depth)} depth maps (*_depth.npy, views {depth}) and {len(image)} "
                        f"images (*_image.png, views {image}), not the same views, but {cameras_file} has {n} "
                        f"cameras")
    if depth and (len(depth) == n or (len(depth) < n and depth[-1] < n)):
        return depth
    raise DataError(f"{views_dir}: holds {len(depth)} depth maps (*_depth.npy) but {cameras_file} has {n} cameras")


# ------------------------------------------------------------------------------------------------ datasets
class SampleSequence(Sequence):
    """A lazy, read-only sequence of samples: ``len()`` and ids are known up front, a sample loads on access.

    Attributes:
        ids: instance ids, in sequence order.
    """

    def __init__(self, ids: list[str], load: Callable[[int], Sample]):
        self.ids = list(ids)
        self._load = load

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"sample index {i} out of range for {n} samples")
        return self._load(i % n)

    def __iter__(self) -> Iterator[Sample]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"SampleSequence({len(self)} samples: {self.ids[:3]}{'...' if len(self) > 3 else ''})"


@dataclass(eq=False)
class CategoryData:
    """The training and test instances of one category.

    Attributes:
        name: category name.
        train: training samples (nominal).
        test: test samples (nominal and anomalous).
    """

    name: str
    train: SampleSequence
    test: SampleSequence


@dataclass(eq=False)
class Dataset:
    """A benchmark: categories, each with lazy train/test sample sequences (same object for every layout).

    Attributes:
        root: the dataset's root folder.
        categories: category names, in benchmark order.
        info: layout-level information (benchmark.json content for mv3dad; reader settings for SiM3D).
    """

    root: Path
    categories: list[str]
    info: dict = field(default_factory=dict)
    _data: dict[str, CategoryData] = field(default_factory=dict, repr=False)

    def __getitem__(self, category: str) -> CategoryData:
        if category not in self._data:
            raise KeyError(f"{self.root}: no category {category!r}; available: {self.categories}")
        return self._data[category]

    def __contains__(self, category: object) -> bool:
        return category in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self.categories)

    def __len__(self) -> int:
        return len(self.categories)


def _visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders of ``folder`` whose name does not start with '.', sorted by name."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _split_sequence(split_dir: Path) -> SampleSequence:
    dirs = _visible_dirs(split_dir)
    return SampleSequence([p.name for p in dirs], lambda i: read_sample(dirs[i]))


def write_benchmark_info(root: str | Path, categories: list[str], **settings) -> Path:
    """Write ``<root>/benchmark.json`` atomically: format, version, categories and the generator ``settings``."""
    for c in categories:
        _check_name(c, "category")
    path = Path(root) / BENCHMARK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {**settings, "format": FORMAT, "version": VERSION, "categories": list(categories)}
    return atomic_write(path, json.dumps(doc, indent=2, default=_json_default))


def read_benchmark_info(root: str | Path) -> dict:
    """``<root>/benchmark.json`` checked for format ``"mv3dad"``, a supported version and a category list."""
    path = Path(root) / BENCHMARK_FILE
    doc = read_json(path, "benchmark info")
    if doc.get("format") != FORMAT:
        raise DataError(f"{path}: format must be {FORMAT!r}, got {doc.get('format')!r}")
    if not isinstance(doc.get("version"), int) or doc["version"] > VERSION:
        raise DataError(f"{path}: version {doc.get('version')!r} is not supported (this reader reads <= {VERSION})")
    cats = doc.get("categories")
    if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
        raise DataError(f"{path}: categories must be a list of names")
    return doc


def mark_incomplete(root: str | Path, **info) -> Path:
    """Write ``<root>/INCOMPLETE`` (creating ``root``): the benchmark is being written."""
    path = Path(root) / INCOMPLETE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps({"pid": os.getpid(), **info}, default=_json_default) + "\n")


def mark_complete(root: str | Path) -> None:
    """Remove ``<root>/INCOMPLETE`` (after ``benchmark.json`` is written)."""
    (Path(root) / INCOMPLETE_FILE).unlink(missing_ok=True)


def clean_temporary(root: str | Path) -> list[Path]:
    """Remove the hidden temporary folders (``.tmp-*``, ``.old-*``) a killed writer left in the split folders of
    ``root``, except those of a writer process still running; returns the removed folders."""
    removed = []
    for split_dir in Path(root).glob("*/*"):
        if split_dir.name not in SPLITS or not split_dir.is_dir():
            continue
        for p in split_dir.iterdir():
            if not (p.name.startswith(".tmp-") or p.name.startswith(".old-")) or not p.is_dir():
                continue
            pid = p.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def open_dataset(root: str | Path, allow_incomplete: bool = False) -> Dataset:
    """Open an mv3dad-layout dataset lazily (samples are read on access).

    ``root`` is either a benchmark root with ``benchmark.json`` (its category list is used), a folder of category
    folders (each holding ``train/`` and/or ``test/``), or a single category folder (its name is the category).
    A benchmark that ``mv3dad synth`` has not finished (``<root>/INCOMPLETE``) is refused, or read with a warning
    when ``allow_incomplete``.

    Raises:
        DataError: naming the folder or file when ``root`` is none of these, or is incomplete.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder is missing")
    marker = root / INCOMPLETE_FILE
    if marker.exists():
        msg = (f"{root}: the benchmark is incomplete ({marker} is present: `mv3dad synth` was interrupted or is "
               f"still running)")
        if not allow_incomplete:
            raise DataError(f"{msg}; rerun the same `mv3dad synth` command to finish it, or pass "
                            f"--allow-incomplete to read it anyway")
        import warnings

        warnings.warn(f"{msg}; reading it anyway", stacklevel=2)
    info: dict = {}
    if (root / BENCHMARK_FILE).exists():
        info = read_benchmark_info(root)
        folders = {c: root / c for c in info["categories"]}
        for c, p in folders.items():
            if not p.is_dir():
                raise DataError(f"{p}: category {c!r} listed in {root / BENCHMARK_FILE} has no folder")
    elif any((root / s).is_dir() for s in SPLITS):
        folders = {root.resolve().name: root}
    else:
        folders = {p.name: p for p in _visible_dirs(root) if any((p / s).is_dir() for s in SPLITS)}
        if not folders:
            raise DataError(f"{root}: not an mv3dad dataset (no {BENCHMARK_FILE}, no category folders with "
                            f"train/ or test/)")
    data = {c: CategoryData(c, _split_sequence(p / "train"), _split_sequence(p / "test")) for c, p in folders.items()}
    return Dataset(root, list(folders), info, data)
