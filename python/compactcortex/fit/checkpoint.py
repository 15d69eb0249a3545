"""Training checkpoints: one file per run, replaced atomically after every epoch.

A checkpoint holds the model and optimiser state dicts, the epoch, the best validation loss
and weights so far, and the random state; it is written with ``torch.save`` and read back with
``weights_only=True`` (no arbitrary unpickling), so a killed job resumes where it stopped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..files import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint"]


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The state saved at ``path``, or None if there is none. Raises ValueError if it is corrupt."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: corrupt checkpoint ({e}); delete it to start over") from None
