"""A trunk: one compact-architecture core shared by the neurons of many recording sessions.

The core is layers 0-4 of a :class:`~compactcortex.models.compact.CompactModel` (any width),
giving a (C, 28, 28) map per image; every session has a factorised readout per neuron (a spatial
mask over the 28x28 positions times C feature weights, plus a bias; Klindt et al., NeurIPS 2017)
that predicts the neuron's standardised response. Trained by :func:`~compactcortex.fit.trunk.fit_trunk`,
its core then serves as the backbone of a transfer teacher on any new session
(``fit_teacher(session, backbone=FILE)``), exactly as the authors' shared compact models do.

A factorised readout is linear in the map: neuron k's output is ``<R_k, map> + b_k`` with the
rank-1 dense readout ``R_k = mask_k (outer) features_k`` in (H, W, C) order. The core therefore
trains through the C++ kernels with that dense readout (``engine_forward(..., readout=)``), and
the gradients of ``R`` flow back into the masks and feature weights by autograd.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..constants import DATASET_MEAN, MAP_SIZE
from ..files import (TRUNK_FORMAT, atomic_path, checked_name, meta_floats, meta_int, meta_ints, meta_json,
                     read_safetensors_meta)
from .compact import KERAS_BN_EPS, CompactModel, build_within_file, load_state_checked

__all__ = ["FactorisedReadout", "Trunk", "save_trunks", "load_trunks", "core_of"]

CELLS = MAP_SIZE * MAP_SIZE


class FactorisedReadout(nn.Module):
    """Readouts of one session's K neurons from a (C, 28, 28) map.

    Parameters: ``mask`` (K, P) over the map average-pooled by ``pool`` (P = (28 / pool)^2 cells
    in (H, W) order: fewer parameters per neuron than positions), ``features`` (K, C), ``bias`` (K,).
    Buffers: ``response_mean``, ``response_std`` (K,): the readout predicts standardised
    responses; these give them back in spike counts per 100 ms bin.
    """

    def __init__(self, n_neurons: int, channels: int, response_mean=None, response_std=None, pool: int = 2) -> None:
        super().__init__()
        if n_neurons < 1 or channels < 1:
            raise ValueError(f"need n_neurons >= 1 and channels >= 1, got {n_neurons}, {channels}")
        if pool < 1 or MAP_SIZE % pool:
            raise ValueError(f"pool must divide {MAP_SIZE}, got {pool}")
        self.pool = int(pool)
        cells = (MAP_SIZE // self.pool) ** 2
        # Positive masks spread over the map, small random features: every position starts
        # contributing and the L1 penalty shrinks the masks to each neuron's receptive field.
        self.mask = nn.Parameter(torch.full((n_neurons, cells), 1.0 / cells))
        self.features = nn.Parameter(torch.randn(n_neurons, channels) / channels ** 0.5)
        self.bias = nn.Parameter(torch.zeros(n_neurons))
        mean = torch.zeros(n_neurons) if response_mean is None else torch.as_tensor(response_mean, dtype=torch.float32)
        std = torch.ones(n_neurons) if response_std is None else torch.as_tensor(response_std, dtype=torch.float32)
        self.register_buffer("response_mean", mean.clone())
        self.register_buffer("response_std", std.clone())

    @property
    def num_neurons(self) -> int:
        return self.bias.shape[0]

    def full_mask(self) -> torch.Tensor:
        """The mask on the 28x28 positions (K, 784): each cell's weight spread over its pool x pool
        positions (the average pooling folded in)."""
        k, side = self.mask.shape[0], MAP_SIZE // self.pool
        m = self.mask.view(k, side, 1, side, 1).expand(k, side, self.pool, side, self.pool)
        return m.reshape(k, CELLS) / self.pool ** 2

    def dense(self) -> torch.Tensor:
        """The equivalent dense readout (K, 28*28*C), flattened in (H, W, C) order."""
        return (self.full_mask()[:, :, None] * self.features[:, None, :]).flatten(1)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Maps (N, C, 28, 28) -> standardised predictions (N, K)."""
        pooled = torch.nn.functional.avg_pool2d(maps, self.pool) if self.pool > 1 else maps
        spatial = torch.einsum("ncp,kp->nkc", pooled.flatten(2), self.mask)
        return (spatial * self.features).sum(-1) + self.bias

    def penalty(self) -> torch.Tensor:
        """Sparsity penalty: mean over neurons of |mask|_1 * |features|_1 / C (scale-free in the
        split of a neuron's gain between mask and features)."""
        return (self.mask.abs().sum(1) * self.features.abs().sum(1)).mean() / self.features.shape[1]


