"""Images as the torch models take them: (N, 3, 112, 112) float32, recentred."""
from __future__ import annotations

import numpy as np
import torch

from ..constants import DATASET_MEAN

__all__ = ["to_tensor"]


def to_tensor(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N,112,112,3) uint8 pixels or recentred floats -> (N,3,112,112) float32 recentred tensor."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.dim() != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N,112,112,3), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() - torch.tensor(DATASET_MEAN)
    return x.float().permute(0, 3, 1, 2).contiguous()
