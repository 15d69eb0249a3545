"""fit_teacher: an ensemble of population CNNs fitted to a session's responses."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .._atomic import atomic_path
from ..data.session import Session
from ..models.teacher import Ensemble, TeacherCNN, to_tensor
from .loop import TrainConfig, train

__all__ = ["fit_teacher", "save_teacher", "load_teacher"]

FORMAT = "compactcortex.Ensemble/1"


def fit_teacher(
    session: Session,
    n_members: int = 4,
    indices: np.ndarray | None = None,
    val_fraction: float = 0.1,
    config: TrainConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> Ensemble:
    """Fit ``n_members`` :class:`TeacherCNN` s to all neurons of ``session`` and average them.

    Each member trains on the images ``indices`` (default: the session's fit half) minus a
    validation share (``val_fraction``, chosen by the member's seed) used for early stopping;
    members differ by seed (initialisation, validation split, batch order). With
    ``checkpoint_dir``, every member checkpoints each epoch and finished members are kept, so an
    interrupted fit resumes where it stopped with the same result.
    """
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


def save_teacher(ensemble: Ensemble, path: str | Path) -> None:
    """Save an ensemble of :class:`TeacherCNN` (safetensors + JSON metadata, atomic)."""
    from safetensors.torch import save_file

    n = int(ensemble.members[0].bias.shape[0])
    meta = {"format": FORMAT, "n_members": str(len(ensemble.members)), "n_neurons": str(n)}
    with atomic_path(path) as tmp:
        save_file({k: v.contiguous() for k, v in ensemble.state_dict().items()}, str(tmp), metadata=meta)


def load_teacher(path: str | Path) -> Ensemble:
    """Load an ensemble written by :func:`save_teacher`. Raises ValueError for a foreign file."""
    from safetensors.torch import load_file

    from ..engine.plan import read_safetensors_meta

    meta = read_safetensors_meta(path, FORMAT)
    ens = Ensemble([TeacherCNN(int(meta["n_neurons"])) for _ in range(int(meta["n_members"]))])
    try:
        ens.load_state_dict(load_file(str(path)))
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the ensemble architecture ({e})") from None
    return ens.eval()
