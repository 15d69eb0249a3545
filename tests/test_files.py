"""Own file formats (CompactModel and Plan), atomic writes, and loading without torch."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import compactcortex as cc
from helpers import random_model, recentred


def test_model_roundtrip(tmp_path):
    model = random_model((5, 4, 3, 3, 2), seed=1)
    model.provenance = {"note": "test"}
    model.save(tmp_path / "m.safetensors")
    back = cc.CompactModel.load(tmp_path / "m.safetensors")
    assert back.nums_filters == model.nums_filters and back.bn_eps == model.bn_eps
    assert back.provenance == {"note": "test"}
    x = torch.from_numpy(recentred(2)).permute(0, 3, 1, 2)
    with torch.no_grad():
        assert torch.equal(back(x), model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"], "no temporary files left"


def test_plan_roundtrip(tmp_path):
    plan = cc.compile(random_model((5, 4, 3, 3, 2), seed=1))
    plan.save(tmp_path / "p.plan")
    back = cc.Plan.load(tmp_path / "p.plan")
    assert back.nums_filters == plan.nums_filters
    for k, v in plan.arrays().items():
        np.testing.assert_array_equal(back.arrays()[k], v)
    x = recentred(3)
    np.testing.assert_array_equal(cc.Predictor(back).predict(x), cc.Predictor(plan).predict(x))
    np.testing.assert_array_equal(cc.Predictor(str(tmp_path / "p.plan")).predict(x), cc.Predictor(plan).predict(x))


def test_bad_files(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        cc.Plan.load(tmp_path / "nope.plan")
    (tmp_path / "junk.plan").write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="junk.plan"):
        cc.Plan.load(tmp_path / "junk.plan")
    model = random_model((3, 3, 3, 3, 3))
    model.save(tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match="expected a compactcortex.Plan/1 file"):
        cc.Plan.load(tmp_path / "m.safetensors")
    cc.compile(model).save(tmp_path / "p.plan")
    with pytest.raises(ValueError, match="expected a compactcortex.CompactModel/1"):
        cc.CompactModel.load(tmp_path / "p.plan")
    truncated = tmp_path / "t.plan"
    truncated.write_bytes((tmp_path / "p.plan").read_bytes()[:-50])
    with pytest.raises(ValueError, match="t.plan"):
        cc.Plan.load(truncated)


@pytest.mark.parametrize("field, value", [("readout_bias", "nan"), ("readout_bias", "inf"),
                                          ("mean", "[NaN, 1.0, 2.0]"), ("mean", "[1.0, Infinity, 2.0]")])
def test_plan_with_non_finite_metadata_is_refused(tmp_path, field, value):
    """A file whose bias or mean is NaN/inf would predict garbage: it is refused, naming the file."""
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    good = tmp_path / "p.plan"
    cc.compile(random_model((3, 3, 3, 3, 3))).save(good)
    with safe_open(str(good), framework="numpy") as f:
        meta = dict(f.metadata())
    meta[field] = value
    bad = tmp_path / "bad.plan"
    save_file(load_file(str(good)), str(bad), metadata=meta)
    with pytest.raises(ValueError, match=rf"bad.plan: .*{field}"):
        cc.Plan.load(bad)


def test_plan_of_another_architecture(tmp_path):
    from safetensors.numpy import load_file, save_file
    from safetensors import safe_open

    cc.compile(random_model((3, 3, 3, 3, 3))).save(tmp_path / "p.plan")
    with safe_open(str(tmp_path / "p.plan"), framework="numpy") as f:
        meta = f.metadata()
    tensors = load_file(str(tmp_path / "p.plan"))
    tensors["pw2"] = np.zeros((4, 3), np.float32)  # layer 2 claims 4 filters
    save_file(tensors, str(tmp_path / "other.plan"), metadata=meta)
    with pytest.raises(ValueError, match=r"other\.plan.*'pw2' has shape \(4, 3\)"):
        cc.Plan.load(tmp_path / "other.plan")


def test_plan_is_immutable():
    plan = cc.compile(random_model((3, 3, 3, 3, 3)))
    with pytest.raises(ValueError):
        plan.w0[0, 0, 0, 0] = 1.0


def test_load_plan_and_predict_without_torch(tmp_path):
    cc.compile(random_model((4, 3, 3, 3, 2))).save(tmp_path / "p.plan")
    code = (
        "import sys, numpy as np, compactcortex as cc\n"
        f"p = cc.Predictor(cc.Plan.load({str(tmp_path / 'p.plan')!r}), threads=1)\n"
        "y = p.predict(np.zeros((2, 112, 112, 3), np.uint8))\n"
        "assert y.shape == (2,) and np.isfinite(y).all()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_saved_files_get_ordinary_permissions(tmp_path):
    import os

    umask = os.umask(0)
    os.umask(umask)
    cc.compile(random_model((3, 3, 3, 3, 3))).save(tmp_path / "p.plan")
    assert (tmp_path / "p.plan").stat().st_mode & 0o777 == 0o666 & ~umask
