"""fit_trunk: one core trained on the recordings of many sessions at once (the paper's first step).

Every session gets a factorised readout per neuron (:class:`~compactcortex.models.trunk.Trunk`);
each step draws a batch of one session's images and scores it only against that session's
neurons (mean squared error of standardised responses plus an L1 penalty on the readouts), and
the steps of all sessions are interleaved in a seeded random order. The core runs forward and
backward on the C++ training kernels. A share of each session's images is held out: the median
held-out correlation over all neurons picks the best epoch and stops training early.

The trained core is a backbone for new sessions: ``fit_teacher(session, backbone=FILE)`` fits
readouts on it (:func:`~compactcortex.fit.transfer.fit_transfer_teacher`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.session import Session
from ..metrics import pearson_r
from ..models.image_tensor import to_tensor
from ..models.trunk import Trunk, save_trunks
from .checkpoint import load_checkpoint, save_checkpoint
from .trunk_config import DEFAULT_TRUNK_FILTERS, TrunkConfig

__all__ = ["TrunkConfig", "fit_trunk", "DEFAULT_TRUNK_FILTERS"]

def _check_sessions(sessions: Sequence[Session]) -> None:
    if not sessions:
        raise ValueError("fit_trunk needs at least one session")
    names = [s.name for s in sessions]
    if len(set(names)) != len(names):
        raise ValueError(f"sessions given twice: {sorted({n for n in names if names.count(n) > 1})}")
    for s in sessions:
        if "." in s.name:
            raise ValueError(f"session name {s.name!r}: a trunk's session names cannot contain '.'")
        if s.num_images < 20:
            raise ValueError(f"session {s.name} has {s.num_images} images; a trunk needs at least 20 per session")
        if not np.all(np.isfinite(s.responses)):
            raise ValueError(f"session {s.name}: responses hold NaN or infinity")


def _split(session: Session, cfg: TrunkConfig) -> tuple[np.ndarray, np.ndarray]:
    """(training, held-out) image indices of a session, fixed by the run's seed and the name."""
    g = np.random.default_rng([cfg.seed, int.from_bytes(session.name.encode(), "little") % 2**32])
    perm = g.permutation(session.num_images)
    n_val = max(2, int(round(cfg.val_fraction * session.num_images)))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


@torch.no_grad()
def _held_out_r(trunk: Trunk, sessions: Sequence[Session], val: dict, batch: int = 64) -> np.ndarray:
    """Correlation of every neuron (all sessions, concatenated) on its session's held-out images."""
    trunk.eval()
    rs = []
    for s in sessions:
        idx = val[s.name]
        pred = torch.cat([trunk(to_tensor(s.images[idx[i:i + batch]]), s.name) for i in range(0, len(idx), batch)])
        r = pearson_r(s.responses[:, idx], pred.double().numpy().T)
        rs.append(np.nan_to_num(r, nan=0.0))
    return np.concatenate(rs)


