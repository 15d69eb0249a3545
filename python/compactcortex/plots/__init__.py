"""Every plot of the package, in one room: a headless matplotlib, PNGs written atomically, and one
colour convention for filters (:func:`filter_rgb`). The figures: :mod:`.reports` (demo and
``compress``) and :mod:`.analysis` (preferred stimuli, filter sharing, consolidation)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import atomic_path

__all__ = ["pyplot", "save_png", "filter_rgb"]


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


def filter_rgb(filters: np.ndarray) -> np.ndarray:
    """(..., 5, 5, 3) signed layer-0 filters -> RGB in [0, 1]: grey is 0, each filter scaled by
    its own largest |value| (so a filter's sign and colour balance read the same in every plot)."""
    scale = np.abs(filters).reshape(*filters.shape[:-3], -1).max(axis=-1)[..., None, None, None]
    return 0.5 + 0.5 * filters / np.maximum(scale, 1e-300)
