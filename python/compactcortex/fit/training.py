"""A small, resumable regression training loop with validation-based early stopping."""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["TrainConfig", "train"]


@dataclass
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    epochs: maximum passes over the training data; patience: epochs without a better validation
    loss before stopping; lr: Adam learning rate; batch: images per step; seed: makes the run
    deterministic (also across an interruption and resume).
    """

    epochs: int = 20
    patience: int = 4
    lr: float = 1e-3
    batch: int = 32
    seed: int = 0
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if not (self.epochs >= 1 and self.patience >= 1 and self.batch >= 1 and self.seed >= 0):
            raise ValueError(f"epochs, patience and batch must be >= 1 and seed >= 0, got {self}")
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"lr must be a positive number and weight_decay a number >= 0, got {self}")


def train(
    model: nn.Module,
    loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    n_train: int,
    val_loss: Callable[[nn.Module], float],
    cfg: TrainConfig,
    checkpoint: str | Path | None = None,
    progress: Callable[[int, float, float], None] | None = None,
) -> dict:
    """Train ``model`` in place; returns ``{"epochs", "best_val", "stopped_early"}``.

    ``loss_fn(model, idx)`` returns the mean loss of the training examples ``idx`` (a LongTensor);
    ``val_loss(model)`` the validation loss (the model is in eval mode during it). The weights with
    the best validation loss are restored at the end. With ``checkpoint``, the state after every
    epoch is saved there and an existing checkpoint is resumed.
    """
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # What fixes the trajectory; not epochs or patience: with a constant learning rate, a run
    # resumed with more epochs follows the same path as one started with them.
    run = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("epochs", "patience")}
    run.update(n_train=int(n_train), parameters=sum(p.numel() for p in model.parameters()))
    state = load_checkpoint(checkpoint, run) if checkpoint else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        start, best_val, best_model, bad = state["epoch"], state["best_val"], state["best_model"], state["bad"]
    else:
        start, best_val, best_model, bad = 0, float("inf"), copy.deepcopy(model.state_dict()), 0
    epoch = start
    for epoch in range(start, cfg.epochs):
        if bad >= cfg.patience:
            break
        model.train()
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)  # same order after a resume
        order = torch.randperm(n_train, generator=g)
        total = 0.0
        for i in range(0, n_train, cfg.batch):
            loss = loss_fn(model, order[i:i + cfg.batch])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(order[i:i + cfg.batch])
        model.eval()
        with torch.no_grad():
            v = val_loss(model)
        if v < best_val:
            best_val, best_model, bad = v, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if checkpoint:
            save_checkpoint(checkpoint, {"model": model.state_dict(), "optim": opt.state_dict(), "epoch": epoch + 1,
                                         "best_val": best_val, "best_model": best_model, "bad": bad}, run)
        if progress:
            progress(epoch, total / n_train, v)
    model.load_state_dict(best_model)
    model.eval()
    return {"epochs": epoch + 1 - (1 if bad >= cfg.patience and epoch < cfg.epochs - 1 else 0),
            "best_val": best_val, "stopped_early": bad >= cfg.patience}
