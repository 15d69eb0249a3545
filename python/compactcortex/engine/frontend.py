"""What every predictor shares: its arguments, checked once, and the choice of backend.

Images and weights are checked where they are read, in C++ (``csrc/common``), and so are the
engine's limits (threads, spin_ms; ``csrc/bindings.cpp``); this module checks what only Python
sees (layer0, device, the models and their shared mean) and hands each
predictor one backend: :class:`~compactcortex.engine.cpu.CpuBackend` or
:class:`~compactcortex.engine.cuda.CudaBackend`, which take the same ``predict(images, out)``.
"""
from __future__ import annotations

from operator import index
from typing import Any, Sequence

from .inputs import DEFAULT_SPIN_MS, as_plan, default_threads, shared_mean

__all__ = ["PredictorBase"]


class PredictorBase:
    """Checks a predictor's arguments once and dispatches to the CPU or CUDA backend.

    ``single``: one model, results of shape (N,); otherwise a population, (N, models).
    """

    def __init__(self, models_or_plans: Sequence[Any], single: bool, threads: int | None, isa: str,
                 layer0: str | None, device: str, spin_ms: float | None = None,
                 workspace_mb: float | None = None) -> None:
        plans = [as_plan(m) for m in models_or_plans]
        mean = shared_mean(plans)
        if layer0 not in (None, "winograd", "direct"):
            raise ValueError(f"layer0 must be 'winograd' or 'direct', got {layer0!r}")
        if device == "cpu":  # the engine's bindings check threads and spin_ms (one place for the limits)
            from .cpu import CpuBackend

            _refuse(device, "the CUDA engine", "", workspace_mb=workspace_mb is not None)
            self._backend = CpuBackend(plans, mean, single, default_threads() if threads is None else index(threads),
                                       isa, layer0 != "direct", DEFAULT_SPIN_MS if spin_ms is None else float(spin_ms))
        elif device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
            from .cuda import CudaBackend

            _refuse(device, "the CPU engine", "the CUDA kernels run direct convolutions on the GPU's own schedule",
                    threads=threads is not None, isa=isa != "auto", spin_ms=spin_ms is not None,
                    **{"layer0='winograd'": layer0 == "winograd"})
            self._backend = CudaBackend(plans, mean, single, int(device[5:] or 0),
                                        256 if workspace_mb is None else workspace_mb)
        else:
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        self.plans = plans
        self.device = device

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

    def predict(self, images: Any, out: Any = None, check_finite: bool = True) -> Any:
        if check_finite:
            return self._backend.predict(images, out)
        _refuse(self.device, "the CUDA engine", "the CPU engine checks each image as it reads it",
                check_finite=self.isa != "cuda")
        return self._backend.predict(images, out, False)

    def __call__(self, images: Any, out: Any = None, check_finite: bool = True) -> Any:
        return self.predict(images, out, check_finite)


def _refuse(device: str, owner: str, why: str, **given: bool) -> None:
    """A ValueError naming the options given (True) that only ``owner`` honours."""
    names = [name for name, set_ in given.items() if set_]
    if names:
        raise ValueError(f"device {device!r}: {', '.join(names)} apply to {owner} only" + (f" ({why})" if why else ""))
