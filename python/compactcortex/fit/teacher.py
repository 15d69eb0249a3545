"""fit_teacher: a teacher of a session's whole population, from scratch or on a pretrained trunk.

From scratch, an ensemble of small population CNNs (:class:`TeacherCNN`); with ``backbone``, a
:class:`~compactcortex.models.transfer.TransferTeacher` (readouts fitted on a frozen trunk of the
authors' shared compact model; far better with a session's few hundred images).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..constants import MAP_SIZE
from ..files import (ENSEMBLE_FORMAT, TRANSFER_TEACHER_FORMAT, atomic_path, meta_choice, meta_floats, meta_int,
                     meta_ints, meta_json, read_safetensors_meta)
from ..data.session import Session
from ..models.compact import build_within_file
from ..models.teacher import Ensemble, TeacherCNN
from ..models.image_tensor import to_tensor
from ..models.transfer import TransferTeacher, empty_trunk
from .training import TrainConfig, train

__all__ = ["fit_teacher", "save_teacher", "load_teacher"]



def fit_teacher(
    session: Session,
    n_members: int = 4,
    indices: np.ndarray | None = None,
    val_fraction: float = 0.1,
    config: TrainConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    backbone: str | Path | None = None,
    data_root: str | Path | None = None,
    readout: str = "factorised",
) -> Ensemble | TransferTeacher:
    """Fit a teacher of all neurons of ``session``: from scratch, or on a pretrained trunk.

    With ``backbone`` (a ``.keras`` path, a loaded model, or ``"shared_compact_<N>"`` looked up
    under ``data_root``) this is :func:`~compactcortex.fit.transfer.fit_transfer_teacher` with
    ``n_members`` readouts (``config`` is not used). Without, ``n_members`` :class:`TeacherCNN` s
    are trained and averaged, as follows.

    Each member trains on the images ``indices`` (default: the session's fit half) minus a
    validation share (``val_fraction``, chosen by the member's seed) used for early stopping;
    members differ by seed (initialisation, validation split, batch order). With
    ``checkpoint_dir``, every member checkpoints each epoch and finished members are kept, so an
    interrupted fit resumes where it stopped with the same result.
    """
    if backbone is not None:
        from .transfer import fit_transfer_teacher

        return fit_transfer_teacher(session, backbone, n_members, indices, readout, data_root=data_root,
                                    checkpoint_dir=checkpoint_dir, progress=progress)
    cfg = config or TrainConfig()
    idx = session.fit_indices if indices is None else np.asarray(indices)
    if len(idx) < 10:
        raise ValueError(f"fit_teacher needs at least 10 training images, got {len(idx)}")
    x_all = to_tensor(session.images[idx])
    y_all = torch.as_tensor(session.responses[:, idx].T, dtype=torch.float32)  # (N, neurons)
    mean, std = y_all.mean(0), y_all.std(0).clamp_min(1e-6)
    members = []
    bar = tqdm(range(n_members), desc="teacher members", unit="member", disable=not progress)
    for k in bar:
        seed = cfg.seed * 1000 + k
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(idx), generator=g)
        n_val = max(1, int(round(val_fraction * len(idx))))
        val, tr = perm[:n_val], perm[n_val:]
        torch.manual_seed(seed)
        model = TeacherCNN(session.num_neurons, mean, std)
        ys = (y_all - mean) / std
        ckpt = Path(checkpoint_dir) / f"member{k}.pt" if checkpoint_dir else None

        def loss_fn(m, b, tr=tr, ys=ys):
            sel = tr[b]
            return torch.mean((m.standardised(x_all[sel]) - ys[sel]) ** 2)

        def val_loss(m, val=val, ys=ys):
            return float(torch.mean((m.standardised(x_all[val]) - ys[val]) ** 2))

        info = train(model, loss_fn, len(tr), val_loss, TrainConfig(**{**cfg.__dict__, "seed": seed}), ckpt,
                     progress=lambda e, tl, vl: bar.set_postfix(member=k, epoch=e, train=f"{tl:.3f}", val=f"{vl:.3f}"))
        model.fit_info = info
        members.append(model)
    return Ensemble(members).eval()


def save_teacher(teacher: Ensemble | TransferTeacher, path: str | Path) -> None:
    """Save a teacher from :func:`fit_teacher` (safetensors + JSON metadata, atomic)."""
    from safetensors.torch import save_file

    if isinstance(teacher, TransferTeacher):
        t = teacher.trunk
        meta = {"format": TRANSFER_TEACHER_FORMAT, "n_members": str(teacher.num_members), "n_neurons": str(teacher.num_neurons),
                "readout": teacher.readout_kind, "pool": str(teacher.pool), "nums_filters": json.dumps(list(t.nums_filters)),
                "bn_eps": json.dumps(list(t.bn_eps)), "trunk_dtype": str(next(t.parameters()).dtype).removeprefix("torch."),
                "provenance": json.dumps(t.provenance),
                "trunk_activation": "relu" if t.relu else "linear"}
    else:
        meta = {"format": ENSEMBLE_FORMAT, "n_members": str(len(teacher.members)), "n_neurons": str(teacher.num_neurons)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in teacher.state_dict().items()}, str(tmp), metadata=meta)


def load_teacher(path: str | Path) -> Ensemble | TransferTeacher:
    """Load a teacher written by :func:`save_teacher`.

    Every metadata entry is checked for type and range and every tensor for shape, real float
    values, finiteness and ``response_std`` > 0 before the teacher is used.

    Raises:
        ValueError: a foreign, corrupt or inconsistent file (naming it and the entry or key).
    """
    from safetensors.torch import load_file

    from ..models.compact import load_state_checked
    from ..models.transfer import READOUTS

    meta = read_safetensors_meta(path, (ENSEMBLE_FORMAT, TRANSFER_TEACHER_FORMAT))
    members = meta_int(meta, "n_members", path, 1, 1000)
    n = meta_int(meta, "n_neurons", path, 1, 1_000_000)
    if meta["format"] == ENSEMBLE_FORMAT:
        teacher = build_within_file(lambda: Ensemble([TeacherCNN(n) for _ in range(members)]), path)
    else:
        nums = meta_ints(meta, "nums_filters", path, 5, 1, 4096)
        eps = meta_floats(meta, "bn_eps", path, 5, 0.0, 1.0)
        dtype = getattr(torch, meta_choice(meta, "trunk_dtype", path, ("float32", "float64")))
        relu = meta_choice(meta, "trunk_activation", path, ("relu", "linear"), default="relu") == "relu"
        readout = meta_choice(meta, "readout", path, READOUTS)
        pool = meta_int(meta, "pool", path, 1, MAP_SIZE)
        if MAP_SIZE % pool:
            raise ValueError(f"{path}: metadata pool={pool} does not divide the {MAP_SIZE}x{MAP_SIZE} map")
        provenance = meta_json(meta, "provenance", path, default={})
        if not isinstance(provenance, dict):
            raise ValueError(f"{path}: metadata provenance is not a JSON object")
        teacher = build_within_file(lambda: TransferTeacher(empty_trunk(nums, eps, dtype, relu=relu), n, members,
                                                            readout, pool), path)
        teacher.trunk.provenance = provenance
    try:
        state = load_file(str(path))
    except Exception as e:  # safetensors' own errors for damaged tensors
        raise ValueError(f"{path}: unreadable tensors ({str(e)[:200]})") from None
    load_state_checked(teacher, state, str(path), cast=False)
    if isinstance(teacher, TransferTeacher):
        from .transfer import use_engine

        use_engine(teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()
