"""Pruning: the C++ statistics kernel, the selection rule, filter surgery, the procedures."""
import numpy as np
import pytest
import torch

import compactcortex as cc
from compactcortex import _engine as E
from compactcortex.compress import (channel_stats, channel_stats_torch, contribution_gram, prune_greedy,
                                    prune_layer, prune_paper, remove_filters, select_filters)
from compactcortex.models.image_tensor import to_tensor
from helpers import random_model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)


@pytest.mark.parametrize("isa", E.available_isas())
@pytest.mark.parametrize("n", [1, 3, 7, 100])
@pytest.mark.parametrize("m", [1, 5, 56])
def test_gram_kernel_matches_numpy(isa, n, m):
    width = E.vector_width(isa)
    ldg = (n + width - 1) // width * width
    a = np.zeros((m, ldg), np.float32)
    a[:, :n] = np.random.default_rng(n + m).normal(size=(m, n))
    G = np.zeros((n, ldg), np.float32)
    sums = np.zeros(ldg, np.float32)
    E._testing.kernel_gram_row(isa, a.ravel(), m, ldg, n, G.ravel(), ldg, sums)
    expect = a[:, :n].T @ a[:, :n]
    np.testing.assert_allclose(np.triu(G[:, :n]), np.triu(expect), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sums[:n], a[:, :n].sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filters", [(7, 5, 3, 2, 1), (16, 12, 8, 6, 5), (1, 1, 1, 1, 1)], ids=str)
def test_engine_stats_match_torch(filters, images):
    model = random_model(filters, seed=sum(filters))
    got = channel_stats(model, images, threads=2)
    ref = channel_stats_torch(model.double(), images)
    for k in ref:
        assert got[k].count == ref[k].count
        scale = max(np.abs(ref[k].cov).max(), 1e-12)
        assert np.abs(got[k].cov - ref[k].cov).max() <= 1e-4 * scale, k
        assert np.abs(got[k].mean - ref[k].mean).max() <= 1e-4 * max(np.abs(ref[k].mean).max(), 1e-12), k


def test_select_filters_rule():
    g = np.diag([5.0, 3.0, 1.0, 1.0])  # independent contributions: variance shares 0.5, 0.3, 0.1, 0.1
    keep, explained = select_filters(g, 0.8)
    assert keep.tolist() == [0, 1] and explained == pytest.approx(0.8)
    keep, _ = select_filters(g, 0.85)
    assert keep.tolist() == [0, 1, 2]
    # two strongly anti-correlated small filters: dropping both costs little, so they go together
    g = np.array([[4.0, 0, 0], [0, 1.0, -0.99], [0, -0.99, 1.0]])
    keep, explained = select_filters(g, 0.9)
    assert keep.tolist() == [0] and explained > 0.9
    with pytest.raises(ValueError):
        select_filters(g, 0.0)


def test_surgery_is_exact(images):
    model = random_model((6, 5, 4, 3, 3), seed=1)
    x = to_tensor(images[:4])
    for layer in range(5):
        n = model.nums_filters[layer]
        drop = n // 2
        masked = random_model((6, 5, 4, 3, 3), seed=1)
        with torch.no_grad():  # the reference: silence filter `drop` where it is read
            if layer < 4:
                masked.get_submodule(f"layer{layer + 1}_conv_point").weight[:, drop] = 0
            else:
                masked.readout.weight.view(28, 28, -1)[..., drop] = 0
            smaller = remove_filters(model, layer, [k for k in range(n) if k != drop])
            assert smaller.nums_filters[layer] == n - 1
            torch.testing.assert_close(smaller(x), masked(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="distinct filter indices"):
        remove_filters(model, 1, [0, 0])
    with pytest.raises(ValueError, match="distinct filter indices"):
        remove_filters(model, 1, [])


@pytest.mark.parametrize("layer", [0, 2, 4])
def test_pruned_layer_reconstructs_threshold(layer, images):
    """Dropped filters replaced by their means: the reader's output keeps >= threshold of its variance."""
    model = random_model((12, 10, 8, 6, 6), seed=3).double()
    threshold = 0.85
    smaller, explained = prune_layer(model, layer, images, threshold)
    assert explained >= threshold and smaller.nums_filters[layer] < model.nums_filters[layer]
    # measure it in torch on the same images: pre-activation output of the reader, full vs kept-only
    stats = channel_stats_torch(model, images)
    name = "readout" if layer == 4 else f"layer{layer + 1}"
    plan = cc.compile(model, drop_dead_channels=False)
    g = contribution_gram(stats[name], None if layer == 4 else np.asarray(plan.pw[layer], np.float64))
    order = np.argsort(-np.diag(g))
    k = smaller.nums_filters[layer]
    dropped = order[k:]
    assert 1 - g[np.ix_(dropped, dropped)].sum() / g.sum() == pytest.approx(explained, rel=1e-6)
    if k > 1:  # and one filter fewer would not have been enough
        d2 = order[k - 1:]
        assert 1 - g[np.ix_(d2, d2)].sum() / g.sum() < threshold


def test_prune_paper_and_greedy(images):
    model = random_model((12, 10, 8, 6, 6), seed=5)
    x = to_tensor(images)
    with torch.no_grad():
        target = model(x).numpy()

    def accuracy(m):
        with torch.no_grad():
            return float(np.corrcoef(m(x).numpy(), target)[0, 1])

    small, hist = prune_paper(model, images, threshold=0.9, evaluate=accuracy)
    assert [h.layer for h in hist] == [-1, 4, 3, 2, 1, 0]
    assert all(b.num_parameters <= a.num_parameters for a, b in zip(hist, hist[1:]))
    assert small.num_parameters() < model.num_parameters()
    assert hist[0].accuracy == pytest.approx(1.0)
    greedy, ghist = prune_greedy(model, images, accuracy, tolerance=0.02)
    assert all(1.0 - h.accuracy < 0.02 for h in ghist)
    # one filter removed per accepted step, and the history ends at the model returned
    assert len(ghist) > 1, "this model has filters that cost < 2% of accuracy to remove"
    for before, after in zip(ghist, ghist[1:]):
        diff = np.subtract(before.nums_filters, after.nums_filters)
        assert sorted(diff) == [0, 0, 0, 0, 1] and diff[after.layer] == 1
        assert after.num_parameters < before.num_parameters
    assert tuple(greedy.nums_filters) == tuple(ghist[-1].nums_filters)
    assert accuracy(greedy) == pytest.approx(ghist[-1].accuracy, abs=1e-12)
