"""PopulationPredictor against the single-model Predictor and the float64 reference."""
import numpy as np
import pytest

import compactcortex as cc
from helpers import random_model, recentred, torch_reference

FILTERS = [(7, 5, 3, 2, 1), (1, 1, 1, 1, 1), (16, 48, 3, 7, 3), (48, 60, 3, 3, 3), (3, 100, 2, 16, 7)]


@pytest.fixture(scope="module")
def models():
    return [random_model(f, seed=i) for i, f in enumerate(FILTERS)]


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 7, 20])
@pytest.mark.parametrize("layer0", ["winograd", "direct"])
def test_population_equals_single_model_predictors(models, threads, batch, layer0):
    """Bit for bit: the input tiles a population shares are the ones each model would compute."""
    x = recentred(batch, seed=batch)
    got = cc.PopulationPredictor(models, threads=threads, layer0=layer0).predict(x)
    assert got.shape == (batch, len(models)) and got.dtype == np.float32
    for m, model in enumerate(models):
        np.testing.assert_array_equal(got[:, m], cc.Predictor(model, threads=1, layer0=layer0).predict(x))
        ref = torch_reference(model, x)
        assert np.abs(got[:, m] - ref).max() <= 1e-4 * np.abs(ref).max()


def test_population_inputs_and_errors(models, tmp_path):
    plan_path = tmp_path / "p.plan"
    cc.compile(models[0]).save(plan_path)
    pop = cc.PopulationPredictor([plan_path, models[1]], threads=2)
    raw = np.random.default_rng(1).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    out = np.empty((3, 2), np.float32)
    assert pop.predict(raw, out=out) is out
    np.testing.assert_array_equal(out[:, 0], cc.Predictor(plan_path, threads=1).predict(raw))
    with pytest.raises(ValueError, match="out must be"):
        pop.predict(raw, out=np.empty((3, 3), np.float32))
    x = recentred(4)
    x[2, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="image 2 contains NaN"):
        pop.predict(x)
    x = recentred(13)  # the first bad image of a later group of images, not of the first
    x[[9, 11], 5, 7, 1] = [np.inf, np.nan]
    with pytest.raises(ValueError, match="image 9 contains NaN"):
        pop.predict(x)
    with pytest.raises(ValueError, match="at least one"):
        cc.PopulationPredictor([])
    with pytest.raises(ValueError, match="shape"):
        pop.predict(np.zeros((2, 112, 112), np.float32))


def test_published_population(v4):
    models = cc.load_published_session(v4, 190923)
    g = np.load(v4 / "golden" / "golden_190923.npz")
    got = cc.PopulationPredictor(models, threads=2).predict(g["images_uint8"])
    scale = np.abs(g["outputs"]).max(1)
    assert (np.abs(got.T - g["outputs"]).max(1) <= 1e-4 * scale).all()
