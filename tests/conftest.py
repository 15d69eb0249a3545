"""Shared fixtures: random compact models with realistic activations, and the V4 data folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import compactcortex as cc

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "v4"


@pytest.fixture
def v4() -> Path:
    """The published V4 data folder; tests using it skip where it is absent."""
    if not (DATA / "compact_models" / "torch").is_dir():
        pytest.skip(f"published V4 data not found at {DATA.resolve()} (../shared/data/v4 beside the repository)")
    return DATA


def random_model(filters, seed=0, dtype=None):
    """A CompactModel with random weights and batchnorm statistics (eval mode)."""
    from compactcortex.bench import random_published_like_model

    m = random_published_like_model(filters, seed=seed)
    return m if dtype is None else m.to(dtype)


def recentred(n, seed=0, dtype=np.float32):
    """Random recentred images (N, 112, 112, 3)."""
    return np.random.default_rng(seed).normal(0, 60, (n, 112, 112, 3)).astype(dtype)


def torch_reference(model, images_nhwc) -> np.ndarray:
    """float64 PyTorch forward pass of recentred NHWC images."""
    import torch

    m = model.to(torch.float64)
    with torch.no_grad():
        return m(torch.from_numpy(np.asarray(images_nhwc, np.float64)).permute(0, 3, 1, 2)).numpy()


def rel_err(a, ref) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())
