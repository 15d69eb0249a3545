"""Shared layer-0 filters and their consolidation by the pointwise weights of later layers.

The paper (Cowley et al., Nature 2026) reports that compact models of different V4 neurons
share similar early filters (a common vocabulary of edge and colour detectors) and that each
model then "consolidates" this shared representation in its own way. This module measures both:

* :func:`filter_similarity`: how well each model's layer-0 filters are matched by another
  model's, against a null of surrogate filters;
* :func:`cluster_filters`: a k-means vocabulary of layer-0 filters and how many models use
  each entry;
* :func:`consolidation`: how a layer's pointwise (1x1) weights combine its input channels.

Filters are compared as vectors of 75 numbers (5 x 5 pixels x RGB), after subtracting each
filter's mean over those 75 numbers and scaling to unit length; similarity is the absolute
cosine, so a filter and its negative count as the same (batchnorm scale can flip the sign).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm


__all__ = ["layer0_filters", "unit_filters", "surrogate_filters", "FilterSimilarity", "filter_similarity",
           "FilterClusters", "cluster_filters", "pointwise_input_rms", "consolidation", "summarise", "NULLS"]

#: Kinds of surrogate filters for the similarity null (see :func:`surrogate_filters`).
NULLS = ("shuffle", "phase", "random")


def layer0_filters(models: Sequence) -> list[np.ndarray]:
    """Layer-0 convolution weights of each model, each (n0_m, 5, 5, 3) float64 (H, W, RGB)."""
    return [m.layer0_conv.weight.detach().cpu().double().numpy().transpose(0, 2, 3, 1) for m in models]


def unit_filters(filters: np.ndarray) -> np.ndarray:
    """(n, 5, 5, 3) filters -> (n, 75): each minus its mean, scaled to unit L2 norm (zeros stay 0)."""
    v = filters.reshape(len(filters), -1)
    v = v - v.mean(axis=1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-300)


def surrogate_filters(filters: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Surrogates of (n, h, w, 3) filters with the same L2 norm each, for a chance level.

    ``kind``:
        ``"shuffle"``: the h*w pixel positions of each filter permuted at random (each pixel's
        RGB triple kept): same colours and values, no spatial structure.
        ``"phase"``: the 2-D Fourier phases of each filter replaced by those of white noise (the
        same random phases for R, G and B): keeps each channel's amplitude spectrum, hence
        smoothness, orientation and spatial frequency, and randomises the rest.
        ``"random"``: i.i.d. Gaussian filters.
    """
    n, h, w, c = filters.shape
    if kind == "shuffle":
        flat = filters.reshape(n, h * w, c)
        order = np.argsort(rng.random((n, h * w)), axis=1)
        out = np.take_along_axis(flat, order[:, :, None], axis=1).reshape(filters.shape)
    elif kind == "phase":
        amplitude = np.abs(np.fft.fft2(filters, axes=(1, 2)))
        phase = np.angle(np.fft.fft2(rng.standard_normal((n, h, w)), axes=(1, 2)))[..., None]
        out = np.fft.ifft2(amplitude * np.exp(1j * phase), axes=(1, 2)).real
    elif kind == "random":
        out = rng.standard_normal(filters.shape)
    else:
        raise ValueError(f"null must be one of {NULLS}, got {kind!r}")
    size = np.linalg.norm(filters.reshape(n, -1), axis=1)
    return out * (size / np.maximum(np.linalg.norm(out.reshape(n, -1), axis=1), 1e-300))[:, None, None, None]


def _matched(units: list[np.ndarray], others: list[np.ndarray]) -> np.ndarray:
    """(M, M): [a, b] = mean over the rows of units[a] of their max |cosine| with others[b]."""
    m = len(units)
    out = np.full((m, m), np.nan)
    bounds = np.cumsum([0] + [len(u) for u in others])
    everything = np.concatenate(others)
    for a in range(m):
        cos = np.abs(units[a] @ everything.T)                      # (n_a, total)
        for b in range(m):
            if a != b:
                out[a, b] = cos[:, bounds[b]:bounds[b + 1]].max(axis=1).mean()
    return out


