"""Deprecated: renamed :mod:`compactcortex.stimulus_loop`; this alias goes in the next minor version."""
from __future__ import annotations

import warnings

from .stimulus_loop import *  # noqa: F401,F403
from .stimulus_loop import __all__  # noqa: F401

warnings.warn("compactcortex.loop is deprecated: import compactcortex.stimulus_loop", DeprecationWarning, stacklevel=2)
