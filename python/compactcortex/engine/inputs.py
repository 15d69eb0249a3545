"""What every engine backend checks on the Python side, in one place: plans, the shared input
mean, the batch size and ``out=`` arrays (images and weights are checked where they are read, in
C++: ``csrc/common``; thread counts and spin times by the bindings). Backends (:mod:`.cpu`, :mod:`.cuda`), the dispatching
front end (:mod:`.frontend`) and :mod:`.features` import from here, never from each other."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import _engine
from .plan import Plan

__all__ = ["DEFAULT_SPIN_MS", "MAX_THREADS", "as_plan", "default_threads", "shared_mean", "leading_dim", "host_out"]

#: How long idle CPU workers poll for the next call (ms). Short, so that a predictor used
#: between other heavy work (a teacher inside training) does not take a core from it. A virtual
#: CPU that halts runs the next calls slowly for several ms (measured: 2 threads at batch 1 took
#: 0.80 ms per image after 10 ms idle, 0.43 ms when kept polling, 1 thread 0.69 ms), so a
#: stimulus loop that wants its threads hot sets ``spin_ms`` above the gap between its calls.
DEFAULT_SPIN_MS = 0.2

#: The most worker threads a predictor takes (each holds a workspace of ~1.4 MB for a
#: published-size model). The bindings check it (csrc/bindings.cpp); the command line reads it
#: here to bound ``--threads``.
MAX_THREADS: int = _engine.MAX_THREADS


def as_plan(model_or_plan: Any) -> Plan:
    """A Plan from a Plan, a path to a saved Plan, or a CompactModel (compiled; needs torch)."""
    if isinstance(model_or_plan, Plan):
        return model_or_plan
    if isinstance(model_or_plan, (str, Path)):
        return Plan.load(model_or_plan)
    from .compile import compile

    return compile(model_or_plan)


def default_threads() -> int:
    """CPUs this process may run on, capped by ``OMP_NUM_THREADS`` where that is set (as PyTorch's
    default is), so that one variable limits both on a shared machine."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(cpus, int(limit)) if limit.isdigit() and int(limit) > 0 else cpus


def shared_mean(plans: Sequence[Plan]) -> tuple[float, float, float]:
    """The input mean every plan shares (one recentring for all models)."""
    if not plans:
        raise ValueError("a predictor needs at least one model")
    means = {p.mean for p in plans}
    if len(means) > 1:
        raise ValueError(f"all models must share one input mean, got {sorted(means)}")
    return plans[0].mean


def leading_dim(images: Any) -> int:
    """The batch size, for allocating the result; the shape itself is checked in C++."""
    shape = getattr(images, "shape", None)
    if shape is None:
        raise TypeError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
    return int(shape[0]) if len(shape) else 0


def host_out(out: np.ndarray | None, shape: tuple[int, ...], images: Any = None) -> np.ndarray:
    """``out`` checked (writeable C-contiguous float32 of ``shape``, not overlapping ``images``),
    or a new array."""
    if out is None:
        return np.empty(shape, np.float32)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == shape
            and out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"out must be a writeable, C-contiguous float32 numpy array of shape {shape}")
    if images is not None and np.may_share_memory(out, _host_view(images)):
        raise ValueError("out overlaps the images: results would overwrite pixels not yet read")
    return out


def _host_view(images: Any) -> Any:
    """A numpy view of a CPU tensor's memory (for the overlap check); anything else as given."""
    if isinstance(images, np.ndarray) or not hasattr(images, "numpy"):
        return images
    try:
        return images.numpy()
    except (TypeError, RuntimeError):  # a dtype numpy lacks, or not on the CPU: cannot be `out`
        return np.empty(0)
