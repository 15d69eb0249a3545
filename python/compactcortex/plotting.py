"""Deprecated: moved to :mod:`compactcortex.plots`; this alias goes in the next minor version."""
from __future__ import annotations

import warnings

from .plots import pyplot, save_png  # noqa: F401

__all__ = ["pyplot", "save_png"]

warnings.warn("compactcortex.plotting is deprecated: import compactcortex.plots", DeprecationWarning, stacklevel=2)