class Trunk(nn.Module):
    """A shared core and one :class:`FactorisedReadout` per session.

    Args:
        nums_filters: the core's filter counts (n0..n4).
        sessions: {session name: (neurons, response_mean (K,), response_std (K,))}.
        bn_eps: batchnorm epsilon of every layer (Keras's 1e-3 by default).
        readout_pool: the readouts' masks cover the map average-pooled by this factor.

    ``forward(x, session)``: recentred images (N, 3, 112, 112) -> standardised predictions
    (N, K) of that session's neurons; ``predict_session`` gives spike counts. With
    ``core.backend == "engine"`` (the default) the core runs on the C++ training kernels.
    """

    def __init__(self, nums_filters: Sequence[int], sessions: dict, bn_eps: float | Sequence[float] = KERAS_BN_EPS,
                 mean: Sequence[float] = DATASET_MEAN, readout_pool: int = 2) -> None:
        super().__init__()
        if not sessions:
            raise ValueError("a trunk needs at least one session")
        self.core = core_of(CompactModel(nums_filters, bn_eps, mean, backend="engine"))
        c = self.core.nums_filters[4]
        self.readout_pool = int(readout_pool)
        self.readouts = nn.ModuleDict({checked_name(name, "session name"): FactorisedReadout(k, c, m, s, readout_pool)
                                       for name, (k, m, s) in sessions.items()})
        self.provenance: dict = {}

    @property
    def sessions(self) -> list[str]:
        return list(self.readouts.keys())

    @property
    def max_neurons(self) -> int:
        return max(r.num_neurons for r in self.readouts.values())

    @property
    def nums_filters(self) -> tuple[int, ...]:
        return self.core.nums_filters

    def readout(self, session: str) -> FactorisedReadout:
        try:
            return self.readouts[str(session)]
        except KeyError:
            raise ValueError(f"the trunk has no readout for session {session!r} (it has {', '.join(self.sessions)})") from None

    def forward(self, x: torch.Tensor, session: str) -> torch.Tensor:
        ro = self.readout(session)
        if self.core.backend == "engine":
            from .engine_backend import engine_forward, engine_usable

            if engine_usable(self.core, x):
                # Every session's readout padded to the largest one's rows: one C++ trainer
                # (and one set of workspaces) serves all sessions.
                k, pad = ro.num_neurons, self.max_neurons - ro.num_neurons
                weight, bias = ro.dense(), ro.bias
                if pad:
                    weight = torch.cat([weight, weight.new_zeros(pad, weight.shape[1])])
                    bias = torch.cat([bias, bias.new_zeros(pad)])
                return engine_forward(self.core, x, (weight, bias))[:, :k]
        return ro(self.core.features(x))

    @torch.no_grad()
    def predict_session(self, x: torch.Tensor, session: str) -> torch.Tensor:
        """Responses (N, K) in spike counts per 100 ms bin (eval mode)."""
        ro = self.readout(session)
        return self(x, session) * ro.response_std + ro.response_mean


def core_of(model: CompactModel) -> CompactModel:
    """``model`` without its readout (layers 0-4 only)."""
    if hasattr(model, "readout"):
        del model.readout
    return model


def save_trunks(trunks: Sequence[Trunk], path: str | Path, info: dict | None = None) -> None:
    """Write the members of a trunk ensemble to one safetensors file (atomic)."""
    from safetensors.torch import save_file

    if not trunks:
        raise ValueError("no trunks to save")
    first = trunks[0]
    sessions = {s: first.readout(s).num_neurons for s in first.sessions}
    for t in trunks:
        if (t.nums_filters != first.nums_filters or t.readout_pool != first.readout_pool
                or {s: t.readout(s).num_neurons for s in t.sessions} != sessions):
            raise ValueError("the members of a trunk ensemble must have the same filters and sessions")
    meta = {"format": TRUNK_FORMAT, "members": str(len(trunks)), "nums_filters": json.dumps(list(first.nums_filters)),
            "bn_eps": json.dumps(list(first.core.bn_eps)), "mean": json.dumps(list(first.core.mean)),
            "sessions": json.dumps(sessions), "provenance": json.dumps(first.provenance),
            "readout_pool": str(first.readout_pool),
            "info": json.dumps(info or {})}
    tensors = {f"member{k}.{name}": v.detach().cpu().contiguous()
               for k, t in enumerate(trunks) for name, v in t.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_trunks(path: str | Path) -> tuple[list[Trunk], dict]:
    """The members written by :func:`save_trunks` and the file's ``info`` record.

    Raises:
        ValueError: a foreign or corrupt file (naming it and the problem).
    """
    from safetensors import safe_open

    meta = read_safetensors_meta(path, TRUNK_FORMAT)
    members = meta_int(meta, "members", path, 1, 1000)
    n = meta_ints(meta, "nums_filters", path, 5, 1, 4096)
    eps = meta_floats(meta, "bn_eps", path, 5, 0.0, 1.0)
    mean = meta_floats(meta, "mean", path, 3, -1e3, 1e3)
    pool = meta_int(meta, "readout_pool", path, 1, MAP_SIZE, default=1)
    sessions, info, prov = (meta_json(meta, "sessions", path), meta_json(meta, "info", path, default={}),
                            meta_json(meta, "provenance", path, default={}))
    if not (isinstance(sessions, dict) and sessions and all(type(k) is int and 1 <= k <= 1_000_000
                                                            for k in sessions.values())):
        raise ValueError(f"{path}: metadata sessions={str(sessions)[:60]}; expected {{session: neurons >= 1}}")
    if not (isinstance(info, dict) and isinstance(prov, dict)):
        raise ValueError(f"{path}: metadata info and provenance must be JSON objects")
    spec = {checked_name(s, "session"): (k, None, None) for s, k in sessions.items()}
    try:
        trunks = [build_within_file(lambda: Trunk(n, spec, eps, mean, pool), path) for _ in range(members)]
    except ValueError as e:  # Trunk's own checks (a pool that does not divide the map, ...)
        raise ValueError(f"{path}: corrupt trunk metadata ({e})") from None
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors' own errors for damaged tensors
        raise ValueError(f"{path}: unreadable tensors ({str(e)[:200]})") from None
    for k, t in enumerate(trunks):
        prefix = f"member{k}."
        mine = {name[len(prefix):]: v for name, v in state.items() if name.startswith(prefix)}
        load_state_checked(t, mine, str(path))
        t.provenance = dict(prov)
        t.eval()
    expected = {f"member{k}.{name}" for k, t in enumerate(trunks) for name in t.state_dict()}
    extra = sorted(set(state) - expected)
    if extra:
        raise ValueError(f"{path}: unexpected key {extra[0]!r}")
    return trunks, info
