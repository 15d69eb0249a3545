"""Predictor: fast compact-model inference on the CPU through the C++ engine (no torch needed)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _engine
from .plan import as_plan

__all__ = ["Predictor", "available_isas", "default_threads"]


def available_isas() -> list[str]:
    """Kernel variants this CPU can run, widest first ('emu512' is a test-only variant)."""
    return list(_engine.available_isas())


def default_threads() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Predictor:
    """Predict one compact model's responses to images with the C++ engine.

    Args:
        model_or_plan: a :class:`Plan`, a path to a saved Plan, or a ``CompactModel`` (compiled
            on the spot, which needs torch).
        threads: worker threads (default: the CPUs this process may use). A batch is split into
            whole images per thread; images left over are split by rows across the threads.
        isa: kernel variant, ``"auto"`` (widest the CPU supports), ``"avx512"``, ``"avx2"``,
            ``"sse2"`` or ``"reference"`` (scalar, for checking).
        device: ``"cpu"`` (the C++ engine) or ``"cuda"`` / ``"cuda:N"`` (the CUDA kernels of
            :class:`~compactcortex.engine.cuda.CudaPredictor`: torch CUDA tensors are read in
            place on the current stream and give torch CUDA outputs; numpy arrays are copied).
        layer0: ``"winograd"`` (default): layer 0 by Winograd F(4x4, 5x5), about 3x fewer
            operations than ``"direct"`` (the plain convolution), with float32 rounding errors of
            the same order (measured on the published models: ~1e-6 of the output scale).

    All buffers are allocated here, once; :meth:`predict` allocates nothing but its result
    (and nothing at all when given ``out``). Calls from several threads are safe; they run one
    after another.
    """

    def __init__(self, model_or_plan: Any, threads: int | None = None, isa: str = "auto",
                 layer0: str = "winograd", device: str = "cpu") -> None:
        plan = as_plan(model_or_plan)
        threads = default_threads() if threads is None else int(threads)
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if layer0 not in ("winograd", "direct"):
            raise ValueError(f"layer0 must be 'winograd' or 'direct', got {layer0!r}")
        self.plan = plan
        self._cuda = _cuda_predictor(plan, device)
        self._engine = None if self._cuda else _engine.Engine(
            plan.nums_filters, plan.w0, plan.b0, list(plan.dw), list(plan.pw), list(plan.pb),
            plan.readout, plan.readout_bias, plan.mean, threads, isa, layer0 == "winograd",
        )

    @property
    def isa(self) -> str:
        """The kernel variant in use ("cuda" on the GPU)."""
        return self._engine.isa if self._engine else "cuda"

    @property
    def threads(self) -> int:
        return self._engine.threads if self._engine else 0

    @property
    def layer0(self) -> str:
        """The layer-0 algorithm: "winograd" or "direct" (the CUDA kernels: "direct")."""
        return "winograd" if self._engine and self._engine.winograd else "direct"

    def predict(self, images: Any, out: np.ndarray | None = None) -> np.ndarray:
        """Predicted responses, shape (N,) float32, in the units the model was trained on.

        Args:
            images: numpy array or torch CPU tensor of shape (N, 112, 112, 3) or
                (N, 3, 112, 112). float32 / float64: recentred pixels (pixel minus the dataset
                mean, the published convention); uint8: raw pixels 0-255, recentred here.
                Any strides are read in place (no copy).
            out: optional float32 array of shape (N,) to write into.

        Raises:
            ValueError: wrong shape, empty batch, or an image holding NaN or infinity.
            TypeError: unsupported dtype or array type.
        """
        if self._cuda:
            return self._cuda.predict(images, out=out)
        images = _detach(images)
        n = _batch_size(images)
        if out is None:
            out = np.empty(n, dtype=np.float32)
        elif not (isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == (n,)
                  and out.flags.c_contiguous and out.flags.writeable):
            raise ValueError(f"out must be a writeable, contiguous float32 array of shape ({n},)")
        try:
            self._engine.predict(images, out)
        except TypeError as e:
            if "incompatible function arguments" in str(e):
                raise TypeError(
                    f"images must be a numpy array or torch CPU tensor of dtype float32, float64 or "
                    f"uint8; got {type(images).__name__} of dtype {getattr(images, 'dtype', None)}"
                ) from None
            raise
        return out

    __call__ = predict


def _cuda_predictor(plan_or_plans: Any, device: str):
    """A CudaPredictor for ``device`` "cuda[:N]", or None for "cpu"."""
    if device == "cpu":
        return None
    if not (device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    from .cuda import CudaPredictor, cuda_available, cuda_status

    if not cuda_available():
        raise RuntimeError(f"device {device!r} requested, but CUDA is not usable: {cuda_status()}")
    return CudaPredictor(plan_or_plans, device=int(device[5:] or 0) if ":" in device else 0)


def _detach(images: Any) -> Any:
    """A torch tensor without autograd history (DLPack refuses tensors that require grad)."""
    return images.detach() if hasattr(images, "detach") and hasattr(images, "__dlpack__") else images


def _batch_size(images: Any) -> int:
    shape = getattr(images, "shape", None)
    if shape is None:
        raise TypeError(f"images must be a numpy array or torch CPU tensor, got {type(images).__name__}")
    if len(shape) != 4:
        raise ValueError(f"images: expected a 4-d array (N,112,112,3) or (N,3,112,112), got shape {tuple(shape)}")
    return int(shape[0])