@dataclass
class FilterSimilarity:
    """Matched similarity of layer-0 filter sets between models, and its chance level.

    Attributes:
        matched: (M, M); ``matched[a, b]`` is the mean over model a's layer-0 filters of the best
            absolute cosine with any of model b's filters (mean-removed, 75-d); diagonal NaN.
            Not symmetric. 1: every filter of a has an exact copy (up to scale and sign) in b.
        null: (M, M), the same with model b's filters replaced by surrogates (``null_kind``,
            see :func:`surrogate_filters`), averaged over ``draws`` independent draws.
        null_kind: the surrogate kind.
    """

    matched: np.ndarray
    null: np.ndarray
    null_kind: str

    @property
    def mean_matched(self) -> float:
        """Mean of ``matched`` over all ordered pairs of different models."""
        return float(np.nanmean(self.matched))

    @property
    def mean_null(self) -> float:
        """Mean of ``null`` over all ordered pairs of different models."""
        return float(np.nanmean(self.null))

    @property
    def fraction_above_null(self) -> float:
        """Fraction of ordered pairs whose matched similarity exceeds their null."""
        off = ~np.eye(len(self.matched), dtype=bool)
        return float(np.mean(self.matched[off] > self.null[off]))


def filter_similarity(models: Sequence, null: str = "shuffle", seed: int = 0, draws: int = 3) -> FilterSimilarity:
    """Pairwise matched similarity of the models' layer-0 filters (see :class:`FilterSimilarity`).

    ``models`` may also be a list of (n_m, 5, 5, 3) filter arrays.
    """
    filters = _filters(models)
    units = [unit_filters(f) for f in filters]
    rng = np.random.default_rng(seed)
    nulls = [_matched(units, [unit_filters(surrogate_filters(f, null, rng)) for f in filters]) for _ in range(draws)]
    return FilterSimilarity(_matched(units, units), np.mean(nulls, axis=0), null)


@dataclass
class FilterClusters:
    """A k-means vocabulary of layer-0 filters pooled over models.

    Attributes:
        labels: per model, (n0_m,) int cluster index of each filter.
        centroids: (k, 5, 5, 3) unit-norm, zero-mean centroids, sign chosen so that the entry of
            largest magnitude is positive; sorted by ``model_counts``, most used first.
        filter_counts: (k,) number of filters (all models) in each cluster.
        model_counts: (k,) number of models with at least one filter in each cluster.
        tightness: (k,) mean |cosine| of the cluster's filters with its centroid.
    """

    labels: list[np.ndarray]
    centroids: np.ndarray
    filter_counts: np.ndarray
    model_counts: np.ndarray
    tightness: np.ndarray


def cluster_filters(models: Sequence, k: int = 16, seed: int = 0, restarts: int = 4,
                    iters: int = 100) -> FilterClusters:
    """Cluster all models' layer-0 filters into ``k`` groups (sign-invariant spherical k-means).

    Filters are made zero-mean and unit-norm (:func:`unit_filters`); each is assigned to the
    centroid of largest |cosine|, and a centroid is the normalised sum of its members, each
    flipped to agree in sign with it. This is k-means on sign-normalised unit filters where the
    sign of each filter is chosen relative to its cluster. Best of ``restarts`` runs (k-means++
    starts) by the summed |cosine|. ``models`` may also be a list of (n_m, 5, 5, 3) arrays.
    """
    filters = _filters(models)
    x = np.concatenate([unit_filters(f) for f in filters])
    if not 1 <= k <= len(x):
        raise ValueError(f"k must be between 1 and the number of filters ({len(x)}), got {k}")
    rng = np.random.default_rng(seed)
    best = max((_spherical_kmeans(x, k, rng, iters) for _ in range(restarts)), key=lambda r: r[2])
    centroids, labels = best[0], best[1]

    owner = np.repeat(np.arange(len(filters)), [len(f) for f in filters])
    model_counts = np.array([len(np.unique(owner[labels == j])) for j in range(k)])
    order = np.argsort(-model_counts, kind="stable")
    rank = np.argsort(order)
    centroids = centroids[order]
    labels = rank[labels]
    peak = centroids[np.arange(k), np.abs(centroids).argmax(axis=1)]
    centroids = centroids * np.where(peak < 0, -1.0, 1.0)[:, None]
    cos = np.abs(np.sum(x * centroids[labels], axis=1))
    counts = np.bincount(labels, minlength=k)
    return FilterClusters(
        labels=np.split(labels, np.cumsum([len(f) for f in filters])[:-1]),
        centroids=centroids.reshape(k, *filters[0].shape[1:]),
        filter_counts=counts,
        model_counts=model_counts[order],
        tightness=np.bincount(labels, weights=cos, minlength=k) / np.maximum(counts, 1),
    )


