"""Training checkpoints: one file per run, replaced atomically after every epoch.

A checkpoint holds the model and optimiser state dicts, the epoch, the best validation loss
and weights so far, and the random state; it is written with ``torch.save`` and read back with
``weights_only=True`` (no arbitrary unpickling), so a killed job resumes where it stopped.
It also records the settings of the run that wrote it (steps, seed, batch, ...): a run with
other settings refuses it instead of returning the old run's weights under the new settings.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_path

__all__ = ["save_checkpoint", "load_checkpoint"]


def _plain(value: Any) -> Any:
    """Settings as JSON-like Python values (numpy scalars and arrays, tuples -> int/float/list),
    so that they load under ``weights_only`` and compare equal to a later run's."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return _plain(value.tolist())
    return value


def save_checkpoint(path: str | Path, state: dict[str, Any], settings: dict[str, Any]) -> None:
    """Write ``state`` and the run's ``settings`` (plain values) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({**state, "settings": _plain(settings)}, tmp)


def load_checkpoint(path: str | Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    """The state saved at ``path``, or None if there is none.

    Raises:
        ValueError: the file is corrupt, or was written by a run whose settings differ from
            ``settings`` (the message names each difference).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: corrupt checkpoint ({e}); delete it to start over") from None
    saved = state.get("settings") if isinstance(state, dict) else None
    settings = _plain(settings)
    if saved is None:
        raise ValueError(f"{path}: checkpoint without a record of its run's settings (an older "
                         f"version wrote it); delete it to start over")
    diff = [f"{k}={saved.get(k)!r} there, {settings.get(k)!r} here"
            for k in sorted(set(saved) | set(settings)) if saved.get(k) != settings.get(k)]
    if diff:
        raise ValueError(f"{path}: checkpoint of a run with other settings ({'; '.join(diff)}); "
                         f"delete it or choose another checkpoint path")
    return state
