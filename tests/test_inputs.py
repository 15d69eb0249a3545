"""Input handling of Predictor.predict: layouts, dtypes, zero-copy views, and clear errors."""
import numpy as np
import pytest
import torch

import compactcortex as cc
from helpers import random_model, recentred

MEAN = np.asarray(cc.DATASET_MEAN, np.float32)


@pytest.fixture(scope="module")
def pred():
    return cc.Predictor(random_model((7, 5, 3, 3, 2), seed=9), threads=2)


def test_layouts_and_dtypes_agree(pred):
    raw = np.random.default_rng(0).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    x = raw.astype(np.float32) - MEAN
    base = pred.predict(x)
    np.testing.assert_allclose(pred.predict(raw), base, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(pred.predict(x.astype(np.float64)), base, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(pred.predict(np.ascontiguousarray(x.transpose(0, 3, 1, 2))), base)
    np.testing.assert_array_equal(pred.predict(torch.from_numpy(x)), base)
    np.testing.assert_array_equal(pred.predict(torch.from_numpy(x).permute(0, 3, 1, 2)), base)
    np.testing.assert_array_equal(pred.predict(torch.from_numpy(x).requires_grad_()), base)


def test_strided_views_are_read_in_place(pred):
    big = recentred(10, seed=4)
    view = big[::2]  # non-contiguous
    assert not view.flags.c_contiguous
    np.testing.assert_array_equal(pred.predict(view), pred.predict(np.ascontiguousarray(view)))
    flipped = big[:, ::-1]  # negative strides
    np.testing.assert_array_equal(pred.predict(flipped), pred.predict(np.ascontiguousarray(flipped)))
    ro = np.ascontiguousarray(big)
    ro.setflags(write=False)
    pred.predict(ro)


def test_out_parameter(pred):
    x = recentred(4)
    out = np.empty(4, np.float32)
    assert pred.predict(x, out=out) is out
    np.testing.assert_array_equal(out, pred.predict(x))
    with pytest.raises(ValueError, match="out must be"):
        pred.predict(x, out=np.empty(3, np.float32))


@pytest.mark.parametrize("shape", [(2, 112, 112), (2, 111, 112, 3), (2, 112, 112, 4), (112, 112, 3), (2, 3, 112, 111)])
def test_wrong_shape(pred, shape):
    with pytest.raises(ValueError, match="shape"):
        pred.predict(np.zeros(shape, np.float32))


def test_empty_batch(pred):
    with pytest.raises(ValueError, match="empty batch"):
        pred.predict(np.zeros((0, 112, 112, 3), np.float32))


@pytest.mark.parametrize("dtype", [np.int32, np.float16, np.int64, bool])
def test_wrong_dtype(pred, dtype):
    with pytest.raises(TypeError, match="dtype"):
        pred.predict(np.zeros((1, 112, 112, 3), dtype))


def test_not_an_array(pred):
    with pytest.raises(TypeError, match="numpy array or torch"):
        pred.predict([[0.0]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_pixels_name_the_image(pred, bad, dtype):
    x = recentred(5).astype(dtype)
    x[3, 100, 7, 2] = bad
    with pytest.raises(ValueError, match="image 3 contains NaN or infinity"):
        pred.predict(x)
    with pytest.raises(ValueError, match="image 0 contains NaN"):
        pred.predict(x[3:4])  # single image: the row-band path


def test_constructor_errors():
    model = random_model((2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="threads"):
        cc.Predictor(model, threads=0)
    with pytest.raises(ValueError, match="unknown isa"):
        cc.Predictor(model, isa="neon9")
    with pytest.raises(ValueError, match="nums_filters"):
        cc.CompactModel((3, 3, 0, 3, 3))
    with pytest.raises(ValueError, match=r"shape \(N, 3, 112, 112\)"):
        model(torch.zeros(1, 112, 112, 3))