def _spherical_kmeans(x: np.ndarray, k: int, rng: np.random.Generator,
                      iters: int) -> tuple[np.ndarray, np.ndarray, float]:
    """One run on unit rows ``x`` (N, d): (centroids (k, d), labels (N,), summed |cosine|)."""
    centroids = [x[rng.integers(len(x))]]
    for _ in range(k - 1):   # k-means++ with distance 1 - |cos|
        d = 1.0 - np.abs(x @ np.array(centroids).T).max(axis=1)
        p = np.maximum(d, 0) ** 2
        centroids.append(x[rng.choice(len(x), p=p / p.sum()) if p.sum() > 0 else rng.integers(len(x))])
    c = np.array(centroids)
    labels = np.full(len(x), -1)
    for _ in range(iters):
        s = x @ c.T
        new = np.abs(s).argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        signed = x * np.sign(s[np.arange(len(x)), labels])[:, None]
        sums = np.zeros_like(c)
        np.add.at(sums, labels, signed)
        fit = np.abs(s[np.arange(len(x)), labels])
        for j in np.flatnonzero(np.bincount(labels, minlength=k) == 0):   # empty: reseed at the worst fit
            worst = fit.argmin()
            sums[j] = x[worst]
            fit[worst] = np.inf
        c = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-300)
    fit = np.abs(x @ c.T)
    return c, fit.argmax(axis=1), float(fit.max(axis=1).sum())


def pointwise_input_rms(model, images: np.ndarray, layer: int = 1) -> np.ndarray:
    """(n_in,) RMS of each input channel of layer ``layer``'s pointwise conv over images and positions.

    The pointwise input is the depthwise-filtered output of the previous layer, so this folds
    the previous layer's batchnorm scale and the depthwise kernel's gain into one number per
    channel. ``images``: (N, 112, 112, 3) uint8 or recentred float.
    """
    import torch

    from ..models.image_tensor import to_tensor

    captured: list[torch.Tensor] = []
    conv = getattr(model, f"layer{layer}_conv_point")
    hook = conv.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:
        with torch.no_grad():
            model.features(to_tensor(images).to(conv.weight.dtype), upto=layer)
    finally:
        hook.remove()
    return captured[0].double().pow(2).mean(dim=(0, 2, 3)).sqrt().numpy()


def consolidation(model, layer: int = 1, top_k: int = 3, input_rms: np.ndarray | None = None) -> dict:
    """How layer ``layer``'s pointwise weights (n_out x n_in) combine its input channels.

    The analysed weight of input j in output o is ``w[o, j] = W[o, j] * s[j]``, with W the 1x1
    conv weights and s = ``input_rms`` (from :func:`pointwise_input_rms`, so that a weight counts
    by how much signal it actually carries) or 1 (raw weights). With ``p[o, j] = w[o, j]**2 /
    sum_j w[o, j]**2`` the share of output o's weight energy on input j, the result holds:

    ``participation_ratio`` (n_out,): ``1 / sum_j p[o, j]**2``, the effective number of inputs
        each output reads: 1 for a single input, m for m inputs of equal magnitude, n_in for
        uniform weights, and about n_in / 3 for i.i.d. Gaussian weights (E w^4 = 3 (E w^2)^2),
        the reference for a dense, unstructured layer.
    ``top_k_fraction`` (n_out,): the share of each output's weight energy on its ``top_k``
        strongest inputs.
    ``consolidation_index``: mean participation ratio / n_in, the average fraction of the
        input channels an output effectively reads (small: each output combines a few inputs;
        about 1/3 for Gaussian weights).
    ``effective_rank``: participation ratio of the squared singular values of w,
        ``(sum s_i**2)**2 / sum s_i**4``: how many independent combinations of the inputs the
        layer passes on (at most min(n_in, n_out); for an i.i.d. Gaussian n_out x n_in matrix
        about n_out * n_in / (n_out + n_in)).
    ``depthwise_dc_fraction`` (n_in,): for the depthwise 5x5 kernel of each input channel,
        ``(sum k)**2 / (25 * sum k**2)``: 1 for a flat (pooling) kernel, 0 for a zero-mean
        (derivative-like) one.
    ``depthwise_centre_fraction`` (n_in,): share of each depthwise kernel's energy in its
        central 3x3.
    and ``layer``, ``n_in``, ``n_out``, ``top_k``, ``weighted`` (whether ``input_rms`` was used).
    """
    if not 1 <= layer <= 4:
        raise ValueError(f"layer must be 1-4, got {layer}")
    w = getattr(model, f"layer{layer}_conv_point").weight.detach().cpu().double().numpy()[:, :, 0, 0]
    n_out, n_in = w.shape
    if input_rms is not None:
        w = w * np.asarray(input_rms, np.float64)[None, :]
    energy = w ** 2
    p = energy / np.maximum(energy.sum(axis=1, keepdims=True), 1e-300)
    pr = 1.0 / np.maximum((p ** 2).sum(axis=1), 1e-300)
    sv2 = np.linalg.svd(w, compute_uv=False) ** 2
    d = getattr(model, f"layer{layer}_conv_depth").weight.detach().cpu().double().numpy()[:, 0]   # (n_in, 5, 5)
    d_energy = np.maximum((d ** 2).sum(axis=(1, 2)), 1e-300)
    return {
        "layer": layer,
        "n_in": n_in,
        "n_out": n_out,
        "top_k": top_k,
        "weighted": input_rms is not None,
        "participation_ratio": pr,
        "top_k_fraction": -np.sort(-p, axis=1)[:, :top_k].sum(axis=1),
        "consolidation_index": float(pr.mean() / n_in),
        "effective_rank": float(sv2.sum() ** 2 / max((sv2 ** 2).sum(), 1e-300)),
        "depthwise_dc_fraction": d.sum(axis=(1, 2)) ** 2 / (d[0].size * d_energy),
        "depthwise_centre_fraction": (d[:, 1:-1, 1:-1] ** 2).sum(axis=(1, 2)) / d_energy,
    }


