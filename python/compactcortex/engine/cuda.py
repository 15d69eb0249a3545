"""CudaPredictor: compact-model inference on an NVIDIA GPU through the CUDA engine.

The CUDA engine is the optional extension module ``compactcortex._engine_cuda``, built when a
CUDA compiler is present at build time. It links the CUDA runtime statically, so it imports on
any machine; :func:`cuda_available` says whether it can run here and :func:`cuda_status` why not.

Neither this module nor the extension imports torch; torch is imported only when
:meth:`CudaPredictor.predict` is given a torch tensor.

Example::

    from compactcortex.engine.cuda import CudaPredictor, cuda_available
    if cuda_available():
        pred = CudaPredictor(plans)               # a Plan, or a list of Plans (a population)
        y = pred.predict(images_cuda_tensor)      # torch CUDA tensor in, (N, models) tensor out
"""
from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import numpy as np

from .errors import BadImageError
from .inputs import as_plan, host_out, leading_dim, shared_mean
from .plan import Plan

__all__ = ["CudaPredictor", "cuda_available", "cuda_status"]

_MODULE = "compactcortex._engine_cuda"
_status: str | None = None


def _module():
    """The extension module, or None where it was not built or does not import."""
    try:
        return importlib.import_module(_MODULE)
    except ImportError:
        return None


def cuda_status() -> str:
    """Whether the CUDA engine can run here, in words.

    One of ``"available: <device name> (...)"``, ``"not built: no CUDA compiler at build
    time ..."``, ``"not importable: <error>"`` or ``"no CUDA device: <driver error>"``.
    """
    global _status
    if _status is None:
        _status = _probe()
    return _status


def cuda_available() -> bool:
    """True where the CUDA engine was built and a CUDA device is usable."""
    return cuda_status().startswith("available:")


def _probe() -> str:
    try:
        spec = importlib.util.find_spec(_MODULE)
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None:
        return ("not built: no CUDA compiler at build time (or built with COMPACTCORTEX_CUDA=OFF); "
                "rebuild with nvcc on PATH to get compactcortex._engine_cuda")
    try:
        mod = importlib.import_module(_MODULE)
    except ImportError as e:
        return f"not importable: {e}"
    count, error = mod.device_count()
    if count < 0:
        if mod.driver_version() == 0:
            error += " (no NVIDIA driver found)"
        else:
            error += (f" (driver supports CUDA {_version(mod.driver_version())}, the module needs "
                      f"{_version(mod.runtime_version())})")
        return f"no CUDA device: {error}"
    if count == 0:
        return "no CUDA device: the CUDA runtime found no devices"
    return (f"available: {mod.device_name(0)} (compute capability {mod.device_capability(0)}, "
            f"{count} device{'s' if count > 1 else ''}, CUDA runtime {_version(mod.runtime_version())}, "
            f"driver {_version(mod.driver_version())})")


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "is_cuda")


