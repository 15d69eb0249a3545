"""Figures of the analyses (matplotlib Agg, PNG written atomically)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ..analysis.consolidation import (NULLS, FilterClusters, FilterSimilarity, cluster_filters, consolidation, filter_similarity,
                            pointwise_input_rms)
from ..analysis.preferred import PreferredStimuli
from . import filter_rgb, pyplot, save_png

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["save_gallery", "plot_filter_similarity", "plot_filter_clusters", "plot_consolidation"]


def save_gallery(result: PreferredStimuli, path: str | Path, neurons: Sequence[int] | None = None,
                 labels: Sequence[str] | None = None) -> Figure:
    """One row per neuron: its synthesised images, then its best pool images when the result has them.

    Titles give the engine response (the model's output units, e.g. spikes per 100 ms).

    Args:
        neurons: rows of ``result`` to show (default: all).
        labels: a label per row of ``result`` (default ``"neuron <row>"``).
    """
    plt = pyplot()
    rows = list(range(len(result.images))) if neurons is None else list(neurons)
    n = result.images.shape[1]
    n_pool = 0 if result.pool_images is None else result.pool_images.shape[1]
    fig, axes = plt.subplots(len(rows), n + n_pool, figsize=(1.9 * (n + n_pool), 2.1 * len(rows)), squeeze=False)
    for ax_row, i in zip(axes, rows):
        shown = [(im, f"synth. r={r:.2f}") for im, r in zip(result.images[i], result.responses[i])]
        if n_pool:
            shown += [(im, f"pool #{j + 1} r={r:.2f}")
                      for j, (im, r) in enumerate(zip(result.pool_images[i], result.pool_responses[i]))]
        for ax, (im, title) in zip(ax_row, shown):
            ax.imshow(im)
            ax.set_title(title, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(labels[i] if labels is not None else f"neuron {i}", fontsize=9)
    return save_png(fig, path)


def plot_filter_similarity(models: Sequence, path: str | Path, seed: int = 0,
                           similarities: Sequence[FilterSimilarity] | None = None) -> Figure:
    """Matched similarity of layer-0 filter sets between models (heatmap) and against each null.

    ``similarities``: precomputed results, one per null kind (default: computed for :data:`NULLS`).
    """
    sims = list(similarities) if similarities is not None else [filter_similarity(models, k, seed) for k in NULLS]
    plt = pyplot()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    im = ax0.imshow(sims[0].matched, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(im, ax=ax0, fraction=0.046)
    ax0.set_title("matched |cos| of layer-0 filters")
    ax0.set_xlabel("model b")
    ax0.set_ylabel("model a (mean over its filters)")
    off = ~np.eye(len(sims[0].matched), dtype=bool)
    bins = np.linspace(0, 1, 51)
    ax1.hist(sims[0].matched[off], bins, alpha=0.7, label=f"real (mean {sims[0].mean_matched:.2f})")
    for s in sims:
        ax1.hist(s.null[off], bins, alpha=0.5, label=f"null: {s.null_kind} (mean {s.mean_null:.2f})")
    ax1.set_xlabel("matched similarity per model pair")
    ax1.set_ylabel("model pairs")
    ax1.legend(frameon=False, fontsize=8)
    return save_png(fig, path)


def plot_filter_clusters(models: Sequence, path: str | Path, k: int = 16, seed: int = 0,
                         clusters: FilterClusters | None = None) -> Figure:
    """The k-means vocabulary of layer-0 filters: centroids, how many models use each, and usage per model."""
    c = clusters if clusters is not None else cluster_filters(models, k, seed)
    k = len(c.centroids)
    plt = pyplot()
    fig = plt.figure(figsize=(max(8.0, 0.7 * k), 9))
    grid = fig.add_gridspec(3, k, height_ratios=[1, 1.5, 3])
    for j in range(k):
        ax = fig.add_subplot(grid[0, j])
        ax.imshow(filter_rgb(c.centroids[j]), interpolation="nearest")
        ax.set_title(f"{j}", fontsize=8)
        ax.axis("off")
    bars = fig.add_subplot(grid[1, :])
    bars.bar(np.arange(k), c.model_counts)
    bars.axhline(len(c.labels), color="k", lw=0.8, ls="--")
    bars.set_xlim(-0.5, k - 0.5)
    bars.set_ylabel(f"models using it (of {len(c.labels)})")
    usage = np.array([np.bincount(lab, minlength=k) for lab in c.labels])
    heat = fig.add_subplot(grid[2, :], sharex=bars)
    im = heat.imshow(usage, aspect="auto", cmap="magma", interpolation="nearest")
    fig.colorbar(im, ax=heat, orientation="horizontal", fraction=0.05, label="filters in cluster")
    heat.set_xlabel("cluster (centroid shown above; grey = 0)")
    heat.set_ylabel("model")
    return save_png(fig, path)


def plot_consolidation(models: Sequence, path: str | Path, layers: Sequence[int] = (1, 2),
                       images: np.ndarray | None = None) -> Figure:
    """Per layer: effective fan-in of every pointwise output channel per model, top-3 share, one weight matrix.

    ``images`` (N, 112, 112, 3) uint8: weights are scaled by each input channel's RMS on them
    (:func:`~compactcortex.analysis.consolidation.pointwise_input_rms`); default raw weights.
    """
    plt = pyplot()
    fig, axes = plt.subplots(len(layers), 3, figsize=(15, 3.8 * len(layers)), squeeze=False,
                             gridspec_kw={"width_ratios": [2.2, 1, 1.2]})
    for row, layer in zip(axes, layers):
        scale = [pointwise_input_rms(m, images, layer) if images is not None else None for m in models]
        res = [consolidation(m, layer, input_rms=s) for m, s in zip(models, scale)]
        for i, r in enumerate(res):
            row[0].scatter(np.full(r["n_out"], i), r["participation_ratio"], s=5, alpha=0.5, color="C0")
            row[0].plot([i - 0.4, i + 0.4], [r["n_in"]] * 2, color="k", lw=1)
            row[0].plot([i - 0.4, i + 0.4], [r["n_in"] / 3] * 2, color="C3", lw=1)
        row[0].set_yscale("log")
        row[0].set_xlabel("model")
        row[0].set_ylabel("participation ratio (effective inputs)")
        row[0].set_title(f"layer {layer} pointwise ({'input-RMS weighted' if images is not None else 'raw weights'}): "
                         "dots = output channels; black = n_in, red = n_in/3 (Gaussian weights)", fontsize=9)
        top = np.concatenate([r["top_k_fraction"] for r in res])
        row[1].hist(top, np.linspace(0, 1, 26))
        row[1].set_xlabel(f"weight-energy share of top {res[0]['top_k']} inputs")
        row[1].set_ylabel("output channels")
        w = np.abs(getattr(models[0], f"layer{layer}_conv_point").weight.detach().double().numpy()[:, :, 0, 0])
        if scale[0] is not None:
            w = w * scale[0][None, :]
        w = w[np.argsort(w.argmax(axis=1), kind="stable")]
        im = row[2].imshow(w / w.max(axis=1, keepdims=True), aspect="auto", cmap="Greys", interpolation="nearest")
        fig.colorbar(im, ax=row[2], fraction=0.046)
        row[2].set_title("model 0: |w| / row max", fontsize=9)
        row[2].set_xlabel("input channel")
        row[2].set_ylabel("output channel")
    fig.tight_layout()
    return save_png(fig, path)