def _filters(models: Sequence) -> list[np.ndarray]:
    """Layer-0 filters of CompactModels, or the arrays themselves when given arrays."""
    models = list(models)
    if len(models) < 1:
        raise ValueError("need at least one model")
    return [np.asarray(m, np.float64) for m in models] if isinstance(models[0], np.ndarray) else layer0_filters(models)


def summarise(models: Sequence, similarities: dict[str, FilterSimilarity], clusters: FilterClusters,
              images: np.ndarray | None = None, layers: Sequence[int] = (1, 2)) -> dict:
    """Key numbers of the analysis (JSON-ready) from its parts, for reports.

    Args:
        similarities: :func:`filter_similarity` results keyed by null kind.
        clusters: a :func:`cluster_filters` result.
        images: (N, 112, 112, 3) uint8; when given, consolidation is also computed on weights
            scaled by :func:`pointwise_input_rms` (the ``_weighted`` entries).
        layers: pointwise layers to describe.
    """
    first = next(iter(similarities.values()))
    out: dict = {
        "models": len(models),
        "n0": [int(len(f)) for f in layer0_filters(models)],
        "similarity": {"mean_matched": first.mean_matched,
                       **{f"mean_null_{kind}": s.mean_null for kind, s in similarities.items()},
                       **{f"fraction_above_null_{kind}": s.fraction_above_null for kind, s in similarities.items()}},
        "clusters": {"k": len(clusters.centroids), "model_counts": clusters.model_counts.tolist(),
                     "filter_counts": clusters.filter_counts.tolist(),
                     "tightness": np.round(clusters.tightness, 4).tolist(),
                     "mean_tightness": _mean_tightness(clusters),
                     **{f"null_{kind}": _cluster_null(models, kind, len(clusters.centroids)) for kind in NULLS[:2]}},
    }
    for layer in layers:
        for weighted in (False, True) if images is not None else (False,):
            rows = [consolidation(m, layer, input_rms=pointwise_input_rms(m, images, layer) if weighted else None)
                    for m in tqdm(models, desc=f"consolidation, layer {layer}", leave=False)]
            pr = np.concatenate([r["participation_ratio"] for r in rows])
            dc = np.concatenate([r["depthwise_dc_fraction"] for r in rows])
            out[f"layer{layer}" + ("_weighted" if weighted else "")] = {
                "median_n_in": float(np.median([r["n_in"] for r in rows])),
                "median_n_out": float(np.median([r["n_out"] for r in rows])),
                "median_participation_ratio": float(np.median(pr)),
                "median_consolidation_index": float(np.median([r["consolidation_index"] for r in rows])),
                "median_top3_fraction": float(np.median(np.concatenate([r["top_k_fraction"] for r in rows]))),
                "median_effective_rank": float(np.median([r["effective_rank"] for r in rows])),
                "median_depthwise_dc_fraction": float(np.median(dc)),
            }
    return out


def _mean_tightness(c: FilterClusters) -> float:
    """Mean |cosine| of every filter with its centroid."""
    return float(np.sum(c.tightness * c.filter_counts) / np.sum(c.filter_counts))


def _cluster_null(models: Sequence, kind: str, k: int, seed: int = 0) -> dict:
    """Cluster usage and tightness of surrogate filters (:func:`surrogate_filters`), the chance level."""
    rng = np.random.default_rng(seed)
    c = cluster_filters([surrogate_filters(f, kind, rng) for f in _filters(models)], k, seed)
    return {"model_counts": c.model_counts.tolist(), "mean_tightness": _mean_tightness(c)}
