"""A transfer teacher: a frozen pretrained trunk and readouts fitted to one session's neurons.

The trunk is layers 0-4 of one of the authors' shared compact models (distilled from their
ResNet50-feature ensemble; :func:`~compactcortex.models.keras_files.load_keras`), giving a
(C, 28, 28) map per image. Each of ``members`` readouts maps it to every neuron's response:

* ``"factorised"``: per neuron a spatial mask times feature weights (C) plus a bias (Klindt et
  al., NeurIPS 2017), fitted by alternating ridge regressions;
* ``"ridge"``: per neuron a dense linear map, fitted in closed form.

Both read the map average-pooled by ``pool`` (a (28/pool)^2 grid) and choose their ridge
penalties per neuron by exact leave-one-out error.

Members differ by the images they were fitted on, so their spread is the ensemble disagreement
that :func:`~compactcortex.fit.active.select_images` uses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..constants import MAP_SIZE
from .compact import CompactModel
from .teacher import PopulationPredictions

__all__ = ["TransferTeacher", "trunk_of", "empty_trunk", "factorised_readout", "READOUTS"]

READOUTS = ("factorised", "ridge")


def empty_trunk(nums_filters, bn_eps, dtype: torch.dtype = torch.float32, mean=None, relu: bool = True) -> CompactModel:
    """A CompactModel's layers 0-4 without readout (used only through ``features``), frozen;
    its weights are to be loaded."""
    trunk = CompactModel(nums_filters, bn_eps) if mean is None else CompactModel(nums_filters, bn_eps, mean)
    del trunk.readout
    trunk.relu = relu
    trunk.to(dtype)
    for p in trunk.parameters():
        p.requires_grad_(False)
    return trunk.eval()


def trunk_of(model: CompactModel) -> CompactModel:
    """Layers 0-4 of ``model`` (a CompactModel or SharedCompactModel) as a frozen trunk."""
    trunk = empty_trunk(model.nums_filters, model.bn_eps, next(model.parameters()).dtype, model.mean, model.relu)
    trunk.load_state_dict({n: v for n, v in model.state_dict().items() if n.startswith("layer")})
    trunk.provenance = dict(model.provenance)
    return trunk


def factorised_readout(f: torch.Tensor, mask: torch.Tensor, feature_weights: torch.Tensor) -> torch.Tensor:
    """Pooled maps (N, C, P), masks (K, J, P) and feature weights (K, J, C) -> (K, N, J):
    ``sum_c feature_weights[k,j,c] sum_p mask[k,j,p] f[n,c,p]``."""
    spatial = torch.einsum("ncp,kjp->knjc", f, mask)
    return (spatial * feature_weights[:, None]).sum(-1)


class TransferTeacher(PopulationPredictions, nn.Module):
    """A frozen trunk and ``members`` readouts of ``n_neurons`` neurons each.

    Args:
        trunk: from :func:`trunk_of`; kept in eval mode and never trained.
        n_neurons, members: readout outputs, and how many independently fitted readouts.
        readout: ``"factorised"`` or ``"ridge"`` (see the module docstring).
        pool: the map is average-pooled by this factor before the readout.
        response_mean, response_std: (n_neurons,) readouts predict standardised responses;
            ``forward`` returns them in these units (spike counts per 100 ms bin).

    ``forward(x)``: (N, 3, 112, 112) recentred pixels -> (N, n_neurons), the members' mean;
    ``member_outputs(x)``: (members, N, n_neurons).
    """

    def __init__(self, trunk: CompactModel, n_neurons: int, members: int = 4, readout: str = "factorised",
                 pool: int = 2, response_mean=None, response_std=None) -> None:
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        if members < 1 or n_neurons < 1:
            raise ValueError(f"need members >= 1 and n_neurons >= 1, got {members}, {n_neurons}")
        if MAP_SIZE % pool:
            raise ValueError(f"pool must divide {MAP_SIZE}, got {pool}")
        self.trunk, self.readout_kind, self.pool = trunk.eval(), readout, int(pool)
        c, cells = trunk.nums_filters[4], (MAP_SIZE // self.pool) ** 2
        if readout == "factorised":
            self.mask = nn.Parameter(torch.zeros(members, n_neurons, cells))
            self.feature_weights = nn.Parameter(torch.zeros(members, n_neurons, c))
        else:
            self.weight = nn.Parameter(torch.zeros(members, n_neurons, c * cells))
        self.bias = nn.Parameter(torch.zeros(members, n_neurons))
        mean = torch.zeros(n_neurons) if response_mean is None else torch.as_tensor(response_mean, dtype=torch.float32)
        std = torch.ones(n_neurons) if response_std is None else torch.as_tensor(response_std, dtype=torch.float32)
        self.register_buffer("response_mean", mean.clone())
        self.register_buffer("response_std", std.clone())
        #: Optional fast path for :meth:`features`: a callable (N, 3, 112, 112) float32 tensor ->
        #: (N, 28, 28, C) array, e.g. the C++ engine's (``fit.transfer.use_engine``).
        self.feature_engine = None

    @property
    def num_members(self) -> int:
        return self.bias.shape[0]

    @property
    def num_neurons(self) -> int:
        return self.bias.shape[1]

    def train(self, mode: bool = True) -> "TransferTeacher":
        super().train(mode)
        self.trunk.eval()  # frozen: batchnorm keeps its statistics
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's map (N, C, 28, 28) for recentred images (N, 3, 112, 112)."""
        if self.feature_engine is not None and x.device.type == "cpu":
            maps = self.feature_engine(x.detach().float().contiguous())
            return torch.from_numpy(maps).permute(0, 3, 1, 2)
        with torch.no_grad():
            return self.trunk.features(x.to(next(self.trunk.parameters()).dtype)).float()

    def pooled(self, f: torch.Tensor) -> torch.Tensor:
        """(N, C, 28, 28) maps -> (N, C, P) readout inputs, P = (28 / pool)^2 cells."""
        return (F.avg_pool2d(f, self.pool) if self.pool > 1 else f).flatten(2)

    def standardised_from_features(self, f: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Standardised predictions (members, N, neurons) from maps (N, C, 28, 28); one member's
        (N, neurons) with ``member``."""
        sl = slice(None) if member is None else slice(member, member + 1)
        if self.readout_kind == "factorised":
            out = factorised_readout(self.pooled(f), self.mask[sl], self.feature_weights[sl])
        else:
            out = torch.einsum("nd,kjd->knj", self.pooled(f).flatten(1), self.weight[sl])
        out = out + self.bias[sl][:, None]
        return out if member is None else out[0]

    def member_outputs(self, x: torch.Tensor) -> torch.Tensor:
        return self.standardised_from_features(self.features(x)) * self.response_std + self.response_mean

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.member_outputs(x).mean(0)
