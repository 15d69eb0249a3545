"""Open any model file the package knows: a Plan, a CompactModel, or a published .pt."""
from __future__ import annotations

from pathlib import Path

from .engine.plan import Plan
from .files import COMPACT_MODEL_FORMAT, PLAN_FORMAT, safetensors_format

__all__ = ["load_plan"]


def load_plan(path: str | Path) -> Plan:
    """A :class:`Plan` from a saved Plan, a saved CompactModel, or an authors' ``.pt`` file.

    Only the latter two import torch. Raises ValueError for an unknown or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    if path.suffix == ".pt":
        from .engine.compile import compile
        from .models.published import load_published

        return compile(load_published(path))
    fmt = safetensors_format(path)
    if fmt == PLAN_FORMAT:
        return Plan.load(path)
    from .engine.compile import compile
    from .models.compact import CompactModel

    if fmt == COMPACT_MODEL_FORMAT:
        return compile(CompactModel.load(path))
    raise ValueError(f"{path}: unknown model format {fmt!r}")
