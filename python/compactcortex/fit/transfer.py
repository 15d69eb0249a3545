"""Fit a :class:`~compactcortex.models.transfer.TransferTeacher`: readouts on a frozen trunk.

The trunk's maps of the training images are computed once; every member's readout is then
fitted on them alone (the trunk never runs again), so fitting takes seconds to minutes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..constants import MAP_SIZE
from ..data.session import Session
from ..models.compact import CompactModel
from ..models.image_tensor import to_tensor
from ..models.transfer import TransferTeacher, trunk_of
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["fit_transfer_teacher", "resolve_backbone", "trunk_features", "use_engine"]

# Ridge penalties tried, relative to the mean eigenvalue of the image-by-image Gram matrix.
_RIDGE_ALPHAS = np.logspace(-3, 2, 16)


def resolve_backbone(backbone: str | Path | CompactModel, data_root: str | Path | None = None,
                     member: int = 0) -> CompactModel:
    """A trunk from a loaded model, a ``.keras`` path, a trunk file of :func:`~compactcortex.fit.trunk.fit_trunk`
    (its member ``member``), or a name ``"shared_compact_<N>"`` (the shared compact model with N
    filters in layers 0-2, looked up under ``data_root``)."""
    from ..models.keras_files import load_keras, shared_model_filters, shared_model_path
    from ..models.trunk import load_trunks

    if isinstance(backbone, CompactModel):
        return trunk_of(backbone)
    if Path(backbone).is_file() and Path(backbone).suffix != ".keras":  # a trunk file (else a clear error)
        trunks, _ = load_trunks(backbone)
        if not 0 <= member < len(trunks):
            raise ValueError(f"{backbone}: has {len(trunks)} member(s); member {member} asked for")
        core = trunk_of(trunks[member].core)
        core.provenance = {**trunks[member].provenance, "trunk_file": Path(backbone).name}
        return core
    filters = shared_model_filters(backbone)
    if filters is not None:
        if data_root is None:
            raise ValueError(f"backbone {backbone!r} is looked up in a data root; pass data_root=")
        return trunk_of(load_keras(shared_model_path(data_root, filters)))
    return trunk_of(load_keras(backbone))


def use_engine(teacher: TransferTeacher, threads: int | None = None) -> TransferTeacher:
    """Compute ``teacher``'s trunk maps with the C++ engine from now on (same numbers as the
    PyTorch trunk to float32 rounding, several times faster); returns the teacher. Without the
    compiled module, or for a linear trunk (no ReLUs), the teacher keeps its PyTorch path."""
    if not teacher.trunk.relu:
        return teacher
    try:
        from ..engine.compile import compile
        from ..engine.features import TrunkFeatures
    except ImportError:
        return teacher
    old = teacher.feature_engine  # the trunk is frozen: a second call (other threads) keeps its plan
    plan = old.plan if isinstance(old, TrunkFeatures) else compile(teacher.trunk, drop_dead_channels=False)
    teacher.feature_engine = TrunkFeatures(plan, threads)
    return teacher


@torch.no_grad()
def trunk_features(trunk: CompactModel, images: np.ndarray, batch: int = 32, progress: bool = True,
                   threads: int | None = None) -> torch.Tensor:
    """The trunk's maps (N, C, 28, 28) float32 of (N,112,112,3) uint8 images, from the C++
    engine where it is built (else PyTorch)."""
    return _maps(use_engine(TransferTeacher(trunk, 1, 1), threads), images, batch, progress)


def _maps(teacher: TransferTeacher, images: np.ndarray, batch: int = 32, progress: bool = True) -> torch.Tensor:
    """``teacher.features`` (N, C, 28, 28) of (N,112,112,3) uint8 images, in batches."""
    chunks = [teacher.features(to_tensor(images[i:i + batch]))
              for i in tqdm(range(0, len(images), batch), desc="trunk features", unit="batch", disable=not progress)]
    return torch.cat(chunks)


def _ridge(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ridge regression of each target on its inputs, the penalty chosen per target by its exact
    leave-one-out error (through the SVD of the centred inputs).

    x: (n, d) inputs shared by all J targets, or (J, n, d) one design per target; y: (n, J).
    Returns weights (J, d), biases (J,) and the chosen penalties (J,), float64.
    """
    x, y = x.double(), y.double()
    shared = x.dim() == 2
    xb = x[None] if shared else x                                        # (B, n, d)
    xm, ym = xb.mean(1, keepdim=True), y.mean(0)
    yb = (y - ym)[None] if shared else (y - ym).T[..., None]             # (B, n, T)
    u, sv, vh = torch.linalg.svd(xb - xm, full_matrices=False)           # (B,n,r) (B,r) (B,r,d)
    s2 = (sv ** 2)[..., None]                                            # (B, r, 1)
    uty = u.transpose(1, 2) @ yb                                         # (B, r, T)
    scale = s2.mean(1, keepdim=True)                                     # (B, 1, 1)
    best_err = torch.full(uty[:, :1].shape, float("inf"), dtype=torch.float64)   # (B, 1, T)
    best_a = torch.zeros_like(best_err)
    for rel in _RIDGE_ALPHAS:
        a = rel * scale
        shrink = s2 / (s2 + a)                                           # (B, r, 1)
        hat = (u ** 2) @ shrink + 1 / u.shape[1]                         # (B, n, 1): hat diagonal, with the mean
        err = (((yb - u @ (shrink * uty)) / (1 - hat).clamp_min(1e-9)) ** 2).mean(1, keepdim=True)
        better = err < best_err
        best_err, best_a = torch.where(better, err, best_err), torch.where(better, a.expand_as(best_a), best_a)
    # w = V diag(s / (s^2 + a)) U^T y, with each target's own penalty a.
    w = vh.transpose(1, 2) @ (sv[..., None] / (s2 + best_a) * uty)       # (B, d, T)
    w = w[0].T if shared else w[..., 0]                                  # (J, d)
    xm = xm[0, 0] if shared else xm[:, 0]                                # (d,) | (J, d)
    return w, ym - (w * xm).sum(-1), best_a.flatten()


