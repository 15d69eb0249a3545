"""Distillation: train a compact student to reproduce one neuron, or many, of a teacher."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..devices import resolve_device
from ..models.compact import CompactModel
from ..models.image_tensor import to_tensor
from .checkpoint import load_checkpoint, save_checkpoint

__all__ = ["distill", "distill_population", "teacher_targets", "fine_tune", "ImageStream", "TargetPool"]

Teacher = Callable[[torch.Tensor], torch.Tensor]
Neurons = int | Sequence[int] | None
# Stream batches from here on are never trained on: they measure the teacher's response scale.
PROBE_STEP = 10**9


def teacher_targets(teacher: Teacher, x: torch.Tensor, neuron: Neurons) -> torch.Tensor:
    """The teacher's responses to recentred images x (N,3,112,112), float32.

    A teacher returns (N, neurons) or, for a single-neuron teacher, (N,). ``neuron``: an index
    gives (N,); a sequence of indices gives (N, len); None gives the teacher's output as it is.
    """
    with torch.no_grad():
        y = torch.as_tensor(teacher(x)).float()
    if neuron is None:
        return y
    if y.dim() != 2:
        raise ValueError(f"neuron={neuron!r} given, but the teacher predicts one neuron (output {tuple(y.shape)})")
    return y[:, neuron] if isinstance(neuron, int) else y[:, list(neuron)]


class ImageStream:
    """Deterministic training images: the given images (randomly shifted) mixed with procedural ones.

    Batch ``step`` depends only on (seed, step), so a resumed run sees the same images.
    ``procedural_fraction`` of each batch comes from :func:`compactcortex.data.procedural.procedural`.
    """

    def __init__(self, images: np.ndarray | None, batch: int, procedural_fraction: float, seed: int,
                 max_shift: int = 8) -> None:
        if images is None or len(images) == 0:
            procedural_fraction = 1.0
        self.images, self.batch, self.frac, self.seed, self.shift = images, batch, procedural_fraction, seed, max_shift

    def __call__(self, step: int) -> torch.Tensor:
        """Batch ``step`` as recentred float32 images (batch, 3, 112, 112)."""
        return to_tensor(self.raw(step))

    def raw(self, step: int) -> np.ndarray:
        """Batch ``step`` as uint8 images (batch, 112, 112, 3)."""
        from ..data.procedural import procedural

        rng = np.random.default_rng([self.seed, step])
        n_proc = int(round(self.batch * self.frac))
        parts = []
        if n_proc:
            parts.append(procedural(n_proc, seed=self.seed + 7919, start=step * self.batch))
        if self.batch - n_proc:
            pick = self.images[rng.integers(0, len(self.images), self.batch - n_proc)]
            dy, dx = rng.integers(-self.shift, self.shift + 1, 2)
            parts.append(np.roll(pick, (int(dy), int(dx)), axis=(1, 2)))
        return np.concatenate(parts)


class TargetPool:
    """A fixed pool of stream images with the teacher's responses, computed once, then resampled.

    For a costly teacher (a population of 33 published models costs ~4x a 100-filter student's
    training step per image) the pool pays the teacher once per image and the student sees each
    image several times. ``pool(step)`` returns ``(x, y)``: ``batch`` images drawn by (seed, step)
    and their targets (batch, K), which :func:`fine_tune` takes in place of calling the teacher.

    Args:
        stream: where the pool's images come from (its batches 0, 1, ... until ``size``).
        teacher, neurons: as for :func:`teacher_targets`; targets are kept as (size, K) float32.
        size: images in the pool; batch: images per draw.
        cache: optional ``.npy`` file of the targets (atomic; reused when its shape matches),
            so an interrupted run does not pay the teacher again.
    """

    def __init__(self, stream: ImageStream, teacher: Teacher, neurons: Neurons, size: int, batch: int,
                 seed: int = 0, cache: str | Path | None = None, progress: bool = True) -> None:
        n_batches = max(1, -(-size // stream.batch))
        self.images = np.concatenate([stream.raw(b) for b in range(n_batches)])[:size]
        self.batch, self.seed = batch, seed
        targets = None
        if cache is not None and Path(cache).is_file():
            targets = np.load(cache)
            if targets.shape[0] != len(self.images):
                targets = None
        if targets is None:
            chunks = []
            for i in tqdm(range(0, len(self.images), 64), desc="teacher targets", unit="batch", disable=not progress):
                y = teacher_targets(teacher, to_tensor(self.images[i:i + 64]), neurons)
                chunks.append(y.reshape(len(y), -1).numpy())
            targets = np.concatenate(chunks).astype(np.float32)
            if cache is not None:
                from ..files import atomic_path

                with atomic_path(cache) as tmp, open(tmp, "wb") as f:
                    np.save(f, targets)
        self.targets = torch.from_numpy(targets)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        pick = np.random.default_rng([self.seed, 1, step]).integers(0, len(self.images), self.batch)
        y = self.targets[pick]
        return to_tensor(self.images[pick]), (y[:, 0] if y.shape[1] == 1 else y)


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


def fine_tune(student: CompactModel, teacher: Teacher | None, neuron: Neurons, stream, steps: int,
              lr: float = 3e-4, checkpoint: str | Path | None = None, desc: str = "distil",
              progress: bool = True, init_bias: bool = False, checkpoint_every: int = 50,
              readout_lr: float | None = None, backend: str = "engine",
              callback: Callable[[int, CompactModel], None] | None = None,
              settings: dict | None = None, device: str | torch.device | None = "cpu") -> dict:
    """Train ``student`` (in place) on the teacher's outputs for ``steps`` batches of ``stream``.

    ``stream(step)`` returns images (the teacher is run on them) or ``(images, targets)`` (e.g. a
    :class:`TargetPool`; ``teacher`` may then be None). A student with K outputs learns K
    targets per image (``neuron`` a sequence of K indices, or None for all the teacher's).
    The loss is the mean squared error in units of each target's standard deviation
    (measured on the first batches), averaged over targets. The learning rate decays with a cosine schedule. With
    ``checkpoint``, the state is saved atomically every ``checkpoint_every`` steps and at the end, and an existing
    checkpoint is resumed. The student's filter masks (``set_filter_mask``) hold: masked filters
    stay off and their weights get no gradient. ``backend`` is the student's backend while it
    trains (``"engine"``: the C++ kernels on CPU float32, PyTorch elsewhere; restored after).
    ``init_bias`` starts a fresh student at the teacher's mean response (readout bias = mean,
    readout weights = 0). ``readout_lr`` is the learning rate of the readout weights (default
    ``lr / sqrt(fan-in)``; see ``_param_groups``). ``callback(step, student)`` runs after every
    checkpoint interval (e.g. to record held-out accuracy; the student is in eval mode during the
    call). ``settings`` (plain values: the stream's seed, batch, ...) are recorded in the
    checkpoint with this call's own (steps, learning rates, student shape, targets); a checkpoint
    of other settings is refused (ValueError). ``device`` (:mod:`compactcortex.devices`): where
    the student trains; on a CUDA device it trains through PyTorch in channels_last, batches are
    copied from pinned host memory without waiting, and the loss is read back only every 10 steps;
    the student is returned where it was. Returns ``{"steps", "final_loss"}``.
    """
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps}")
    if not all(np.isfinite(r) and r >= 0 for r in (lr, 0.0 if readout_lr is None else readout_lr)):
        raise ValueError(f"learning rates must be numbers >= 0 (0 freezes), got lr={lr}, readout_lr={readout_lr}")
    if int(checkpoint_every) < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    steps = int(steps)  # a numpy integer would not load back under weights_only
    dev = resolve_device(device)
    on_gpu = dev.type == "cuda"
    home = next(student.parameters()).device
    if on_gpu:  # the C++ kernels are the CPU's; on a GPU the student trains through PyTorch
        backend = "torch"
        student.to(dev, memory_format=torch.channels_last)

    def batch(step):
        got = stream(step)
        x, y = got if isinstance(got, tuple) else (got, teacher_targets(teacher, got, neuron))
        if on_gpu:
            x = x.pin_memory().to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.pin_memory().to(dev, non_blocking=True)
        return x, y

    run = {"steps": steps, "lr": float(lr), "readout_lr": readout_lr, "init_bias": bool(init_bias),
           "nums_filters": list(student.nums_filters), "outputs": student.num_outputs,
           "neuron": None if neuron is None else np.asarray(neuron).tolist(), **(settings or {})}
    opt = torch.optim.Adam(_param_groups(student, lr, readout_lr))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))
    state = load_checkpoint(checkpoint, run) if checkpoint else None
    if state is not None:
        student.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        start, scale, losses = state["step"], torch.as_tensor(state["scale"]).to(dev), state["losses"]
    else:
        probe = torch.cat([batch(PROBE_STEP + i)[1] for i in range(4)])
        want = (len(probe),) if student.num_outputs == 1 else (len(probe), student.num_outputs)
        if tuple(probe.shape) != want:
            raise ValueError(f"the targets have shape {tuple(probe.shape[1:])} per image but the student has "
                             f"{student.num_outputs} output(s); pass neuron= to pick the teacher's outputs")
        start, scale, losses = 0, probe.std(0).clamp_min(1e-6), []
        if init_bias:  # a fresh student starts at the teacher's mean response, not at a random offset
            with torch.no_grad():
                student.readout.bias.copy_(probe.mean(0).reshape(-1))
                student.readout.weight.zero_()

    pending: list[torch.Tensor] = []  # losses not yet read back (a read waits for the device)

    def read_losses() -> None:
        if pending:
            losses.extend(torch.stack(pending).tolist())
            pending.clear()

    def save(step):
        read_losses()
        if checkpoint:
            save_checkpoint(checkpoint, {"model": student.state_dict(), "optim": opt.state_dict(),
                                         "sched": sched.state_dict(), "step": step, "scale": scale, "losses": losses},
                            run)

    previous_backend, student.backend = student.backend, backend
    student.train()
    bar = tqdm(range(start, steps), desc=desc, unit="step", disable=not progress, initial=start, total=steps)
    for step in bar:
        x, y = batch(step)
        loss = torch.mean(((student(x) - y) / scale) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        pending.append(loss.detach())
        if step % 10 == 0:
            read_losses()
            bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}")
        if (step + 1) % checkpoint_every == 0:
            save(step + 1)
            if callback is not None:
                student.eval()
                callback(step + 1, student)
                student.train()
    save(steps)
    student.eval()
    student.backend = previous_backend
    if on_gpu:
        student.to(home, memory_format=torch.contiguous_format)
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
    device: str | torch.device | None = "cpu",
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
        device: where it trains (see :func:`fine_tune`).

    Returns:
        The trained student, in eval mode, in the teacher's response units.
    """
    torch.manual_seed(seed)
    student = CompactModel(nums_filters)
    stream = ImageStream(images, batch, procedural_fraction, seed)
    info = fine_tune(student, teacher, neuron, stream, steps, lr, checkpoint, desc=f"distil neuron {neuron}",
                     progress=progress, init_bias=True, backend=backend, device=device,
                     settings={"seed": seed, "batch": batch, "procedural_fraction": procedural_fraction,
                               "images": None if images is None else len(images)})
    student.provenance = {"distilled_from_neuron": neuron, "steps": steps, "batch": batch, "seed": seed,
                          "final_loss": info["final_loss"]}
    return student


def population_pool(teacher: Teacher, neurons: Neurons, images: np.ndarray | None, pool_size: int, batch: int,
                    procedural_fraction: float = 0.5, seed: int = 0, checkpoint: str | Path | None = None,
                    progress: bool = True) -> TargetPool:
    """The :class:`TargetPool` that :func:`distill_population` trains on, for the same arguments:
    with its ``checkpoint``, the targets are read back from ``<checkpoint>.targets.npy`` (the
    teacher does not run again), e.g. to re-train per-neuron models on the same labelled images."""
    stream = ImageStream(images, 64, procedural_fraction, seed)
    cache = None if checkpoint is None else Path(str(checkpoint) + ".targets.npy")
    return TargetPool(stream, teacher, neurons, pool_size, batch, seed, cache, progress)


def distill_population(
    teacher: Teacher,
    neurons: Sequence[int] | None,
    images: np.ndarray | None,
    steps: int,
    batch: int = 32,
    nums_filters: Sequence[int] = (100, 100, 100, 100, 100),
    pool_size: int = 16384,
    procedural_fraction: float = 0.5,
    lr: float = 2e-3,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    progress: bool = True,
    backend: str = "engine",
    callback: Callable[[int, CompactModel], None] | None = None,
    checkpoint_every: int = 50,
    device: str | torch.device | None = "cpu",
) -> CompactModel:
    """Distil many neurons at once into one shared student: one trunk, a readout row per neuron.

    Every forward and backward pass serves all K neurons, and the teacher runs once per pool
    image (:class:`TargetPool` of ``pool_size`` stream images); cut per-neuron models out with
    :meth:`CompactModel.single_output` and prune them. ``teacher`` returns (N, neurons);
    ``neurons`` picks K of them (None: all). With ``checkpoint``, the training state and the
    pool's targets (``<checkpoint>.targets.npy``) are kept, so an interrupted run resumes.
    ``device``: where the student trains (see :func:`fine_tune`; the teacher labels the pool
    wherever it runs).

    Returns:
        The student with K outputs, in eval mode, in the teacher's response units.
    """
    torch.manual_seed(seed)
    pool = population_pool(teacher, neurons, images, pool_size, batch, procedural_fraction, seed, checkpoint, progress)
    student = CompactModel(nums_filters, outputs=pool.targets.shape[1])
    info = fine_tune(student, None, None, pool, steps, lr, checkpoint, desc=f"distil {student.num_outputs} neurons",
                     progress=progress, init_bias=True, backend=backend, callback=callback,
                     checkpoint_every=checkpoint_every, device=device,
                     settings={"seed": seed, "batch": batch, "pool_size": pool_size,
                               "procedural_fraction": procedural_fraction,
                               "images": None if images is None else len(images)})
    student.provenance = {"distilled_from_neurons": None if neurons is None else list(neurons), "steps": steps,
                          "batch": batch, "pool_size": pool_size, "seed": seed, "final_loss": info["final_loss"]}
    return student