def _steps(train: dict, cfg: TrunkConfig, epoch: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """The epoch's batches: every session's training images shuffled into batches of one
    session, all sessions' batches in one shuffled order (the same after a resume)."""
    g = np.random.default_rng([seed, epoch])
    steps = []
    for name, idx in train.items():
        perm = g.permutation(idx)
        steps += [(name, perm[i:i + cfg.batch]) for i in range(0, len(perm), cfg.batch) if len(perm[i:i + cfg.batch]) > 1]
    order = g.permutation(len(steps))
    return [steps[i] for i in order]


def _fit_member(sessions: Sequence[Session], cfg: TrunkConfig, seed: int, threads: int | None,
                checkpoint: Path | None, progress: bool, label: str) -> tuple[Trunk, dict]:
    split = {s.name: _split(s, cfg) for s in sessions}
    train_idx = {n: t for n, (t, _) in split.items()}
    val_idx = {n: v for n, (_, v) in split.items()}
    spec = {}
    for s in sessions:
        y = s.responses[:, train_idx[s.name]]
        spec[s.name] = (s.num_neurons, y.mean(1), np.maximum(y.std(1), 1e-6))
    torch.manual_seed(seed)
    trunk = Trunk(cfg.nums_filters, spec, readout_pool=cfg.readout_pool)
    trunk.core.engine_threads = threads
    opt = torch.optim.Adam(trunk.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * e / cfg.epochs)))
    run = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("patience", "max_minutes")}
    run.update(seed=seed, sessions={s.name: [s.num_neurons, s.num_images] for s in sessions})
    state = load_checkpoint(checkpoint, run) if checkpoint else None
    history: list[dict] = []
    if state is not None:
        trunk.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        start, best_r, best_model, bad, history = (state["epoch"], state["best_r"], state["best_model"], state["bad"],
                                                   state["history"])
        elapsed = state["elapsed"]
    else:
        start, best_r, best_model, bad, elapsed = 0, -float("inf"), copy.deepcopy(trunk.state_dict()), 0, 0.0
    ys = {s.name: torch.as_tensor(((s.responses.T - spec[s.name][1]) / spec[s.name][2]), dtype=torch.float32)
          for s in sessions}
    by_name = {s.name: s for s in sessions}
    limit = None if cfg.max_minutes is None else cfg.max_minutes * 60
    for epoch in range(start, cfg.epochs):
        if bad >= cfg.patience or (limit is not None and elapsed >= limit):
            break
        t0 = time.perf_counter()
        trunk.train()
        total, count = 0.0, 0
        steps = _steps(train_idx, cfg, epoch, seed)
        bar = tqdm(steps, desc=f"{label} epoch {epoch + 1}/{cfg.epochs}", unit="batch", disable=not progress, leave=False)
        for name, idx in bar:
            x = to_tensor(by_name[name].images[idx])
            err = torch.mean((trunk(x, name) - ys[name][idx]) ** 2)
            loss = err + cfg.readout_l1 * trunk.readout(name).penalty()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(err.detach()) * len(idx), count + len(idx)
        sched.step()
        r = _held_out_r(trunk, sessions, val_idx, cfg.batch)
        med = float(np.median(r))
        if med > best_r:
            best_r, best_model, bad = med, copy.deepcopy(trunk.state_dict()), 0
        else:
            bad += 1
        elapsed += time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_mse": total / max(count, 1), "held_out_median_r": med,
                        "seconds": elapsed})
        if progress:
            tqdm.write(f"{label} epoch {epoch + 1}: train mse {total / max(count, 1):.3f}, held-out median r "
                       f"{med:.3f} (best {best_r:.3f}), {elapsed / 60:.1f} min")
        if checkpoint:
            save_checkpoint(checkpoint, {"model": trunk.state_dict(), "optim": opt.state_dict(),
                                         "sched": sched.state_dict(), "epoch": epoch + 1, "best_r": best_r,
                                         "best_model": best_model, "bad": bad, "history": history,
                                         "elapsed": elapsed}, run)
    trunk.load_state_dict(best_model)
    trunk.eval()
    best = max(history, key=lambda h: h["held_out_median_r"]) if history else None
    return trunk, {"seed": seed, "history": history, "best_epoch": best and best["epoch"],
                   "held_out_median_r": best_r, "minutes": elapsed / 60}


def fit_trunk(
    sessions: Sequence[Session],
    config: TrunkConfig | None = None,
    members: int = 1,
    threads: int | None = None,
    checkpoint_dir: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> tuple[list[Trunk], dict]:
    """Train ``members`` trunks on all ``sessions`` at once.

    Args:
        sessions: recordings with images (each (N, 112, 112, 3) uint8 and (neurons, N) responses);
            each image's loss covers only its own session's neurons.
        config: see :class:`TrunkConfig`.
        members: trunks trained with seeds ``seed * 1000 + k``: an ensemble.
        threads: the C++ kernels' threads (default: torch's).
        checkpoint_dir: each member checkpoints there after every epoch; a rerun with the same
            settings resumes (a finished member is not trained again).
        out: the trained members are written there (:func:`~compactcortex.models.trunk.save_trunks`).

    Returns:
        The members (eval mode) and a record: settings, and per member its held-out median r,
        the best epoch, the per-epoch history and the training minutes.

    Raises:
        ValueError: no sessions, a session given twice, with too few images, or with NaN responses.
    """
    cfg = config or TrunkConfig()
    if not 1 <= members <= 100:
        raise ValueError(f"members must be between 1 and 100, got {members}")
    _check_sessions(sessions)
    trunks, records = [], []
    for k in range(members):
        ckpt = Path(checkpoint_dir) / f"trunk_member{k}.ckpt" if checkpoint_dir else None
        t, rec = _fit_member(sessions, cfg, cfg.seed * 1000 + k, threads, ckpt, progress, f"member {k + 1}/{members}")
        t.provenance = {"kind": "trunk", "sessions": [s.name for s in sessions], "member": k}
        trunks.append(t)
        records.append(rec)
    info = {"config": {**dataclasses.asdict(cfg), "nums_filters": list(cfg.nums_filters)}, "members": records,
            "sessions": {s.name: {"neurons": s.num_neurons, "images": s.num_images} for s in sessions}}
    if out is not None:
        save_trunks(trunks, out, info)
    return trunks, info
