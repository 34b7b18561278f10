"""The .vdb writer, proven with OpenVDB's own reader (Debian python3-openvdb under the system Python)."""

import json
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mv3dad.data.scene import DataError
from mv3dad.export import load_vdb, read_vdb, write_vdb
from mv3dad.geometry.grid import VoxelGrid

SYSTEM_PYTHON = Path("/usr/bin/python3")

# Runs under the system Python: dumps every active value of a grid (tiles expanded) and its transform.
DUMP = textwrap.dedent("""
    import json, sys
    import numpy as np
    try:
        import pyopenvdb as vdb
    except ImportError:
        import openvdb as vdb
    path, name, out = sys.argv[1:4]
    g = vdb.read(path, name)
    ijk, vals = [], []
    for it in g.citerOnValues():
        lo, hi = it["min"], it["max"]
        for i in range(lo[0], hi[0] + 1):
            for j in range(lo[1], hi[1] + 1):
                for k in range(lo[2], hi[2] + 1):
                    ijk.append((i, j, k))
                    vals.append(it["value"])
    t = g.transform
    np.savez(out, ijk=np.array(ijk, dtype=np.int64).reshape(-1, 3), values=np.array(vals, dtype=np.float64),
             probe=np.array([t.indexToWorld(p) for p in [(0, 0, 0), (1, 2, 3), (-7, 11, 4100)]]))
    meta = {k: g[k] for k in g if isinstance(g[k], (str, int, float, bool))}
    json.dump({"name": g.name, "voxel_size": list(t.voxelSize()), "background": g.background,
               "active": g.activeVoxelCount(), "class": str(g.gridClass), "meta": meta,
               "library": list(vdb.LIBRARY_VERSION)}, open(out + ".json", "w"))
""")

# Runs under the system Python: OpenVDB writes a grid (default compression, blosc where available).
WRITE = textwrap.dedent("""
    import sys
    try:
        import pyopenvdb as vdb
    except ImportError:
        import openvdb as vdb
    g = vdb.FloatGrid(0.0)
    g.name = "density"
    acc = g.getAccessor()
    for i, j, k, v in [(0, 0, 0, 0.5), (-1, -2, -3, 0.25), (5000, 3, -4097, 1.5), (7, 7, 7, 0.0)]:
        acc.setValueOn((i, j, k), v)
    g.fill((16, 16, 16), (23, 23, 23), 2.0, True)  # an 8^3 active tile
    g.transform = vdb.createLinearTransform([[0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0.5, 0], [1, -2, 3, 1]])
    vdb.write(sys.argv[1], grids=[g])
""")


def _has_openvdb() -> str | None:
    if not SYSTEM_PYTHON.exists():
        return f"{SYSTEM_PYTHON} not found"
    r = subprocess.run([str(SYSTEM_PYTHON), "-c", "try:\n import pyopenvdb\nexcept ImportError:\n import openvdb"],
                       capture_output=True, text=True)
    return None if r.returncode == 0 else f"{SYSTEM_PYTHON} lacks pyopenvdb/openvdb (apt install python3-openvdb)"


_SKIP = _has_openvdb()
needs_openvdb = pytest.mark.skipif(_SKIP is not None, reason=_SKIP or "")


