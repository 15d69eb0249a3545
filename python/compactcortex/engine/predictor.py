"""Predictor: fast inference of one compact model (C++ engine on the CPU, or CUDA)."""
from __future__ import annotations

from typing import Any

from .frontend import PredictorBase
from .inputs import default_threads
from .plan import Plan

__all__ = ["Predictor", "default_threads"]


class Predictor(PredictorBase):
    """Predict one compact model's responses to images.

    Args:
        model_or_plan: a :class:`Plan`, a path to a saved Plan, or a ``CompactModel`` (compiled
            on the spot, which needs torch).
        threads: worker threads (default: the CPUs this process may use, at most
            ``OMP_NUM_THREADS``). A batch is split into whole images per thread; images left over
            are split by rows across the threads.
        isa: kernel variant, ``"auto"`` (widest the CPU supports), ``"avx512"``, ``"avx2"``,
            ``"sse2"`` or ``"reference"`` (scalar, for checking).
        device: ``"cpu"`` (the C++ engine) or ``"cuda"`` / ``"cuda:N"`` (the CUDA engine: torch
            CUDA tensors are read in place on the current stream and give torch CUDA outputs;
            numpy arrays are copied over and give numpy outputs).
        layer0: ``"winograd"`` (the CPU default): layer 0 by Winograd F(4x4, 5x5), about 3x fewer
            operations than ``"direct"`` (the plain convolution; the CUDA kernels' only one), with
            float32 rounding errors of the same order (measured on the published models: ~1e-6 of
            the output scale).
        spin_ms: after each call the worker threads poll for the next one this long (ms, default
            0.2) before sleeping. On virtual machines a core that has slept runs the next calls
            slowly, so two threads only beat one after a pause if they kept polling: a stimulus
            loop that calls every T ms and wants the lowest latency sets ``spin_ms`` above T (and
            pays that CPU time). The CPU engine only.
        workspace_mb: GPU memory for feature maps (default 256). Work runs in chunks of (model,
            image) pairs that fit it; more gives fewer, larger kernel launches. CUDA only.

    Options the chosen device cannot honour (``threads``, ``isa`` other than ``"auto"``,
    ``spin_ms`` or ``layer0="winograd"`` on CUDA; ``workspace_mb`` or ``check_finite=False`` on
    the CPU) are refused with a ``ValueError``, not ignored.

    A batch smaller than the threads is split by rows, claimed from both ends as the threads
    arrive, so a thread that wakes late takes a smaller share instead of holding up the call.
    All buffers are allocated here, once; :meth:`predict` allocates nothing but its result
    (and nothing at all when given ``out``). Calls from several threads are safe; they run one
    after another.
    """

    def __init__(self, model_or_plan: Any, threads: int | None = None, isa: str = "auto",
                 layer0: str | None = None, device: str = "cpu", spin_ms: float | None = None,
                 workspace_mb: float | None = None) -> None:
        super().__init__([model_or_plan], True, threads, isa, layer0, device, spin_ms, workspace_mb)

    @property
    def plan(self) -> Plan:
        return self.plans[0]

    def predict(self, images: Any, out: Any = None, check_finite: bool = True) -> Any:
        """Predicted responses, shape (N,) float32, in the units the model was trained on.

        Args:
            images: numpy array or torch tensor of shape (N, 112, 112, 3) or (N, 3, 112, 112)
                (torch CUDA tensors on ``device="cuda"``). float32 / float64: recentred pixels
                (pixel minus the dataset mean, the published convention); uint8: raw pixels
                0-255, recentred here. Any strides are read in place (no copy).
            out: optional float32 C-contiguous array of shape (N,) to write into (a torch CUDA
                tensor for CUDA input).
            check_finite: the CPU engine always checks each image as it reads it. On CUDA,
                False skips the check so that the call returns as soon as the work is enqueued
                (such images then give NaN outputs).

        Raises:
            BadImageError (a ValueError): an image holding NaN, infinity or a value beyond +-1e6
                (float inputs are recentred pixels, within +-255); ``.index`` is its position.
            ValueError: wrong shape or empty batch.
            TypeError: unsupported dtype or array type.
        """
        return super().predict(images, out, check_finite)

    __call__ = predict
