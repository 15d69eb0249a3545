"""Preferred stimuli and the consolidation analysis (synthetic ground truth, published models if present)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import compactcortex as cc
from compactcortex.analysis import (cluster_filters, consolidation, filter_similarity, layer0_filters,
                                    pointwise_input_rms, preferred_stimuli, surrogate_filters, unit_filters)
from compactcortex.plots.analysis import plot_consolidation, plot_filter_clusters, plot_filter_similarity, save_gallery
from compactcortex.analysis.preferred import gaussian_blur, roll_each
from compactcortex.data.procedural import procedural
from compactcortex.models.image_tensor import to_tensor

from helpers import random_model

SMALL = (8, 8, 3, 3, 3)


@pytest.fixture(scope="module")
def pool() -> np.ndarray:
    return procedural(100, seed=0)


def responsive_model(seed: int) -> cc.CompactModel:
    """A small random model whose batchnorm statistics are those of procedural images.

    Every layer's pre-activation is then standardised, so the response varies with the image
    (the plain random models' responses barely do).
    """
    m = random_model(SMALL, seed=seed)
    for bn in m.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.reset_running_stats()
            bn.momentum = None   # cumulative average: one batch sets the statistics exactly
    m.train()
    with torch.no_grad():
        m(to_tensor(procedural(32, seed=9)))
    return m.eval()


@pytest.fixture(scope="module")
def models() -> list[cc.CompactModel]:
    return [responsive_model(s) for s in range(2)]


# --- preferred stimuli ---

def test_synthesised_images_beat_every_pool_image(models, pool):
    # No jitter here: these random readouts are spatially white, so a shifted image meets
    # unrelated weights (the published readouts are smooth, where the default jitter helps).
    res = preferred_stimuli(models, steps=8, lr=8.0, jitter=0, pool=pool, pool_top=2, progress=False)
    assert res.images.shape == (2, 1, 112, 112, 3) and res.images.dtype == np.uint8
    assert res.responses.shape == (2, 1) and res.trace.shape == (8, 2, 1)
    assert res.pool_images.shape == (2, 2, 112, 112, 3) and res.pool_responses.shape == (2, 2)
    scores = cc.PopulationPredictor(models).predict(pool)
    np.testing.assert_allclose(res.pool_best, scores.max(axis=0), rtol=1e-6)
    assert np.all(res.responses[:, 0] > res.pool_best), (res.responses, res.pool_best)
    # what is reported is the engine's response to the uint8 images
    for m, im, r in zip(models, res.images, res.responses):
        np.testing.assert_allclose(cc.Predictor(m).predict(im), r, rtol=1e-6)


def test_pool_init_without_steps_returns_the_top_pool_images(models, pool):
    res = preferred_stimuli(models, n=2, steps=0, init="pool", pool=pool, pool_top=2, progress=False)
    np.testing.assert_array_equal(res.images, res.pool_images)
    np.testing.assert_allclose(res.responses, res.pool_responses, rtol=1e-6)
    assert np.all(res.pool_responses[:, 0] >= res.pool_responses[:, 1])


def test_pixel_range_norm_and_single_model(models, tmp_path):
    res = preferred_stimuli(models[0], n=2, steps=2, lr=50.0, pixel_range=(30, 220), norm=2000.0, progress=False)
    assert res.images.shape == (1, 2, 112, 112, 3)
    assert res.images.min() >= 30 and res.images.max() <= 220
    recentred = res.images.reshape(2, -1).astype(np.float64) - np.tile(cc.DATASET_MEAN, 112 * 112)
    assert np.all(np.linalg.norm(recentred, axis=1) <= 2000.0 + 0.5 * np.sqrt(recentred.shape[1]))
    assert res.pool_best is None and res.pool_images is None
    save_gallery(res, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0


def test_gallery_with_pool_is_written_atomically(models, pool, tmp_path):
    res = preferred_stimuli(models, steps=0, init="pool", pool=pool, progress=False)
    save_gallery(res, tmp_path / "gallery.png", neurons=[1], labels=["a", "b"])
    assert [p.name for p in tmp_path.iterdir()] == ["gallery.png"]


def test_preferred_rejects_bad_arguments(models, pool):
    with pytest.raises(ValueError, match="pool"):
        preferred_stimuli(models, init="pool", progress=False)
    with pytest.raises(ValueError, match="init"):
        preferred_stimuli(models, init="noise", progress=False)
    with pytest.raises(ValueError, match="pool"):
        preferred_stimuli(models, pool=pool[:1], pool_top=2, steps=0, progress=False)


def test_roll_each_matches_torch_roll_per_image():
    x = torch.randn(3, 2, 7, 9)
    shifts = torch.tensor([[1, -2], [0, 0], [-3, 4]])
    expected = torch.stack([torch.roll(x[i], tuple(shifts[i].tolist()), (1, 2)) for i in range(3)])
    torch.testing.assert_close(roll_each(x, shifts), expected, rtol=0, atol=0)


def test_gaussian_blur_keeps_constants_and_totals():
    x = torch.full((1, 3, 20, 20), 7.0)
    torch.testing.assert_close(gaussian_blur(x, 1.0), x)
    y = torch.zeros(1, 3, 20, 20)
    y[0, :, 10, 10] = 1.0
    b = gaussian_blur(y, 1.0)
    torch.testing.assert_close(b.sum(dim=(2, 3)), torch.ones(1, 3))
    assert b[0, 0, 10, 10] < 0.2 and b[0, 0, 10, 11] > 0.05


# --- consolidation: synthetic ground truth ---

def noisy_copies(base: np.ndarray, models: int, noise: float, seed: int) -> list[np.ndarray]:
    """Per model: the base filters permuted, each with a random sign and scale, plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(models):
        f = base[rng.permutation(len(base))] * rng.choice([-1.0, 1.0], len(base))[:, None, None, None]
        f = f * rng.uniform(0.5, 2.0, len(base))[:, None, None, None]
        out.append(f + noise * rng.standard_normal(f.shape) * np.abs(f).mean())
    return out


def test_unit_filters_are_centred_unit_vectors():
    u = unit_filters(np.random.default_rng(0).normal(3.0, 1.0, (6, 5, 5, 3)))
    np.testing.assert_allclose(u.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1)


def test_shared_filters_are_similar_far_above_null():
    base = np.random.default_rng(1).standard_normal((12, 5, 5, 3))
    sim = filter_similarity(noisy_copies(base, 5, noise=0.1, seed=2), null="shuffle")
    assert sim.matched.shape == (5, 5) and np.all(np.isnan(np.diag(sim.matched)))
    assert sim.mean_matched > 0.95
    assert sim.mean_null < 0.6 and sim.fraction_above_null == 1.0


def test_random_filters_are_at_chance():
    rng = np.random.default_rng(3)
    sim = filter_similarity([rng.standard_normal((20, 5, 5, 3)) for _ in range(6)], null="random")
    assert abs(sim.mean_matched - sim.mean_null) < 0.03
    assert sim.mean_matched < 0.5


def test_surrogates_keep_norms_and_their_defining_statistics():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((7, 5, 5, 3))
    for kind in ("shuffle", "phase", "random"):
        s = surrogate_filters(f, kind, rng)
        np.testing.assert_allclose(np.linalg.norm(s.reshape(7, -1), axis=1), np.linalg.norm(f.reshape(7, -1), axis=1))
    s = surrogate_filters(f, "shuffle", rng)
    np.testing.assert_allclose(np.sort(s.reshape(7, 25, 3), axis=1), np.sort(f.reshape(7, 25, 3), axis=1))
    s = surrogate_filters(f, "phase", rng)
    np.testing.assert_allclose(np.abs(np.fft.fft2(s, axes=(1, 2))), np.abs(np.fft.fft2(f, axes=(1, 2))), atol=1e-9)
    with pytest.raises(ValueError, match="null"):
        surrogate_filters(f, "bogus", rng)


def test_clusters_recover_shared_prototypes():
    base = np.random.default_rng(5).standard_normal((4, 5, 5, 3))
    filters = noisy_copies(np.repeat(base, 3, axis=0), 6, noise=0.1, seed=6)
    c = cluster_filters(filters, k=4, seed=0)
    assert c.centroids.shape == (4, 5, 5, 3)
    assert [len(lab) for lab in c.labels] == [12] * 6
    np.testing.assert_array_equal(c.model_counts, [6] * 4)
    np.testing.assert_array_equal(c.filter_counts, [18] * 4)
    assert np.all(c.tightness > 0.95)
    # each centroid matches one prototype up to sign
    cos = np.abs(unit_filters(c.centroids) @ unit_filters(base).T)
    assert sorted(cos.argmax(axis=1)) == [0, 1, 2, 3] and cos.max(axis=1).min() > 0.99


def model_with_pointwise(w: np.ndarray) -> cc.CompactModel:
    m = random_model((w.shape[1], w.shape[0], 3, 3, 3), seed=0)
    with torch.no_grad():
        m.layer1_conv_point.weight.copy_(torch.from_numpy(w).float()[:, :, None, None])
    return m


def test_two_inputs_per_output_give_participation_ratio_two():
    n_in, n_out = 10, 6
    rng = np.random.default_rng(7)
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        w[o, rng.choice(n_in, 2, replace=False)] = 0.7 * rng.choice([-1, 1], 2)
    r = consolidation(model_with_pointwise(w), layer=1, top_k=2)
    np.testing.assert_allclose(r["participation_ratio"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(r["top_k_fraction"], 1.0, rtol=1e-6)
    assert r["consolidation_index"] == pytest.approx(0.2, rel=1e-6)
    assert (r["n_in"], r["n_out"], r["weighted"]) == (n_in, n_out, False)
    assert r["depthwise_dc_fraction"].shape == (n_in,) and np.all(r["depthwise_centre_fraction"] <= 1)


def test_input_scale_and_rank_of_identity():
    r = consolidation(model_with_pointwise(np.eye(5)), layer=1)
    np.testing.assert_allclose(r["participation_ratio"], 1.0)
    assert r["effective_rank"] == pytest.approx(5.0)
    # an input carrying no signal leaves the other one: equal weights on 2 inputs -> 1 effective input
    w = np.array([[1.0, 1.0, 0.0]])
    r = consolidation(model_with_pointwise(w), layer=1, input_rms=np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(r["participation_ratio"], 1.0)
    assert r["weighted"]


def test_pointwise_input_rms_is_positive_per_channel(models):
    rms = pointwise_input_rms(models[0], procedural(4, seed=3), layer=2)
    assert rms.shape == (SMALL[1],) and np.all(np.isfinite(rms)) and np.all(rms >= 0) and rms.max() > 0


def test_plots_are_written(models, tmp_path):
    plot_filter_similarity(models, tmp_path / "s.png", similarities=[filter_similarity(models, "random", draws=1)])
    plot_filter_clusters(models, tmp_path / "c.png", k=3)
    plot_consolidation(models, tmp_path / "p.png", layers=(2,), images=procedural(2, seed=4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "p.png", "s.png"]


# --- published models ---

def test_published_models_give_finite_outputs(v4):
    folder = v4 / "compact_models" / "torch"
    models = [cc.load_published(folder / f"compact_model_190923_neuron{k}.pt") for k in range(4)]
    filters = layer0_filters(models)
    assert all(f.shape == (m.nums_filters[0], 5, 5, 3) for f, m in zip(filters, models))
    sim = filter_similarity(models)
    off = ~np.eye(4, dtype=bool)
    assert np.all(np.isfinite(sim.matched[off])) and np.all(np.isfinite(sim.null[off]))
    c = cluster_filters(models, k=8)
    assert c.centroids.shape == (8, 5, 5, 3) and c.model_counts.max() <= 4
    for m in models:
        for layer in (1, 2):
            r = consolidation(m, layer)
            assert r["participation_ratio"].shape == (m.nums_filters[layer],)
            assert np.all(np.isfinite(r["participation_ratio"])) and 0 < r["consolidation_index"] <= 1
