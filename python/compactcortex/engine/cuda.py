"""The CUDA backend of the predictors: compact-model inference on an NVIDIA GPU.

The CUDA engine is the optional extension module ``compactcortex._engine_cuda``, built when a
CUDA compiler is present at build time. It links the CUDA runtime statically, so it imports on
any machine; :func:`cuda_available` says whether it can run here and :func:`cuda_status` why not.

Neither this module nor the extension imports torch; torch is imported only when a predictor
on the GPU is given a torch tensor.

Example::

    import compactcortex as cc
    if cc.cuda_available():
        pred = cc.PopulationPredictor(plans, device="cuda")  # or cc.Predictor(plan, device="cuda")
        y = pred.predict(images_cuda_tensor)     # torch CUDA tensor in, (N, models) tensor out
"""
from __future__ import annotations

import importlib
import importlib.util
import warnings
from typing import Any

import numpy as np

from .errors import BadImageError
from .inputs import as_plan, host_out, leading_dim, shared_mean
from .plan import Plan

__all__ = ["CudaBackend", "CudaPredictor", "cuda_available", "cuda_status"]

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


class CudaBackend:
    """The CUDA backend of :class:`~compactcortex.Predictor` and
    :class:`~compactcortex.PopulationPredictor` (``device="cuda"``): one model or a population.

    ``workspace_mb``: device memory for feature maps. Work runs in chunks of (model, image) pairs
    that fit it; more gives fewer, larger kernel launches. The workspace is allocated on the first
    call and grows only for larger batches.

    Kernels are float32 (fixed summation order: results repeat exactly run to run) and agree
    with the CPU engine to ~1e-6 of the output scale. Calls from several threads are safe; work
    of consecutive calls is ordered on the device even across streams.
    """

    # The front end's backend interface (see compactcortex.engine.frontend).
    isa = "cuda"
    threads = 0
    layer0 = "direct"

    def __init__(self, plans: list[Plan], mean: tuple[float, float, float], single: bool, device: int = 0,
                 workspace_mb: float = 256) -> None:
        if not workspace_mb > 0:
            raise ValueError(f"workspace_mb must be > 0, got {workspace_mb}")
        if not cuda_available():
            raise RuntimeError(f"the CUDA engine cannot run here: {cuda_status()}")
        self._single = single
        self.plans = plans
        self._runner = _module().Runner([p.weights_tuple() for p in plans], mean, int(device),
                                        int(workspace_mb * (1 << 20)))

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

    def executed_macs_per_image(self) -> int:
        """The direct-convolution count: the CUDA kernels compute layer 0 directly, unpadded."""
        return sum(p.macs_per_image() for p in self.plans)

    def predict(self, images: Any, out: Any = None, check_finite: bool = True) -> Any:
        """See :meth:`compactcortex.Predictor.predict`. A torch CUDA tensor on this device is read
        in place (DLPack) on the current stream and gives a torch CUDA result; numpy arrays and
        torch CPU tensors are copied over and give numpy results."""
        if _is_torch(images):
            if images.is_cuda:
                return self._predict_torch(images, out, check_finite)
            images = images.detach().cpu().resolve_conj().resolve_neg().numpy()
        if not isinstance(images, np.ndarray):
            raise TypeError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
        n = leading_dim(images)
        images = np.ascontiguousarray(images)
        out = host_out(out, (n,) if self._single else (n, len(self.plans)))
        _raise_bad(self._runner.predict_host(images, out, check_finite))
        return out

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


class CudaPredictor(CudaBackend):
    """Deprecated: use ``Predictor(model, device="cuda")`` or ``PopulationPredictor(models,
    device="cuda")``, which take ``workspace_mb`` and ``predict(..., check_finite=)`` too.

    ``plan_or_plans``: one model (results (N,)) or a list (a population, (N, models)).
    """

    def __init__(self, plan_or_plans: Any, device: int = 0, workspace_mb: float = 256) -> None:
        warnings.warn("compactcortex.engine.cuda.CudaPredictor is deprecated; use compactcortex.Predictor("
                      "model, device='cuda') or compactcortex.PopulationPredictor(models, device='cuda')",
                      FutureWarning, stacklevel=2)
        single = not isinstance(plan_or_plans, (list, tuple))
        plans = [as_plan(p) for p in ([plan_or_plans] if single else plan_or_plans)]
        super().__init__(plans, shared_mean(plans), single, device, workspace_mb)

    @property
    def plan(self) -> Plan:
        return self.plans[0]

    @property
    def num_models(self) -> int:
        return len(self.plans)

    def macs_per_image(self) -> int:
        return sum(p.macs_per_image() for p in self.plans)

    __call__ = CudaBackend.predict


def _raise_bad(bad: int) -> None:
    if bad >= 0:
        raise BadImageError(bad)
