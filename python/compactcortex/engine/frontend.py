"""What every predictor shares: its arguments, checked once, and the choice of backend.

Images and weights are checked where they are read, in C++ (``csrc/common``); this module
checks the Python-side arguments (threads, layer0, device, models, ``out``) and hands each
predictor one backend: :class:`~compactcortex.engine.cpu.CpuBackend` or
:class:`~compactcortex.engine.cuda.CudaPredictor`, which take the same ``predict(images, out)``.
"""
from __future__ import annotations

from typing import Any, Sequence


from .inputs import DEFAULT_SPIN_MS, MAX_THREADS, as_plan, default_threads, shared_mean

__all__ = ["PredictorBase"]

class PredictorBase:
    """Checks a predictor's arguments once and dispatches to the CPU or CUDA backend.

    ``single``: one model, results of shape (N,); otherwise a population, (N, models).
    """

    def __init__(self, models_or_plans: Sequence[Any], single: bool, threads: int | None, isa: str,
                 layer0: str | None, device: str, spin_ms: float | None = None) -> None:
        plans = [as_plan(m) for m in models_or_plans]
        mean = shared_mean(plans)
        if layer0 not in (None, "winograd", "direct"):
            raise ValueError(f"layer0 must be 'winograd' or 'direct', got {layer0!r}")
        if threads is not None and not 1 <= int(threads) <= MAX_THREADS:
            raise ValueError(f"threads must be between 1 and {MAX_THREADS}, got {threads}")
        if spin_ms is not None and not 0 <= float(spin_ms) <= 1e4:
            raise ValueError(f"spin_ms must be between 0 and 10000, got {spin_ms}")
        if device == "cpu":
            from .cpu import CpuBackend

            self._backend = CpuBackend(plans, mean, single, default_threads() if threads is None else int(threads),
                                       isa, layer0 != "direct", DEFAULT_SPIN_MS if spin_ms is None else spin_ms)
        elif device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
            from .cuda import CudaPredictor, cuda_available, cuda_status

            ignored = [name for name, given in (("threads", threads is not None), ("isa", isa != "auto"),
                                                ("spin_ms", spin_ms is not None),
                                                ("layer0='winograd'", layer0 == "winograd")) if given]
            if ignored:
                raise ValueError(f"device {device!r}: {', '.join(ignored)} apply to the CPU engine only (the CUDA "
                                 "kernels run direct convolutions on the GPU's own schedule)")
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
