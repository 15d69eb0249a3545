"""Deprecated: moved to :mod:`compactcortex.plots.reports`; this alias goes in the next minor version."""
from __future__ import annotations

import warnings

from .plots.reports import *  # noqa: F401,F403
from .plots.reports import __all__  # noqa: F401

warnings.warn("compactcortex.report_plots is deprecated: import compactcortex.plots.reports", DeprecationWarning,
              stacklevel=2)
