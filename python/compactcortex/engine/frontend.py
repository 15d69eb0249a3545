"""What every predictor shares: its arguments, checked once, and the choice of backend.

Images and weights are checked where they are read, in C++ (``csrc/common``); this module
checks the Python-side arguments (threads, layer0, device, models, ``out``) and hands each
predictor one backend: :class:`~compactcortex.engine.cpu.CpuBackend` or
:class:`~compactcortex.engine.cuda.CudaPredictor`, which take the same ``predict(images, out)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .plan import Plan

__all__ = ["as_plan", "default_threads", "PredictorBase", "DEFAULT_SPIN_MS"]

#: How long idle CPU workers poll for the next call (ms). Short, so that a predictor used
#: between other heavy work (a teacher inside training) does not take a core from it. A virtual
#: CPU that halts runs the next calls slowly for several ms (measured: 2 threads at batch 1 took
#: 0.80 ms per image after 10 ms idle, 0.43 ms when kept polling, 1 thread 0.69 ms), so a
#: stimulus loop that wants its threads hot sets ``spin_ms`` above the gap between its calls.
DEFAULT_SPIN_MS = 0.2

#: The most worker threads a predictor takes (each holds a workspace of ~1.4 MB for a
#: published-size model); as csrc/bindings.cpp.
MAX_THREADS = 1024


def as_plan(model_or_plan: Any) -> Plan:
    """A Plan from a Plan, a path to a saved Plan, or a CompactModel (compiled; needs torch)."""
    if isinstance(model_or_plan, Plan):
        return model_or_plan
    if isinstance(model_or_plan, (str, Path)):
        return Plan.load(model_or_plan)
    from .compile import compile

    return compile(model_or_plan)


def default_threads() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


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


class PredictorBase:
    """Checks a predictor's arguments once and dispatches to the CPU or CUDA backend.

    ``single``: one model, results of shape (N,); otherwise a population, (N, models).
    """

    def __init__(self, models_or_plans: Sequence[Any], single: bool, threads: int | None, isa: str,
                 layer0: str, device: str, spin_ms: float = DEFAULT_SPIN_MS) -> None:
        plans = [as_plan(m) for m in models_or_plans]
        mean = shared_mean(plans)
        if layer0 not in ("winograd", "direct"):
            raise ValueError(f"layer0 must be 'winograd' or 'direct', got {layer0!r}")
        threads = default_threads() if threads is None else int(threads)
        if not 1 <= threads <= MAX_THREADS:
            raise ValueError(f"threads must be between 1 and {MAX_THREADS}, got {threads}")
        if not 0 <= float(spin_ms) <= 1e4:
            raise ValueError(f"spin_ms must be between 0 and 10000, got {spin_ms}")
        if device == "cpu":
            from .cpu import CpuBackend

            self._backend = CpuBackend(plans, mean, single, threads, isa, layer0 == "winograd", spin_ms)
        elif device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
            from .cuda import CudaPredictor, cuda_available, cuda_status

            if not cuda_available():
                raise RuntimeError(f"device {device!r} requested, but CUDA is not usable: {cuda_status()}")
            self._backend = CudaPredictor(plans[0] if single else plans, device=int(device[5:] or 0))
        else:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.plans = plans

    @property
    def isa(self) -> str:
        """The kernel variant in use ("cuda" on the GPU)."""
        return self._backend.isa

    @property
    def threads(self) -> int:
        """CPU worker threads (0 on the GPU)."""
        return self._backend.threads

    @property
    def layer0(self) -> str:
        """The layer-0 algorithm: "winograd" or "direct" (the CUDA kernels: "direct")."""
        return self._backend.layer0

    @property
    def num_models(self) -> int:
        return len(self.plans)

    def macs_per_image(self) -> int:
        """Multiply-adds of all models for one image (direct-convolution count)."""
        return sum(p.macs_per_image() for p in self.plans)

    def executed_macs_per_image(self) -> int:
        """Multiply-adds the kernels in use actually execute per image (padding, Winograd)."""
        return self._backend.executed_macs_per_image()

    def predict(self, images: Any, out: Any = None) -> Any:
        return self._backend.predict(images, out)

    __call__ = predict
