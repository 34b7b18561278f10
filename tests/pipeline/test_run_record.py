"""RunRecord: the run.json round trip, errors that name the file, mapping-style access."""

import json

import pytest

from mv3dad.errors import DataError
from mv3dad.pipeline.fit import read_run as read_run_from_fit
from mv3dad.pipeline.run import RUN_FILE, RUN_FORMAT, RunRecord, read_run


def _record(**over) -> RunRecord:
    d = dict(format=RUN_FORMAT, method="knn", data="/data", categories=["vase"], setup="real2real", views=[0, 3],
             encoders_config={"image_size": 224}, encoders={"image": {"arch": "a"}, "depth": {"arch": "b"}},
             grids={"vase": {"origin": [0.0, 0.0, 0.0], "voxel_size": 2.0, "shape": [4, 4, 4]}},
             cameras={"vase": [{"K": 1}, {"K": 2}]}, fit={"epochs": 3}, coreset=0.1)
    d.update(over)
    return RunRecord(**d)


def test_round_trip(tmp_path):
    rec = _record()
    path = rec.write(tmp_path)
    assert path == tmp_path / RUN_FILE
    assert json.loads(path.read_text()) == rec.to_dict()
    back = read_run(tmp_path)
    assert back == rec and isinstance(back, RunRecord)
    assert read_run_from_fit is read_run  # the old import path keeps working


def test_mapping_access():
    rec = _record()
    assert rec["method"] == "knn" and rec["cameras"]["vase"][1] == {"K": 2}
    assert rec.get("coreset") == 0.1 and rec.get("nope", 5) == 5
    with pytest.raises(KeyError):
        rec["nope"]


def test_missing_keys_name_the_file(tmp_path):
    d = _record().to_dict()
    del d["grids"], d["cameras"]
    (tmp_path / RUN_FILE).write_text(json.dumps(d))
    with pytest.raises(DataError, match=r"run\.json.*grids, cameras"):
        read_run(tmp_path)


def test_coreset_is_optional_and_unknown_keys_ignored():
    d = _record().to_dict()
    del d["coreset"]
    d["extra"] = 1
    assert RunRecord.from_dict(d).coreset is None


def test_wrong_format_and_bad_json(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps(_record(format="other/9").to_dict()))
    with pytest.raises(DataError, match="other/9"):
        read_run(tmp_path)
    (tmp_path / RUN_FILE).write_text("{not json")
    with pytest.raises(DataError, match=r"run\.json"):
        read_run(tmp_path)


def test_not_a_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="mv3dad fit"):
        read_run(tmp_path)
