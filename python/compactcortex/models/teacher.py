"""Teacher models: a CNN of a whole recorded population, and an ensemble of them.

The paper's teacher is an ensemble of 25 large networks fitted to many sessions; on a CPU we fit
small ones (``TeacherCNN``: ~0.1M shared parameters plus a factorised readout per neuron) and
average K of them. Anything that maps images to responses can serve as a teacher instead.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .image_tensor import to_tensor

__all__ = ["TeacherCNN", "Ensemble", "PopulationPredictions"]


class TeacherCNN(nn.Module):
    """A small CNN for a whole population: a shared core and a factorised readout per neuron.

    Core (on the image average-pooled to 56x56): conv 5x5/2 (32) - conv 3x3 (64) - conv 3x3/2 (64)
    - conv 3x3 (64), each with batchnorm and ELU, giving a 14x14x64 map. Readout per neuron: a
    spatial mask (14x14) times feature weights (64), plus a bias (Klindt et al., NeurIPS 2017).
    Targets are standardised per neuron; ``forward`` returns responses in the original units.

    Input (N, 3, 112, 112) recentred pixels; output (N, neurons).
    """

    def __init__(self, n_neurons: int, response_mean: Sequence[float] | None = None,
                 response_std: Sequence[float] | None = None) -> None:
        super().__init__()
        chans = [(3, 32, 5, 2), (32, 64, 3, 1), (64, 64, 3, 2), (64, 64, 3, 1)]
        layers: list[nn.Module] = []
        for cin, cout, k, s in chans:
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ELU()]
        self.core = nn.Sequential(*layers)
        self.mask = nn.Parameter(torch.randn(n_neurons, 14 * 14) * 0.01)
        self.features = nn.Parameter(torch.randn(n_neurons, 64) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_neurons))
        mean = torch.zeros(n_neurons) if response_mean is None else torch.as_tensor(response_mean, dtype=torch.float32)
        std = torch.ones(n_neurons) if response_std is None else torch.as_tensor(response_std, dtype=torch.float32)
        self.register_buffer("response_mean", mean.clone())
        self.register_buffer("response_std", std.clone())

    def standardised(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions in standardised units (the training target scale), (N, neurons)."""
        h = self.core(F.avg_pool2d(x / 64.0, 2)).flatten(2)   # (N, 64, 196)
        spatial = torch.einsum("ncp,kp->nkc", h, self.mask)      # (N, neurons, 64)
        return (spatial * self.features).sum(-1) + self.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardised(x) * self.response_std + self.response_mean


class PopulationPredictions:
    """``predict`` and ``predict_members`` on numpy images, for a module with ``forward`` (N, neurons)
    and ``member_outputs`` (K, N, neurons) on recentred (N, 3, 112, 112) tensors."""

    @torch.no_grad()
    def predict(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """(N, neurons) float64 mean prediction for (N,112,112,3) images."""
        self.eval()
        return np.concatenate([self(to_tensor(images[i:i + batch])).double().numpy()
                               for i in range(0, len(images), batch)])

    @torch.no_grad()
    def predict_members(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        """(K, N, neurons) float64 predictions of every member."""
        self.eval()
        return np.concatenate([self.member_outputs(to_tensor(images[i:i + batch])).double().numpy()
                               for i in range(0, len(images), batch)], axis=1)


class Ensemble(PopulationPredictions, nn.Module):
    """The mean of several population models; ``member_outputs`` keeps them apart."""

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    @property
    def num_neurons(self) -> int:
        return int(self.members[0].bias.shape[0])

    def member_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """(K, N, neurons) predictions of every member."""
        return torch.stack([m(x) for m in self.members])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_outputs(x).mean(0)
