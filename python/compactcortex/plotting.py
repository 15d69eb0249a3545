"""Matplotlib for every plot of the package: a headless backend, PNGs written atomically."""
from __future__ import annotations

from pathlib import Path

from .files import atomic_path

__all__ = ["pyplot", "save_png"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str | Path):
    """Write ``fig`` to ``path`` as PNG (atomically), close it, and return it (for inspection)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return fig
