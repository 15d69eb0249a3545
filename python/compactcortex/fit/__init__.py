"""Training: teachers, trunks, distillation into compact students, and fine-tuning after pruning.

Names are imported on first use, so that ``compactcortex.fit.trunk_config`` (the command line's
defaults) loads without torch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

_LAZY = {
    "TrainConfig": "training", "train": "training", "fit_trunk": "trunk", "TrunkConfig": "trunk_config",
    "fit_teacher": "teacher", "save_teacher": "teacher", "load_teacher": "teacher",
    "fit_transfer_teacher": "transfer", "distill": "distill", "distill_population": "distill",
    "fine_tune": "distill", "ImageStream": "distill", "TargetPool": "distill",
    "select_images": "active", "disagreement": "active",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .active import disagreement, select_images
    from .distill import ImageStream, TargetPool, distill, distill_population, fine_tune
    from .teacher import fit_teacher, load_teacher, save_teacher
    from .training import TrainConfig, train
    from .transfer import fit_transfer_teacher
    from .trunk import fit_trunk
    from .trunk_config import TrunkConfig


__getattr__ = lazy_getattr(__name__, _LAZY)
