"""Readers for the authors' published compact models (PyTorch state dicts of Keras weights)."""
from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Sequence

import torch

from ..files import checked_name
from .compact import CompactModel, build_within_file, load_state_checked

__all__ = ["load_published", "load_published_session", "published_model_dir"]

# The published .pt files hold running_var + 1e-3 in layers 1-4 (Keras epsilon folded in), so
# these epsilons reproduce the Keras outputs exactly.
PUBLISHED_BN_EPS = (1e-3, 0.0, 0.0, 0.0, 0.0)
# Where the .pt files sit: the layout of ../shared/data/v4, then that of the authors' repository.
_MODEL_DIRS = ("compact_models/torch", "data_compact_models/models_torch")
_NAME = re.compile(r"compact_model_(\d+)_neuron(\d+)\.pt$")


def _published_to_ours(key: str) -> str:
    key = key.removeprefix("layers.")
    return "readout." + key[len("Beta."):] if key.startswith("Beta.") else key


def load_published(
    pt_path: str | Path,
    nums_filters: Sequence[int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> CompactModel:
    """Load one published compact model from the authors' ``.pt`` state dict.

    Args:
        pt_path: ``compact_model_<session>_neuron<k>.pt``.
        nums_filters: expected ``(n0..n4)``; inferred from the weight shapes when omitted.
        dtype: parameter dtype of the returned model (the files hold float64 copies of the
            float32 Keras weights).

    Returns:
        The model in eval mode. Inputs are recentred images (N, 3, 112, 112); see
        :class:`CompactModel`.

    Raises:
        ValueError: the file is missing or unreadable, a key is missing or unexpected, or a
            shape disagrees with ``nums_filters`` (the message names the file and the key).
    """
    path = Path(pt_path)
    if not path.is_file():
        raise ValueError(f"{path}: no such model file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt, truncated, or not a torch file
        raise ValueError(f"{path}: not a readable PyTorch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(raw).__name__}")
    state = {_published_to_ours(k): v for k, v in raw.items()}

    shape_keys = ["layer0_conv.weight"] + [f"layer{i}_conv_point.weight" for i in range(1, 5)]
    for key in shape_keys:
        if key not in state:
            raise ValueError(f"{path}: missing key {'layers.' + key!r}; not a published compact model")
    inferred = tuple(int(state[k].shape[0]) for k in shape_keys)
    if nums_filters is not None:
        for i, (want, got) in enumerate(zip(nums_filters, inferred)):
            if int(want) != got:
                raise ValueError(f"{path}: key {'layers.' + shape_keys[i]!r} has {got} filters, "
                                 f"but nums_filters[{i}] = {want}")
    model = build_within_file(lambda: CompactModel(inferred, bn_eps=PUBLISHED_BN_EPS), path)
    load_state_checked(model, state, str(path))
    model.to(dtype).eval()
    m = _NAME.search(path.name)
    model.provenance = {"source": "Cowley et al. published compact model", "file": path.name}
    if m:
        model.provenance.update(session=m.group(1), neuron=int(m.group(2)))
    return model


def published_model_dir(root: str | Path) -> Path:
    """The folder of ``.pt`` files in ``root`` (``../shared/data/v4`` or the authors' repository)."""
    root = Path(root)
    for sub in _MODEL_DIRS:
        if (root / sub).is_dir():
            return root / sub
    raise ValueError(f"{root}: no published models found (looked in {', '.join(_MODEL_DIRS)})")


def load_published_session(
    root: str | Path, session: str | int, dtype: torch.dtype = torch.float32
) -> list[CompactModel]:
    """Every published compact model of ``session``, ordered by neuron index.

    ``root`` is a folder laid out like ``../shared/data/v4`` or a clone of the authors'
    repository. Raises ValueError when the session has no models or its neuron numbers have gaps.
    """
    session = checked_name(session, "session")  # also keeps glob patterns ('*') out
    folder = published_model_dir(root)
    found = {}
    for p in folder.glob(f"compact_model_{glob.escape(session)}_neuron*.pt"):
        m = _NAME.search(p.name)
        if m:
            found[int(m.group(2))] = p
    if not found:
        raise ValueError(f"{folder}: no models for session {session}")
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise ValueError(f"{folder}: session {session} lacks neuron(s) {missing}")
    return [load_published(found[k], dtype=dtype) for k in sorted(found)]