def _run(script: str, *args) -> None:
    r = subprocess.run([str(SYSTEM_PYTHON), "-c", script, *map(str, args)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def _openvdb_dump(path: Path, name: str = "anomaly"):
    out = path.with_suffix(".dump.npz")
    _run(DUMP, path, name, out)
    with np.load(out, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(Path(str(out) + ".json").read_text())


def _sorted(ijk, values):
    order = np.lexsort(ijk.T[::-1])
    return ijk[order], values[order]


@needs_openvdb
@pytest.mark.parametrize("zip_data", [True, False])
@pytest.mark.parametrize("offset", [(0, 0, 0), (-4100, -3, 4090)])
def test_openvdb_reads_back_exactly(tmp_path, make_volume, zip_data, offset):
    # several leaves, internal nodes and (with the offset) root children on both sides of 0
    da = make_volume(shape=(40, 19, 150), origin=(-301.25, 17.5, 2.0), voxel_size=0.75, nan_frac=0.6, seed=4)
    path = write_vdb(da, tmp_path / "a.vdb", zip_data=zip_data, index_offset=offset)
    ref, info = _openvdb_dump(path)

    observed = ~np.isnan(da.values)
    want_ijk, want_val = _sorted(np.argwhere(observed) + np.array(offset), da.values[observed])
    got_ijk, got_val = _sorted(ref["ijk"], ref["values"])  # float64 from OpenVDB's float32 voxels
    assert info["active"] == observed.sum() == len(got_ijk)
    np.testing.assert_array_equal(got_ijk, want_ijk)
    np.testing.assert_array_equal(got_val, want_val.astype(np.float64))  # bit-exact, real zeros included
    assert (got_val == 0).any()

    assert info["name"] == "anomaly" and info["background"] == 0.0
    assert info["voxel_size"] == [0.75] * 3
    assert info["meta"]["units"] == "mm" and info["meta"]["file_voxel_count"] == observed.sum()
    # index (i, j, k) -> origin + voxel_size * ((i, j, k) - offset): the centre of the volume's voxel
    grid = VoxelGrid.from_dataarray(da)
    probes = np.array([(0, 0, 0), (1, 2, 3), (-7, 11, 4100)])
    np.testing.assert_allclose(ref["probe"], grid.index_to_world(probes - np.array(offset)), rtol=0, atol=1e-9)
    first = np.argwhere(observed)[0]
    np.testing.assert_allclose(grid.index_to_world(first[None])[0],
                               [da[d].values[first[n]] for n, d in enumerate("xyz")], rtol=0, atol=1e-12)


@needs_openvdb
def test_our_reader_reads_openvdb_files(tmp_path):
    path = tmp_path / "ref.vdb"
    _run(WRITE, path)
    g = read_vdb(path)
    want = {(0, 0, 0): 0.5, (-1, -2, -3): 0.25, (5000, 3, -4097): 1.5, (7, 7, 7): 0.0}
    want.update({(i, j, k): 2.0 for i in range(16, 24) for j in range(16, 24) for k in range(16, 24)})
    assert g.name == "density" and g.voxel_size == 0.5 and g.background == 0.0
    np.testing.assert_array_equal(g.translation, [1, -2, 3])
    assert len(g.ijk) == len(want)
    assert {tuple(map(int, c)): float(v) for c, v in zip(g.ijk, g.values)} == want


@pytest.mark.parametrize("zip_data", [True, False])
def test_own_reader_round_trip(tmp_path, make_volume, zip_data):
    da = make_volume(shape=(20, 9, 140), nan_frac=0.5, seed=7)
    da[:3] = np.nan  # the read-back box starts at the first observed x slice
    write_vdb(da, tmp_path / "a.vdb", zip_data=zip_data, index_offset=(-9, 4096, 0))
    back = load_vdb(tmp_path / "a.vdb")
    obs = np.argwhere(~np.isnan(da.values))
    lo, hi = obs.min(0), obs.max(0) + 1
    crop = da.values[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    np.testing.assert_array_equal(back.values, crop)
    np.testing.assert_allclose(back.x.values, da.x.values[lo[0]:hi[0]], rtol=0, atol=1e-9)
    np.testing.assert_allclose(back.z.values, da.z.values[lo[2]:hi[2]], rtol=0, atol=1e-9)


def test_sparse_file_is_small_and_bad_files_are_refused(tmp_path, make_volume):
    da = make_volume(shape=(200, 200, 200), nan_frac=1.0)
    da[:] = np.nan
    da[10:14, 100, 3] = 0.5  # 4 observed voxels in an 8 M voxel grid
    size = write_vdb(da, tmp_path / "s.vdb").stat().st_size
    assert size < 20_000, size
    assert len(read_vdb(tmp_path / "s.vdb").ijk) == 4
    (tmp_path / "bad.vdb").write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="bad.vdb: not an OpenVDB file"):
        read_vdb(tmp_path / "bad.vdb")
    (tmp_path / "cut.vdb").write_bytes((tmp_path / "s.vdb").read_bytes()[:300])
    with pytest.raises(DataError, match="cut.vdb: truncated"):
        read_vdb(tmp_path / "cut.vdb")
    with pytest.raises(DataError, match="no grid named 'x'"):
        read_vdb(tmp_path / "s.vdb", grid_name="x")
