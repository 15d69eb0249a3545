"""Figures of the demo report and of ``compress`` (matplotlib, written atomically as PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..analysis.consolidation import layer0_filters
from . import filter_rgb, pyplot, save_png

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_accuracy_vs_params", "plot_predicted_vs_measured", "plot_layer0_filters", "plot_r_vs_params",
           "plot_closed_loop"]


def plot_accuracy_vs_params(rows: list[dict], path: Path) -> Figure:
    """R2_ER against parameter count (log) for teacher, student and compact model per neuron."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in rows:
        xs = [r["teacher_params"], r["student_params"], r["compact_params"]]
        ys = [r["r2er_teacher"], r["r2er_student"], r["r2er_compact"]]
        ax.plot(xs, ys, "-o", label=f"neuron {r['neuron']}")
    ax.set_xscale("log")
    ax.set_xlabel("parameters (teacher ensemble, distilled student, compact)")
    ax.set_ylabel("R2_ER on held-out trials")
    ax.legend(frameon=False)
    ax.set_title("accuracy vs size per stage")
    return save_png(fig, path)


def plot_predicted_vs_measured(neurons: list[int], predictions: list[np.ndarray], responses: np.ndarray,
                               path: Path) -> Figure:
    """Compact-model predictions against repeat-averaged responses (spike counts / 100 ms)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(neurons), figsize=(3.2 * len(neurons), 3.2), squeeze=False)
    for ax, k, p in zip(axes[0], neurons, predictions):
        ax.scatter(p, responses[k], s=6, alpha=0.5)
        ax.set_title(f"neuron {k}: r = {np.corrcoef(p, responses[k])[0, 1]:.2f}")
        ax.set_xlabel("compact model prediction")
        ax.set_ylabel("measured (spikes / 100 ms)")
    return save_png(fig, path)


def plot_layer0_filters(models, neurons: list[int], path: Path, max_filters: int = 16) -> Figure:
    """Layer-0 filters of each compact model as small RGB images (:func:`filter_rgb`: grey is 0)."""
    plt = pyplot()
    cols = max_filters
    fig, axes = plt.subplots(len(models), cols, figsize=(cols * 0.6, len(models) * 0.7), squeeze=False)
    for row, w, k in zip(axes, layer0_filters(models), neurons):   # w: (n0, 5, 5, 3)
        for j, ax in enumerate(row):
            ax.axis("off")
            if j < len(w):
                ax.imshow(filter_rgb(w[j]), interpolation="nearest")
        row[0].set_title(f"n{k}", fontsize=7, loc="left")
    return save_png(fig, path)


def plot_r_vs_params(summary: dict, path: Path) -> Figure:
    """Three panels from a ``compress`` summary: r with the teacher against parameters (ours; the
    published sizes beside, at r = 1 with themselves, joined to ours); r with the recordings
    against parameters, ours and the teacher's (where recordings are on the same images); the
    distribution of compact / published parameters (or of compact parameters)."""
    plt = pyplot()
    rows = summary["neurons"]
    fig, (ax, rx, hx) = plt.subplots(1, 3, figsize=(15, 4))
    val = lambda v: np.nan if v is None else v  # noqa: E731
    for r in rows:
        if r.get("published_params"):
            ax.plot([r["published_params"], r["compact_params"]], [1.0, val(r["r_teacher_test"])], "-", color="0.8",
                    lw=0.7)
    pub = [r["published_params"] for r in rows if r.get("published_params")]
    if pub:
        ax.scatter(pub, [1.0] * len(pub), c="0.5", s=14, label="published models (size)")
    ax.scatter([r["compact_params"] for r in rows], [val(r["r_teacher_test"]) for r in rows], c="C0", s=16,
               label="ours (compact)")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("r with the teacher, test-half images")
    ax.set_title(f"session {summary['session']}, teacher: {summary['teacher']}")
    ax.legend(frameon=False, loc="lower left")
    if any(r["r_test"] is not None for r in rows):
        ours = [(r["compact_params"], r["r_test"]) for r in rows if r["r_test"] is not None]
        theirs = [(r["teacher_params"], r["r_teacher_model_test"]) for r in rows if r["r_teacher_model_test"] is not None]
        rx.scatter(*zip(*theirs), c="0.5", s=14, label=f"teacher ({summary['teacher']})")
        rx.scatter(*zip(*ours), c="C0", s=16, label="ours (compact)")
        rx.set_xscale("log")
        rx.legend(frameon=False, loc="lower left")
    rx.set_xlabel("parameters")
    rx.set_ylabel("r with the recorded responses, test half")
    ratios = [r["compact_params"] / r["published_params"] for r in rows if r.get("published_params")]
    if ratios:
        hx.hist(ratios, bins=20, color="C0")
        hx.axvline(1.5, color="k", ls="--", lw=0.8)
        hx.set_xlabel("compact / published parameters")
    else:
        hx.hist([r["compact_params"] for r in rows], bins=20, color="C0")
        hx.set_xlabel("compact parameters")
    hx.set_ylabel("neurons")
    return save_png(fig, path)


def plot_closed_loop(runs: dict[str, list[list[dict]]], path: Path) -> Figure:
    """Median r2 with the ground truth against recorded images, one colour per selection rule.

    ``runs`` maps a rule (e.g. "active", "random") to one history per seed (the lists of
    :func:`~compactcortex.fit.closed_loop.closed_loop`); thin lines are seeds, thick their mean.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for (rule, histories), colour in zip(runs.items(), ("C0", "C1", "C2", "C3")):
        for h in histories:
            ax.plot([e["images"] for e in h], [e["r2_truth_median"] for e in h], "-", color=colour, alpha=0.3, lw=1)
        x = [e["images"] for e in histories[0]]
        mean = np.mean([[e["r2_truth_median"] for e in h] for h in histories], axis=0)
        ax.plot(x, mean, "-o", color=colour, lw=2, label=f"{rule} ({len(histories)} seeds)")
    ax.set_xlabel("recorded images")
    ax.set_ylabel("median r$^2$ with the true rates (fresh images)")
    ax.set_title("closed loop in silico: teacher accuracy per round")
    ax.legend(frameon=False)
    return save_png(fig, path)
