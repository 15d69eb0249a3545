"""The settings of :func:`compactcortex.fit.trunk.fit_trunk` (torch-free: the command line reads
its defaults without loading torch)."""
from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["TrunkConfig", "DEFAULT_TRUNK_FILTERS"]

#: Filters of the default core: layer 0 (at 112x112, most of the cost) narrow, the 28x28
#: layers that feed the readouts wide.
DEFAULT_TRUNK_FILTERS = (64, 96, 128, 128, 128)


@dataclass
class TrunkConfig:
    """Settings of :func:`fit_trunk`.

    nums_filters: the core's filters (n0..n4); epochs: passes over every session's training
    images; patience: epochs without a better held-out median r before stopping; lr: Adam's
    initial learning rate, decayed to 5% of it by a cosine over ``epochs``; batch: images per step
    (all of one session); readout_l1: weight of the readouts' sparsity penalty; readout_pool:
    the readouts' masks cover the map average-pooled by this factor (2: 14x14 cells);
    val_fraction: share of each session's images held out; seed: makes a run deterministic
    (member k uses ``seed * 1000 + k``); max_minutes: stop after this much training time
    (keeping the best epoch so far), None for no limit.
    """

    nums_filters: tuple[int, ...] = DEFAULT_TRUNK_FILTERS
    epochs: int = 12
    patience: int = 3
    lr: float = 1e-3
    batch: int = 32
    readout_l1: float = 0.1
    readout_pool: int = 2
    val_fraction: float = 0.1
    seed: int = 0
    max_minutes: float | None = None

    def __post_init__(self) -> None:
        self.nums_filters = tuple(int(v) for v in self.nums_filters)
        if len(self.nums_filters) != 5 or not all(1 <= v <= 1024 for v in self.nums_filters):
            raise ValueError(f"nums_filters must be 5 integers in 1..1024, got {self.nums_filters}")
        if not (1 <= self.epochs <= 10_000 and 1 <= self.patience and 1 <= self.batch <= 4096 and self.seed >= 0):
            raise ValueError(f"need 1 <= epochs <= 10000, patience >= 1, 1 <= batch <= 4096, seed >= 0; got {self}")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1 and math.isfinite(self.readout_l1) and self.readout_l1 >= 0):
            raise ValueError(f"lr must be in (0, 1] and readout_l1 a number >= 0, got {self}")
        if self.readout_pool not in (1, 2, 4, 7, 14, 28):
            raise ValueError(f"readout_pool must divide 28, got {self.readout_pool}")
        if not 0 < self.val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {self.val_fraction}")
        if self.max_minutes is not None and not (self.max_minutes > 0):
            raise ValueError(f"max_minutes must be > 0 or None, got {self.max_minutes}")