class CudaPredictor:
    """Predict one compact model's, or a population's, responses on an NVIDIA GPU.

    Args:
        plan_or_plans: a :class:`Plan`, a path to a saved Plan or a ``CompactModel`` (compiled
            here, which needs torch); or a list of these (a population: the models may differ in
            their filter counts; all must share the input mean).
        device: CUDA device index.
        workspace_mb: device memory for feature maps. Work runs in chunks of (model, image) pairs
            that fit it; more gives fewer, larger kernel launches. The workspace is allocated on
            the first call and grows only for larger batches.

    Kernels are float32 (fixed summation order: results repeat exactly run to run) and agree
    with the CPU engine to ~1e-6 of the output scale. Calls from several threads are safe; work
    of consecutive calls is ordered on the device even across streams.
    """

    def __init__(self, plan_or_plans: Any, device: int = 0, workspace_mb: float = 256) -> None:
        self._single = not isinstance(plan_or_plans, (list, tuple))
        plans = [as_plan(p) for p in ([plan_or_plans] if self._single else plan_or_plans)]
        mean = shared_mean(plans)
        if workspace_mb <= 0:
            raise ValueError(f"workspace_mb must be > 0, got {workspace_mb}")
        if not cuda_available():
            raise RuntimeError(f"the CUDA engine cannot run here: {cuda_status()}")
        self.plans = plans
        self._runner = _module().Runner([p.weights_tuple() for p in plans], mean, int(device),
                                        int(workspace_mb * (1 << 20)))

    # The front ends' backend interface (see compactcortex.engine.frontend).
    isa = "cuda"
    threads = 0
    layer0 = "direct"

    @property
    def plan(self) -> Plan:
        """The (first) model's plan."""
        return self.plans[0]

    @property
    def num_models(self) -> int:
        return len(self.plans)

    @property
    def device(self) -> int:
        return self._runner.device

    @property
    def max_pairs(self) -> int:
        """(model, image) pairs per chunk of kernel launches (set by ``workspace_mb``)."""
        return self._runner.max_pairs

    @property
    def device_bytes(self) -> int:
        """Device memory held now: weights and workspace."""
        return self._runner.device_bytes

    def macs_per_image(self) -> int:
        return sum(p.macs_per_image() for p in self.plans)

    def executed_macs_per_image(self) -> int:
        """The direct-convolution count: the CUDA kernels compute layer 0 directly, unpadded."""
        return self.macs_per_image()

    def predict(self, images: Any, out: Any = None, check_finite: bool = True) -> Any:
        """Predicted responses: (N,) float32 for one model, (N, models) for a list of models.

        Args:
            images: (N, 112, 112, 3) or (N, 3, 112, 112); float32 / float64 recentred pixels
                (pixel minus the dataset mean) or uint8 raw pixels 0-255 (recentred here).
                A torch CUDA tensor (on this predictor's device) is read in place, with any
                strides (zero-copy via DLPack), and the work is enqueued on the current torch
                stream of that device; the result is a torch CUDA tensor. A numpy array (or a
                torch CPU tensor) is copied to the device; the result is a numpy array.
            out: optional preallocated result of the shape above, float32, C-contiguous: a
                torch CUDA tensor for CUDA input, a numpy array otherwise.
            check_finite: raise ValueError if an image holds NaN or infinity. This waits for
                the stream (for CUDA input); with False the call returns as soon as the work is
                enqueued, and such images give NaN outputs.

        Raises:
            ValueError: wrong shape, empty batch, wrong device, or (check_finite) non-finite
                pixels.
            TypeError: unsupported dtype or array type.
        """
        if _is_torch(images):
            if images.is_cuda:
                return self._predict_torch(images, out, check_finite)
            images = images.detach().cpu().resolve_conj().resolve_neg().numpy()
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
        n = leading_dim(images)
        images = np.ascontiguousarray(images)
        out = host_out(out, (n,) if self._single else (n, self.num_models))
        bad = self._runner.predict_host(images, out, check_finite)
        _raise_bad(bad)
        return out

    __call__ = predict

    def _predict_torch(self, x: Any, out: Any, check_finite: bool) -> Any:
        import torch

        x = x.detach()
        if x.device.index != self.device:
            raise ValueError(f"images are on {x.device}, the predictor on cuda:{self.device}")
        n = leading_dim(x)
        shape = (n,) if self._single else (n, self.num_models)
        if out is None:
            out = torch.empty(shape, dtype=torch.float32, device=x.device)
        elif not (isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.device == x.device
                  and tuple(out.shape) == shape and out.is_contiguous()):
            raise ValueError(f"out must be a C-contiguous float32 tensor of shape {shape} on {x.device}")
        with torch.cuda.device(x.device):
            stream = torch.cuda.current_stream(x.device).cuda_stream
            bad = self._runner.predict_device(x, out.detach(), stream, check_finite)
        _raise_bad(bad)
        return out


def _raise_bad(bad: int) -> None:
    if bad >= 0:
        raise BadImageError(bad)