def _fit_factorised(f: torch.Tensor, y: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Factorised readout by alternating ridge regressions (each penalty chosen by leave-one-out).

    f: (n, C, P) pooled maps, y: (n, J). Starts from the best rank-1 approximation of a full ridge
    readout, then alternates: feature weights with the masks fixed, masks with the weights fixed.
    Returns masks (J, P), feature weights (J, C), biases (J,).
    """
    n, c, p = f.shape
    w, b, _ = _ridge(f.reshape(n, c * p), y)
    uu, ss, vv = torch.linalg.svd(w.view(-1, c, p), full_matrices=False)
    feat, mask = uu[:, :, 0] * ss[:, :1].sqrt(), vv[:, 0, :] * ss[:, :1].sqrt()
    fd = f.double()
    for _ in range(iters):
        feat, b, _ = _ridge(torch.einsum("ncp,jp->jnc", fd, mask), y)
        mask, b, _ = _ridge(torch.einsum("ncp,jc->jnp", fd, feat), y)
    return mask.float(), feat.float(), b.float()


def fit_transfer_teacher(
    session: Session,
    backbone: str | Path | CompactModel,
    members: int = 4,
    indices: np.ndarray | None = None,
    readout: str = "factorised",
    subsample: float = 0.9,
    pool: int = 2,
    iters: int = 1,
    seed: int = 0,
    data_root: str | Path | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    features: torch.Tensor | None = None,
    threads: int | None = None,
) -> TransferTeacher:
    """Fit ``members`` readouts of every neuron of ``session`` on a frozen pretrained trunk.

    Args:
        session: responses (neurons, N) and images; ``indices`` (default: the fit half) are the
            training images, of which each member is fitted on a random ``subsample`` (so that
            members differ).
        backbone: see :func:`resolve_backbone`.
        readout: ``"ridge"`` or ``"factorised"`` (``iters`` rounds of alternating ridge), on the
            map average-pooled by ``pool``; penalties by leave-one-out error per neuron.
        checkpoint_dir: finished members are saved there and reused by a rerun.
        features: the trunk's maps of ``session.images[indices]`` (:func:`trunk_features`),
            when already computed (e.g. to compare readouts on one trunk).
        threads: the C++ engine's threads for the trunk's maps (:func:`use_engine`).

    Returns:
        The teacher in eval mode (its ``fit_info`` records the readout and, for ridge, the
        chosen penalties).
    """
    idx = session.fit_indices if indices is None else np.asarray(indices)
    if len(idx) < 10:
        raise ValueError(f"a transfer teacher needs at least 10 training images, got {len(idx)}")
    trunk = resolve_backbone(backbone, data_root)
    y_all = torch.as_tensor(session.responses[:, idx].T, dtype=torch.float32)
    mean, std = y_all.mean(0), y_all.std(0).clamp_min(1e-6)
    ys = (y_all - mean) / std
    teacher = TransferTeacher(trunk, session.num_neurons, members, readout, pool, mean, std)
    use_engine(teacher, threads)  # compiled once: the maps below and the teacher's later labelling
    feats = _maps(teacher, session.images[idx], progress=progress) if features is None else features
    if feats.shape != (len(idx), trunk.nums_filters[4], MAP_SIZE, MAP_SIZE):
        raise ValueError(f"features must be ({len(idx)}, {trunk.nums_filters[4]}, 28, 28) for these images and "
                         f"this trunk, got {tuple(feats.shape)}")
    penalties = []
    run = {"readout": readout, "pool": int(pool), "iters": int(iters), "subsample": float(subsample),
           "seed": int(seed), "images": [int(i) for i in idx], "neurons": session.num_neurons,
           "trunk": list(trunk.nums_filters)}
    for k in tqdm(range(members), desc=f"{readout} readouts", unit="member", disable=not progress):
        ckpt = Path(checkpoint_dir) / f"readout{k}.pt" if checkpoint_dir else None
        state = load_checkpoint(ckpt, run) if ckpt else None
        if state is None:
            g = torch.Generator().manual_seed(seed * 1000 + k)
            perm = torch.randperm(len(idx), generator=g)
            tr = perm[:max(2, int(round(subsample * len(idx))))] if subsample < 1 else perm
            f = teacher.pooled(feats[tr])
            if readout == "ridge":
                w, b, alpha = _ridge(f.flatten(1), ys[tr])
                state = {"weight": w.float(), "bias": b.float(), "alpha": alpha}
            else:
                mask, feat, b = _fit_factorised(f, ys[tr], iters)
                state = {"mask": mask, "feature_weights": feat, "bias": b}
            if ckpt:
                save_checkpoint(ckpt, state, run)
        with torch.no_grad():
            if readout == "ridge":
                teacher.weight[k] = state["weight"]
                penalties.append(state["alpha"].tolist())
            else:
                teacher.mask[k] = state["mask"]
                teacher.feature_weights[k] = state["feature_weights"]
            teacher.bias[k] = state["bias"]
    teacher.fit_info = {"readout": readout, "members": members, "images": len(idx), "ridge_penalties": penalties}
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()
