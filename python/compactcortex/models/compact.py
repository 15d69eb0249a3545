"""The paper's compact model: a 5-layer depthwise-separable CNN with a dense readout."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..files import (COMPACT_MODEL_FORMAT, atomic_path, meta_choice, meta_floats, meta_int, meta_ints, meta_json,
                     read_safetensors_meta)
from ..constants import DATASET_MEAN, IMAGE_SIZE, MAP_SIZE

__all__ = ["CompactModel", "DATASET_MEAN"]

# Keras BatchNormalization epsilon, the default for our own models.
KERAS_BN_EPS = 1e-3


class CompactModel(nn.Module):
    """Per-neuron compact CNN (Cowley et al., Nature 2026), exactly as the published Keras models.

    ========  ===========================================================  ==============
    layer     operation                                                    output (C,H,W)
    ========  ===========================================================  ==============
    0         conv 5x5, 3 -> n0, pad 2, bias; batchnorm; ReLU              n0, 112, 112
    1         depthwise 5x5 stride 2 (TF 'same': pad 1 before, 2 after);   n1, 56, 56
              pointwise n0 -> n1 + bias; batchnorm; ReLU
    2         as layer 1, n1 -> n2                                         n2, 28, 28
    3, 4      depthwise 5x5 stride 1 pad 2; pointwise; batchnorm; ReLU     n3|n4, 28, 28
    readout   dense over the map flattened in (H, W, C) order -> outputs   scalar
    ========  ===========================================================  ==============

    A model with ``outputs`` K > 1 is a population student: one trunk (layers 0-4) and one
    readout row per neuron; :meth:`single_output` cuts out one neuron's compact model.

    Args:
        nums_filters: filter counts ``(n0, n1, n2, n3, n4)``, each >= 1.
        bn_eps: batchnorm epsilon per layer (5 values). Keras used 1e-3; the published ``.pt``
            files already hold ``running_var + 1e-3`` in layers 1-4, so they load with
            ``(1e-3, 0, 0, 0, 0)``.
        mean: per-channel pixel mean (R, G, B) that inputs are recentred by (metadata: the
            forward pass takes already recentred images).
        outputs: number of readout outputs K (1: the paper's per-neuron model).
        backend: ``"torch"`` (PyTorch operations) or ``"engine"`` (the C++ training kernels of
            :mod:`compactcortex.models.engine_backend`: forward and backward, multi-threaded,
            masked filters skipped). Settable later as ``model.backend``; an engine model runs
            the PyTorch path where the kernels cannot (CUDA tensors, float64). Both compute the
            same function of the same parameters. ``model.engine_threads`` sets the kernels'
            threads (default: ``torch.get_num_threads()``).

    Filter masks (:meth:`set_filter_mask`) switch filters off without removing them: a masked
    filter's output is 0 in both backends, so its own and its readers' weights get zero gradient.

    ``forward(x)`` takes ``x`` of shape (N, 3, 112, 112): float pixels minus ``mean``, and returns
    the predicted response of shape (N,), or (N, K) when ``outputs`` K > 1 (the units of the training targets, e.g. spike counts
    per 100 ms bin).
    """

    def __init__(
        self,
        nums_filters: Sequence[int] = (100, 100, 100, 100, 100),
        bn_eps: float | Sequence[float] = KERAS_BN_EPS,
        mean: Sequence[float] = DATASET_MEAN,
        backend: str = "torch",
        outputs: int = 1,
    ) -> None:
        super().__init__()
        if int(outputs) < 1:
            raise ValueError(f"outputs must be >= 1, got {outputs}")
        n = tuple(int(v) for v in nums_filters)
        if len(n) != 5 or min(n) < 1:
            raise ValueError(f"nums_filters must be 5 integers >= 1, got {tuple(nums_filters)}")
        eps = (float(bn_eps),) * 5 if np.isscalar(bn_eps) else tuple(float(e) for e in bn_eps)
        if len(eps) != 5 or not all(0 <= e < float("inf") for e in eps):  # NaN fails too
            raise ValueError(f"bn_eps must be one or 5 finite values >= 0, got {bn_eps}")
        if len(tuple(mean)) != 3 or not all(np.isfinite(float(m)) for m in mean):
            raise ValueError(f"mean must be 3 finite pixel values, got {tuple(mean)}")
        self.nums_filters = n
        self.bn_eps = eps
        self.mean = tuple(float(m) for m in mean)
        self.provenance: dict = {}
        #: False for the authors' linear shared models (no ReLUs; PyTorch path only: the C++
        #: kernels always apply ReLU).
        self.relu = True
        self.backend = backend
        self.engine_threads: int | None = None
        self._masks: list[torch.Tensor | None] = [None] * 5

        self.layer0_conv = nn.Conv2d(3, n[0], 5, padding=2)
        self.layer0_bn = nn.BatchNorm2d(n[0], eps=eps[0])
        for i in range(1, 5):
            stride = 2 if i <= 2 else 1
            setattr(self, f"layer{i}_conv_depth",
                    nn.Conv2d(n[i - 1], n[i - 1], 5, stride=stride, groups=n[i - 1], bias=False))
            setattr(self, f"layer{i}_conv_point", nn.Conv2d(n[i - 1], n[i], 1))
            setattr(self, f"layer{i}_bn", nn.BatchNorm2d(n[i], eps=eps[i]))
        self.readout = nn.Linear(MAP_SIZE * MAP_SIZE * n[4], int(outputs))

    @property
    def num_outputs(self) -> int:
        """K, the number of readout outputs (1 for a per-neuron compact model)."""
        return self.readout.out_features

    def single_output(self, k: int) -> "CompactModel":
        """A per-neuron copy: the trunk (weights, statistics, masks) with readout row ``k`` only."""
        if not 0 <= k < self.num_outputs:
            raise ValueError(f"output {k} out of range: the model has {self.num_outputs}")
        one = CompactModel(self.nums_filters, self.bn_eps, self.mean, self.backend)
        state = {name: v for name, v in self.state_dict().items() if not name.startswith("readout.")}
        state["readout.weight"] = self.readout.weight.detach()[k:k + 1]
        state["readout.bias"] = self.readout.bias.detach()[k:k + 1]
        one.to(self.readout.weight.dtype)
        one.load_state_dict({name: v.clone() for name, v in state.items()})
        one._masks = [None if m is None else m.clone() for m in self._masks]
        one.engine_threads = self.engine_threads
        one.relu = self.relu
        one.provenance = {**self.provenance, "output": k}
        return one.train(self.training)

    @property
    def backend(self) -> str:
        """``"torch"`` or ``"engine"``: what :meth:`forward` (and so training) runs on."""
        return self._backend

    @backend.setter
    def backend(self, value: str) -> None:
        if value not in ("torch", "engine"):
            raise ValueError(f"backend must be 'torch' or 'engine', got {value!r}")
        self._backend = value

    def set_filter_mask(self, layer: int, mask) -> None:
        """Switch filters of ``layer`` (0-4) off: ``mask`` (n_layer,) is 1/True to keep a filter,
        0/False to mask it; None clears the layer's mask. At least one filter must stay."""
        if layer not in range(5):
            raise ValueError(f"layer must be 0-4, got {layer}")
        if mask is None:
            self._masks[layer] = None
            return
        m = torch.as_tensor(np.asarray(mask))
        if m.shape != (self.nums_filters[layer],):
            raise ValueError(f"mask of layer {layer} must have shape ({self.nums_filters[layer]},), "
                             f"got {tuple(m.shape)}")
        if m.dtype != torch.bool:
            if not torch.all((m == 0) | (m == 1)):
                raise ValueError(f"mask of layer {layer} must hold only 0/1 or booleans")
            m = m != 0
        if not m.any():
            raise ValueError(f"mask of layer {layer} masks every filter; at least one must stay")
        self._masks[layer] = m.clone()

    def filter_masks(self) -> list[torch.Tensor]:
        """The 5 layers' masks as bool tensors (n_layer,), True = kept (all True when unset)."""
        return [torch.ones(n, dtype=torch.bool) if m is None else m.clone()
                for n, m in zip(self.nums_filters, self._masks)]

    def _masked(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        m = self._masks[layer]
        return x if m is None else x * m.to(device=x.device, dtype=x.dtype).view(1, -1, 1, 1)

    def features(self, x: torch.Tensor, upto: int = 4) -> torch.Tensor:
        """Activations after layer ``upto`` (0-4), shape (N, n_upto, H, W) (PyTorch path)."""
        act = F.relu if self.relu else (lambda t: t)
        x = self._masked(act(self.layer0_bn(self.layer0_conv(x))), 0)
        for i in range(1, upto + 1):
            # TF 'same' padding: stride 2 on an even size pads 1 before and 2 after.
            x = F.pad(x, (1, 2, 1, 2) if i <= 2 else (2, 2, 2, 2))
            x = getattr(self, f"layer{i}_conv_depth")(x)
            x = act(getattr(self, f"layer{i}_bn")(getattr(self, f"layer{i}_conv_point")(x)))
            x = self._masked(x, i)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"expected input of shape (N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(x.shape)}")
        if self._backend == "engine":
            from .engine_backend import engine_forward, engine_usable

            if engine_usable(self, x):
                return engine_forward(self, x)
        x = self.features(x)
        # Flatten in (H, W, C) order, as the Keras Flatten on channels-last maps did.
        y = self.readout(x.permute(0, 2, 3, 1).flatten(1))
        return y.squeeze(1) if self.num_outputs == 1 else y

    def num_parameters(self) -> int:
        """Number of trainable parameters (weights, biases, batchnorm scale and shift)."""
        return sum(p.numel() for p in self.parameters())

    # --- own file format: safetensors tensors + JSON metadata, written atomically ---

    def save(self, path: str | Path) -> None:
        """Save to ``path`` (safetensors; metadata: filter counts, epsilons, mean, provenance)."""
        from safetensors.torch import save_file

        meta = {
            "format": COMPACT_MODEL_FORMAT,
            "nums_filters": json.dumps(list(self.nums_filters)),
            "bn_eps": json.dumps(list(self.bn_eps)),
            "mean": json.dumps(list(self.mean)),
            "provenance": json.dumps(self.provenance),
            "outputs": str(self.num_outputs),
            "activation": "relu" if self.relu else "linear",
        }
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | Path, dtype: torch.dtype | None = None) -> "CompactModel":
        """Load a model written by :meth:`save`. Raises ValueError naming the file and key."""
        from safetensors import safe_open


        meta = read_safetensors_meta(path, COMPACT_MODEL_FORMAT)
        n = meta_ints(meta, "nums_filters", path, 5, 1, 4096)
        eps = meta_floats(meta, "bn_eps", path, 5, 0.0, 1.0)
        mean = meta_floats(meta, "mean", path, 3, -1e3, 1e3)
        outputs = meta_int(meta, "outputs", path, 1, 1_000_000, default=1)
        relu = meta_choice(meta, "activation", path, ("relu", "linear"), default="relu") == "relu"
        prov = meta_json(meta, "provenance", path, default={})
        if not isinstance(prov, dict):
            raise ValueError(f"{path}: metadata provenance is not a JSON object")
        model = build_within_file(lambda: cls(n, bn_eps=eps, mean=mean, outputs=outputs), path)
        model.provenance, model.relu = prov, relu
        try:
            with safe_open(str(path), framework="pt") as f:
                state = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors' own errors for damaged tensors
            raise ValueError(f"{path}: unreadable tensors ({str(e)[:200]})") from None
        load_state_checked(model, state, str(path))
        if dtype is not None:
            model.to(dtype)
        return model.eval()


