"""The plots draw what they are given: panels, drawn values and labels, read back from the figures."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compactcortex.analysis import cluster_filters, consolidation, filter_similarity
from compactcortex.analysis.preferred import PreferredStimuli
from compactcortex.plots.analysis import plot_consolidation, plot_filter_clusters, plot_filter_similarity, save_gallery
from compactcortex.plots.reports import (plot_accuracy_vs_params, plot_closed_loop, plot_layer0_filters,
                                         plot_predicted_vs_measured, plot_r_vs_params)

from helpers import random_model


def assert_png(path):
    """A readable PNG that is not a blank canvas."""
    im = np.asarray(Image.open(path).convert("RGB"), np.float64)
    assert im.ndim == 3 and im.shape[0] > 50 and im.shape[1] > 50
    assert im.std() > 1.0


def offsets(ax, i=0):
    """(x, y) of the i-th scatter of an axes."""
    return np.asarray(ax.collections[i].get_offsets())


@pytest.fixture(scope="module")
def models():
    return [random_model((6, 5, 3, 3, 3), seed=s) for s in range(3)]


def test_accuracy_vs_params_draws_one_line_per_neuron(tmp_path):
    rows = [dict(neuron=k, teacher_params=1e6, student_params=1e5 / (k + 1), compact_params=1e4 / (k + 1),
                 r2er_teacher=0.8, r2er_student=0.7 - k / 10, r2er_compact=0.6 - k / 10) for k in range(3)]
    fig = plot_accuracy_vs_params(rows, tmp_path / "a.png")
    (ax,) = fig.axes
    assert ax.get_xscale() == "log" and len(ax.lines) == 3
    for line, r in zip(ax.lines, rows):
        np.testing.assert_allclose(line.get_xydata(), [[r["teacher_params"], r["r2er_teacher"]],
                                                       [r["student_params"], r["r2er_student"]],
                                                       [r["compact_params"], r["r2er_compact"]]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["neuron 0", "neuron 1", "neuron 2"]
    assert_png(tmp_path / "a.png")


def test_predicted_vs_measured_has_a_panel_per_neuron_with_its_r(tmp_path):
    rng = np.random.default_rng(0)
    responses = rng.normal(size=(5, 40))
    neurons = [1, 4]
    preds = [responses[k] + rng.normal(scale=0.5 + k, size=40) for k in neurons]
    fig = plot_predicted_vs_measured(neurons, preds, responses, tmp_path / "p.png")
    assert len(fig.axes) == 2
    for ax, k, p in zip(fig.axes, neurons, preds):
        np.testing.assert_allclose(offsets(ax), np.column_stack([p, responses[k]]))
        assert ax.get_title() == f"neuron {k}: r = {np.corrcoef(p, responses[k])[0, 1]:.2f}"
    assert_png(tmp_path / "p.png")


def test_layer0_filters_shows_every_filter_up_to_the_limit(models, tmp_path):
    fig = plot_layer0_filters(models, [0, 1, 2], tmp_path / "f.png", max_filters=8)
    assert len(fig.axes) == 3 * 8
    drawn = [sum(len(ax.images) for ax in fig.axes[r * 8:(r + 1) * 8]) for r in range(3)]
    assert drawn == [6, 6, 6]   # 6 layer-0 filters each, 2 empty cells per row
    first = fig.axes[0].images[0].get_array()
    w = models[0].layer0_conv.weight.detach().double().numpy().transpose(0, 2, 3, 1)[0]
    np.testing.assert_allclose(first, 0.5 + 0.5 * w / np.abs(w).max(), rtol=1e-6)  # grey is 0, as every filter plot
    assert_png(tmp_path / "f.png")


def test_r_vs_params_draws_ours_the_published_and_the_ratio_histogram(tmp_path):
    rows = [dict(neuron=k, compact_params=1000 * (k + 2), published_params=1000 * (k + 1), r_teacher_test=0.9 - k / 50,
                 r_test=0.5 + k / 100, teacher_params=5e6, r_teacher_model_test=0.6) for k in range(5)]
    rows[2]["r_test"] = None            # a neuron without recordings on the test images
    fig = plot_r_vs_params({"session": "s", "teacher": "published", "neurons": rows}, tmp_path / "r.png")
    ax, rx, hx = fig.axes
    np.testing.assert_allclose(offsets(ax, 0), [[r["published_params"], 1.0] for r in rows])
    np.testing.assert_allclose(offsets(ax, 1), [[r["compact_params"], r["r_teacher_test"]] for r in rows])
    ours = offsets(rx, 1)
    np.testing.assert_allclose(ours, [[r["compact_params"], r["r_test"]] for r in rows if r["r_test"] is not None])
    counts = [p.get_height() for p in hx.patches]
    assert sum(counts) == len(rows) and hx.get_xlabel() == "compact / published parameters"
    assert ax.get_title() == "session s, teacher: published"
    assert_png(tmp_path / "r.png")


def test_closed_loop_draws_seeds_and_their_mean(tmp_path):
    def history(shift):
        return [{"images": n, "r2_truth_median": 0.1 * i + shift} for i, n in enumerate((40, 60, 80))]

    runs = {"active": [history(0.0), history(0.2)], "random": [history(0.1)]}
    fig = plot_closed_loop(runs, tmp_path / "c.png")
    (ax,) = fig.axes
    assert len(ax.lines) == 2 + 1 + 1 + 1   # per rule: its seeds, then their mean
    np.testing.assert_allclose(ax.lines[2].get_ydata(), [0.1, 0.2, 0.3])   # mean of the two active seeds
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["active (2 seeds)", "random (1 seeds)"]
    assert_png(tmp_path / "c.png")


def test_gallery_rows_hold_the_synthesised_then_the_pool_images(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2, 2, 112, 112, 3), dtype=np.uint8)
    pool = rng.integers(0, 256, (2, 1, 112, 112, 3), dtype=np.uint8)
    res = PreferredStimuli(images=images, responses=np.array([[3.0, 2.5], [1.0, 0.5]]), trace=np.zeros((1, 2, 2)),
                           pool_images=pool, pool_responses=np.array([[1.5], [0.25]]))
    fig = save_gallery(res, tmp_path / "g.png", neurons=[1], labels=["a", "b"])
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == ["synth. r=1.00", "synth. r=0.50", "pool #1 r=0.25"]
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), pool[1, 0])
    assert fig.axes[0].get_ylabel() == "b"
    assert_png(tmp_path / "g.png")


def test_filter_similarity_heatmap_is_the_matched_matrix(models, tmp_path):
    sim = filter_similarity(models, "random", draws=1)
    fig = plot_filter_similarity(models, tmp_path / "s.png", similarities=[sim])
    heat = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(heat, sim.matched)
    off = ~np.eye(len(models), dtype=bool)
    assert sum(p.get_height() for p in fig.axes[1].patches) == 2 * off.sum()   # real and one null
    assert_png(tmp_path / "s.png")


def test_filter_clusters_bars_count_the_models_using_each_cluster(models, tmp_path):
    c = cluster_filters(models, k=3)
    fig = plot_filter_clusters(models, tmp_path / "c.png", clusters=c)
    centroid_axes, bars, heat = fig.axes[:3], fig.axes[3], fig.axes[4]
    assert all(len(ax.images) == 1 for ax in centroid_axes)
    np.testing.assert_array_equal([p.get_height() for p in bars.patches], c.model_counts)
    usage = heat.images[0].get_array()
    assert usage.shape == (len(models), 3) and usage.sum() == sum(m.nums_filters[0] for m in models)
    assert_png(tmp_path / "c.png")


def test_consolidation_plot_has_a_row_of_three_panels_per_layer(models, tmp_path):
    fig = plot_consolidation(models, tmp_path / "p.png", layers=(1, 2))
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 3
    for row, layer in zip((panels[0:3], panels[3:6]), (1, 2)):
        drawn = np.concatenate([np.asarray(col.get_offsets())[:, 1] for col in row[0].collections])
        expect = np.concatenate([consolidation(m, layer)["participation_ratio"] for m in models])
        np.testing.assert_allclose(drawn, expect)
        assert sum(p.get_height() for p in row[1].patches) == sum(consolidation(m, layer)["n_out"] for m in models)
    assert_png(tmp_path / "p.png")


def test_moved_plot_modules_keep_deprecated_aliases():
    import importlib

    import compactcortex.analysis as analysis
    from compactcortex.plots import analysis as new_analysis
    from compactcortex.plots import reports

    with pytest.warns(DeprecationWarning, match="compactcortex.analysis.save_gallery is deprecated"):
        assert analysis.save_gallery is new_analysis.save_gallery
    for old, new in (("compactcortex.report_plots", reports), ("compactcortex.plotting", None)):
        with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
            module = importlib.reload(importlib.import_module(old))
        if new is not None:
            assert module.plot_r_vs_params is new.plot_r_vs_params
