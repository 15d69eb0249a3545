"""Distillation: train a compact student to reproduce one neuron of a teacher."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..models.compact import CompactModel
from ..models.teacher import to_tensor
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["distill", "teacher_targets", "fine_tune", "ImageStream"]

Teacher = Callable[[torch.Tensor], torch.Tensor]
# Stream batches from here on are never trained on: they measure the teacher's response scale.
PROBE_STEP = 10**9


def teacher_targets(teacher: Teacher, x: torch.Tensor, neuron: int | None) -> torch.Tensor:
    """The teacher's response of ``neuron`` to recentred images x (N,3,112,112): (N,) float32.

    A teacher returns (N, neurons) or, for a single-neuron teacher (``neuron=None``), (N,).
    """
    with torch.no_grad():
        y = torch.as_tensor(teacher(x)).float()
    if y.dim() == 2:
        if neuron is None:
            raise ValueError("the teacher predicts several neurons: pass neuron=")
        return y[:, neuron]
    return y


class ImageStream:
    """Deterministic training images: the given images (randomly shifted) mixed with procedural ones.

    Batch ``step`` depends only on (seed, step), so a resumed run sees the same images.
    ``procedural_fraction`` of each batch comes from :func:`compactcortex.data.images.procedural`.
    """

    def __init__(self, images: np.ndarray | None, batch: int, procedural_fraction: float, seed: int,
                 max_shift: int = 8) -> None:
        if images is None or len(images) == 0:
            procedural_fraction = 1.0
        self.images, self.batch, self.frac, self.seed, self.shift = images, batch, procedural_fraction, seed, max_shift

    def __call__(self, step: int) -> torch.Tensor:
        from ..data.images import procedural

        rng = np.random.default_rng([self.seed, step])
        n_proc = int(round(self.batch * self.frac))
        parts = []
        if n_proc:
            parts.append(procedural(n_proc, seed=self.seed + 7919, start=step * self.batch))
        if self.batch - n_proc:
            pick = self.images[rng.integers(0, len(self.images), self.batch - n_proc)]
            dy, dx = rng.integers(-self.shift, self.shift + 1, 2)
            parts.append(np.roll(pick, (int(dy), int(dx)), axis=(1, 2)))
        return to_tensor(np.concatenate(parts))


def _param_groups(student: CompactModel, lr: float, readout_lr: float | None) -> list[dict]:
    """Adam groups: the readout weights get ``readout_lr`` (default: lr / sqrt(fan-in)).

    Adam moves every weight by about lr per step whatever its gradient's size, so the readout's
    28*28*n4 weights (18,816 for 24 filters) would move the output by ~lr * fan-in * mean
    activation: many response standard deviations per step at lr 1e-3. Dividing by sqrt(fan-in)
    keeps that step near lr * sqrt(fan-in), a fraction of one.
    """
    w = student.readout.weight
    if readout_lr is None:
        readout_lr = lr / math.sqrt(w.shape[1])
    rest = [p for p in student.parameters() if p is not w]
    return [{"params": rest, "lr": lr}, {"params": [w], "lr": readout_lr}]


def fine_tune(student: CompactModel, teacher: Teacher, neuron: int | None, stream: ImageStream, steps: int,
              lr: float = 3e-4, checkpoint: str | Path | None = None, desc: str = "distil",
              progress: bool = True, init_bias: bool = False, checkpoint_every: int = 50,
              readout_lr: float | None = None, backend: str = "engine") -> dict:
    """Train ``student`` (in place) on the teacher's outputs for ``steps`` batches of ``stream``.

    The loss is the mean squared error in units of the teacher's response standard deviation
    (measured on the first batches). The learning rate decays with a cosine schedule. With
    ``checkpoint``, the state is saved atomically every ``checkpoint_every`` steps and at the end, and an existing
    checkpoint is resumed. The student's filter masks (``set_filter_mask``) hold: masked filters
    stay off and their weights get no gradient. ``backend`` is the student's backend while it
    trains (``"engine"``: the C++ kernels on CPU float32, PyTorch elsewhere; restored after).
    ``init_bias`` starts a fresh student at the teacher's mean response (readout bias = mean,
    readout weights = 0). ``readout_lr`` is the learning rate of the readout weights (default
    ``lr / sqrt(fan-in)``; see ``_param_groups``). Returns ``{"steps", "final_loss"}``.
    """
    opt = torch.optim.Adam(_param_groups(student, lr, readout_lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    state = load_checkpoint(checkpoint) if checkpoint else None
    if state is not None:
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        start, scale, losses = state["step"], state["scale"], state["losses"]
    else:
        probe = torch.cat([teacher_targets(teacher, stream(PROBE_STEP + i), neuron) for i in range(4)])
        start, scale, losses = 0, float(probe.std().clamp_min(1e-6)), []
        if init_bias:  # a fresh student starts at the teacher's mean response, not at a random offset
            with torch.no_grad():
                student.readout.bias.fill_(float(probe.mean()))
                student.readout.weight.zero_()

    def save(step):
        if checkpoint:
            save_checkpoint(checkpoint, {"model": student.state_dict(), "optim": opt.state_dict(),
                                         "sched": sched.state_dict(), "step": step, "scale": scale, "losses": losses})

    previous_backend, student.backend = student.backend, backend
    student.train()
    bar = tqdm(range(start, steps), desc=desc, unit="step", disable=not progress, initial=start, total=steps)
    for step in bar:
        x = stream(step)
        y = teacher_targets(teacher, x, neuron)
        loss = torch.mean(((student(x) - y) / scale) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if (step + 1) % checkpoint_every == 0:
            save(step + 1)
    save(steps)
    student.eval()
    student.backend = previous_backend
    return {"steps": steps, "final_loss": float(np.mean(losses[-20:])) if losses else float("nan")}


def distill(
    teacher: Teacher,
    neuron: int | None = None,
    images: np.ndarray | None = None,
    steps: int = 2000,
    batch: int = 32,
    nums_filters: Sequence[int] = (100, 100, 100, 100, 100),
    procedural_fraction: float = 0.5,
    lr: float = 1e-3,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    backend: str = "engine",
) -> CompactModel:
    """Distil one neuron of ``teacher`` into a fresh compact student (the paper: 100 filters per layer).

    Args:
        teacher: callable on recentred images (N,3,112,112) -> (N, neurons) or (N,), e.g. an
            :class:`~compactcortex.models.teacher.Ensemble` or a published CompactModel.
        neuron: which output of a population teacher.
        images: (N,112,112,3) uint8 images (a session's) to mix, shifted, into the stream;
            ``procedural_fraction`` of every batch is procedural images.
        steps, batch: training length; checkpoint: resumable training state (see fine_tune).
        backend: what the student trains on (see :func:`fine_tune`).

    Returns:
        The trained student, in eval mode, in the teacher's response units.
    """
    torch.manual_seed(seed)
    student = CompactModel(nums_filters)
    stream = ImageStream(images, batch, procedural_fraction, seed)
    info = fine_tune(student, teacher, neuron, stream, steps, lr, checkpoint, desc=f"distil neuron {neuron}",
                     progress=progress, init_bias=True, backend=backend)
    student.provenance = {"distilled_from_neuron": neuron, "steps": steps, "batch": batch, "seed": seed,
                          "final_loss": info["final_loss"]}
    return student
