import numpy as np
import pytest
from PIL import Image

from mv3dad.data.corpus import CorpusError, find_depth_files, read_depth, scan_corpus


def _write_layouts(root):
    rng = np.random.default_rng(0)
    d = rng.uniform(100, 200, (20, 24)).astype(np.float32)
    # mv3dad layout
    v = root / "mv3dad" / "vase" / "train" / "000" / "views"
    v.mkdir(parents=True)
    np.save(v / "00_depth.npy", d)
    Image.fromarray((rng.random((20, 24)) * 255).astype(np.uint8)).save(v / "00_image.png")
    # SiM3D real (inf = no measurement) and synth (max value = background)
    r = root / "sim3d" / "vase" / "vase_real" / "depth"
    r.mkdir(parents=True)
    dr = d.copy()
    dr[0] = np.inf
    np.save(r / "view_00.npy", dr)
    s = root / "sim3d" / "vase" / "vase_synth" / "DEPTH"
    s.mkdir(parents=True)
    ds = d.copy()
    ds[:2] = 1e4
    import OpenEXR

    OpenEXR.File({"type": OpenEXR.scanlineimage}, {"Z": ds}).write(str(s / "v00_depth.exr"))
    # MVTec 3D-AD: organised xyz tiff, z channel; rgb and gt PNGs beside it
    import tifffile

    m = root / "mvtec" / "bagel" / "train" / "good"
    (m / "xyz").mkdir(parents=True)
    (m / "rgb").mkdir()
    xyz = np.stack([rng.random((20, 24)), rng.random((20, 24)), d / 1000], -1).astype(np.float32)
    xyz[5, 5] = 0
    tifffile.imwrite(m / "xyz" / "000.tiff", xyz, photometric="minisblack")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(m / "rgb" / "000.png")
    # Eyecandies-style 16-bit PNG depth with its normalisation file
    e = root / "eyecandies" / "CandyCane" / "train" / "data"
    e.mkdir(parents=True)
    Image.fromarray((rng.random((20, 24)) * 60000 + 100).astype(np.uint16)).save(e / "000_depth.png")
    (e / "000_info_depth.yaml").write_text("normalization:\n  min: 0.5\n  max: 1.5\n")
    return root


def test_layouts_found_and_read(tmp_path):
    root = _write_layouts(tmp_path)
    files = find_depth_files([root])
    names = sorted(f.name for f in files)
    assert names == ["000.tiff", "000_depth.png", "00_depth.npy", "v00_depth.exr", "view_00.npy"]
    for f in files:
        d = read_depth(f)
        assert d.ndim == 2 and d.dtype == np.float32 and np.isfinite(d).all() and (d >= 0).all()
    assert (read_depth(root / "sim3d/vase/vase_real/depth/view_00.npy")[0] == 0).all()
    synth = read_depth(root / "sim3d/vase/vase_synth/DEPTH/v00_depth.exr")
    assert (synth[:2] == 0).all() and (synth[2:] > 0).all()
    z = read_depth(root / "mvtec/bagel/train/good/xyz/000.tiff")
    assert z[5, 5] == 0 and 0.09 < z[z > 0].min() and z.max() < 0.21
    eye = read_depth(root / "eyecandies/CandyCane/train/data/000_depth.png")
    assert 0.5 <= eye[eye > 0].min() and eye.max() <= 1.5


def test_bad_files_skipped_counted_and_limited(tmp_path):
    root = _write_layouts(tmp_path)
    bad = root / "mv3dad" / "vase" / "train" / "000" / "views"
    (bad / "01_depth.npy").write_bytes(b"not a numpy file")
    np.save(bad / "02_depth.npy", np.zeros((4, 4), np.float32))  # no valid depth
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(bad / "03_depth.png")  # 8-bit: not depth
    with pytest.warns(UserWarning, match="skipped"):
        corpus = scan_corpus([root], max_bad_fraction=0.5)
    assert len(corpus) == 5 and len(corpus.bad) == 3
    assert any("01_depth.npy" in r for _, r in corpus.bad) and any("8-bit" in r or "16-bit" in r for _, r in corpus.bad)
    with pytest.raises(CorpusError, match="3 of 8"), pytest.warns(UserWarning):
        scan_corpus([root], max_bad_fraction=0.2)


def test_empty_corpus_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="empty corpus"):
        scan_corpus([tmp_path / "empty"])
    with pytest.raises(CorpusError, match="no such file"):
        scan_corpus([tmp_path / "nope"])