M = TypeVar("M", bound=nn.Module)


def build_within_file(build: Callable[[], M], path: str | Path) -> M:
    """``build()``, after checking on torch's meta device (no memory) that the module it makes
    fits in the file at ``path``.

    A file's header or metadata declares the sizes (filters, neurons) of the module to build,
    and only its tensors, read later, show whether it holds them. A module with more values than
    the file has bytes for (2 per value: float16 at the least) is refused before any allocation,
    so a small file that lies about its sizes never allocates more than twice its own size.

    Raises:
        ValueError: naming the file, when the declared module cannot fit.
    """
    with torch.device("meta"):
        meta = build()
    values = sum(t.numel() for t in meta.state_dict().values())
    size = Path(path).stat().st_size
    if 2 * values > size:
        raise ValueError(f"{path}: declares a model of {values:,} values, more than its {size:,} "
                         f"bytes can hold (corrupt or forged sizes)")
    return build()


def load_state_checked(model: nn.Module, state: dict, source: str, cast: bool = True) -> None:
    """``load_state_dict`` after checking every tensor, with errors that name the file and key:
    the keys, shapes and kinds (real floats where the module has floats) the module expects,
    finite values, batchnorm variances >= 0, and ``response_std`` > 0 where a module has one.

    ``cast``: first give the module the file's float dtype (that of its ``layer0_conv.weight``);
    otherwise values are converted to the module's dtypes.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(f"{source}: missing key {missing[0]!r} (and {len(missing) - 1} more)" if len(missing) > 1
                         else f"{source}: missing key {missing[0]!r}")
    extra = [k for k in state if k not in expected]
    if extra:
        raise ValueError(f"{source}: unexpected key {str(extra[0])[:80]!r}")
    for k, v in expected.items():
        got = state[k]
        if tuple(got.shape) != tuple(v.shape):
            sizes = f" for filters {model.nums_filters}" if hasattr(model, "nums_filters") else ""
            raise ValueError(f"{source}: key {k!r} has shape {tuple(got.shape)}, expected {tuple(v.shape)}{sizes}")
        if v.is_floating_point() and not (got.is_floating_point() and not got.is_complex()):
            raise ValueError(f"{source}: key {k!r} holds {got.dtype}; expected real floats")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise ValueError(f"{source}: key {k!r} holds NaN or infinity")
        if k.endswith("running_var") and (got < 0).any():
            raise ValueError(f"{source}: key {k!r} holds a negative variance")
        if k.endswith("response_std") and (got <= 0).any():
            raise ValueError(f"{source}: key {k!r} holds a standard deviation <= 0")
    if cast:
        dtype = next(v.dtype for k, v in state.items() if k.endswith("layer0_conv.weight"))
        model.to(dtype)
    model.load_state_dict(state)
