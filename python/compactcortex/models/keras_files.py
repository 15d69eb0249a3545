"""Read the authors' Keras 3 files (``.keras``: a zip of ``config.json`` + ``model.weights.h5``)
without TensorFlow or Keras: the config is JSON, the weights are HDF5 read with h5py.

Two architectures are recognised, and anything else is refused with the reason:

* a per-neuron compact model (``compact_model_<session>_neuron<k>.keras``): layers 0-4, then
  Flatten and ``Dense(1)`` -> :class:`CompactModel`;
* a shared compact model (``shared_compact_model_<N>filters.keras``): layers 0-4, then a 1x1
  ``Conv2D`` to K channels (``mixing_stage``) and a 28x28 ``valid`` ``DepthwiseConv2D``
  (``spatial_pool_stage``) -> :class:`SharedCompactModel`; of all seven kinds, including the
  linear one (no ReLUs: ``model.relu`` is False, and it runs on PyTorch only).
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..constants import MAP_SIZE
from ..files import ZIP_ERRORS, read_zip_member
from .compact import KERAS_BN_EPS, CompactModel

__all__ = ["load_keras", "SharedCompactModel", "shared_model_path", "shared_model_filters", "SHARED_MODEL_DIRS",
           "SHARED_MODEL_SESSIONS"]

# Layers 0-4 as Keras lays them out: (class, name, kernel, strides); each is followed by a
# BatchNormalization and a ReLU Activation.
_TRUNK = [("Conv2D", "layer0_conv", 5, 1)] + [("SeparableConv2D", f"layer{i}_conv", 5, 2 if i <= 2 else 1)
                                             for i in range(1, 5)]


class SharedCompactModel(CompactModel):
    """The authors' shared compact model: one trunk for many neurons and a factorised readout.

    The trunk is a :class:`CompactModel`'s layers 0-4; the readout of output ``j`` is
    ``sum_hw spatial[j,h,w] * (sum_c mixing[j,c] x[c,h,w] + mixing_bias[j]) + spatial_bias[j]``
    (Keras: 1x1 Conv2D to K channels, then a 28x28 ``valid`` DepthwiseConv2D, then Flatten).
    Input (N, 3, 112, 112) recentred pixels; output (N, K).
    """

    def __init__(self, nums_filters, outputs: int, bn_eps=KERAS_BN_EPS) -> None:
        super().__init__(nums_filters, bn_eps=bn_eps, outputs=1)
        del self.readout  # replaced by the factorised readout below
        self.mixing = nn.Conv2d(self.nums_filters[4], int(outputs), 1)
        self.spatial = nn.Parameter(torch.zeros(int(outputs), MAP_SIZE, MAP_SIZE))
        self.spatial_bias = nn.Parameter(torch.zeros(int(outputs)))

    @property
    def num_outputs(self) -> int:
        return self.mixing.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mixing(self.features(x))                       # (N, K, 28, 28)
        return (m * self.spatial).sum((2, 3)) + self.spatial_bias

    def save(self, path) -> None:
        raise ValueError("a SharedCompactModel is read from its .keras file and not saved; save "
                         "single_output(k) (a CompactModel) or a teacher built on it instead")

    def single_output(self, k: int) -> CompactModel:
        """Output ``k`` as an exact per-neuron :class:`CompactModel` (the readout made dense)."""
        if not 0 <= k < self.num_outputs:
            raise ValueError(f"output {k} out of range: the model has {self.num_outputs}")
        one = CompactModel(self.nums_filters, self.bn_eps, self.mean)
        state = {n: v for n, v in self.state_dict().items()
                 if not n.startswith(("mixing.", "spatial"))}
        s, m = self.spatial.detach()[k], self.mixing.weight.detach()[k, :, 0, 0]   # (28,28), (C,)
        state["readout.weight"] = (s[:, :, None] * m).reshape(1, -1)               # (H, W, C) order
        state["readout.bias"] = (self.mixing.bias.detach()[k] * s.sum() + self.spatial_bias.detach()[k]).reshape(1)
        one.to(self.spatial.dtype)
        one.load_state_dict({n: v.clone() for n, v in state.items()})
        one.provenance = {**self.provenance, "output": k}
        return one.eval()


def _snake(name: str) -> str:
    """Keras' automatic layer path: ``SeparableConv2D`` -> ``separable_conv2d``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


_MAX_MEMBER_BYTES = 1 << 30  # a shared compact model's weights are ~10 MB


def _dataset(path: Path, ds) -> np.ndarray:
    """An HDF5 dataset as float32, its declared size checked before it is read (a compressed
    dataset can declare far more than the file holds)."""
    if ds.size * 4 > _MAX_MEMBER_BYTES:
        raise ValueError(f"{path}: weight {ds.name} declares {ds.shape}, more than {_MAX_MEMBER_BYTES:,} bytes")
    return np.asarray(ds, np.float32)


def _read(path: Path) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """The config's layers, and each layer's weights by layer name, from a ``.keras`` file."""
    import h5py

    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            def member(name: str) -> bytes:
                return read_zip_member(z, name, _MAX_MEMBER_BYTES, f"{path}: {name}")

            config = json.loads(member("config.json"))
            with h5py.File(io.BytesIO(member("model.weights.h5")), "r") as h5:
                layers = config["config"]["layers"]
                # model.weights.h5 names layers by class (conv2d, conv2d_1, ...) in config order.
                counts: dict[str, int] = {}
                weights: dict[str, list[np.ndarray]] = {}
                for layer in layers:
                    base = _snake(layer["class_name"])
                    n = counts.get(base, 0)
                    counts[base] = n + 1
                    group = h5.get(f"layers/{base}_{n}" if n else f"layers/{base}")
                    vars_ = group.get("vars") if group is not None else None
                    weights[layer["name"]] = ([_dataset(path, vars_[str(i)]) for i in range(len(vars_))]
                                              if vars_ is not None else [])
    except (*ZIP_ERRORS, KeyError, json.JSONDecodeError, TypeError) as e:
        raise ValueError(f"{path}: not a readable Keras 3 .keras file ({type(e).__name__}: {e})") from None
    return layers, weights


def _expect(path: Path, layer: dict, cls: str, name: str | None = None, **config) -> None:
    if layer["class_name"] != cls or (name is not None and layer["name"] != name):
        raise ValueError(f"{path}: expected a {cls} layer{f' {name!r}' if name else ''}, found "
                         f"{layer['class_name']} {layer['name']!r}; not a compact-model architecture")
    for key, want in config.items():
        got = layer["config"].get(key)
        if got != want:
            raise ValueError(f"{path}: layer {layer['name']!r} has {key}={got!r}, expected {want!r}")


def _weights(path: Path, weights: dict, name: str, shapes: list[tuple]) -> list[torch.Tensor]:
    got = weights.get(name, [])
    if [w.shape for w in got] != shapes:
        raise ValueError(f"{path}: layer {name!r} holds weights of shapes {[w.shape for w in got]}, expected {shapes}")
    return [torch.from_numpy(w) for w in got]


def load_keras(path: str | Path, dtype: torch.dtype = torch.float32) -> CompactModel:
    """Load one of the authors' ``.keras`` files into our torch modules (no TensorFlow needed).

    Returns a :class:`CompactModel` (per-neuron compact model) or a :class:`SharedCompactModel`
    (shared compact model, K outputs), in eval mode, computing the same function as the Keras
    model. Inputs are recentred images (N, 3, 112, 112); outputs (N,) or (N, K).

    Raises:
        ValueError: the file is missing or not a Keras 3 zip, or its layers are not one of the
            two compact-model architectures (the message names the first layer that differs).
    """
    path = Path(path)
    layers, weights = _read(path)
    # With ReLUs: input + 5 x (conv, batchnorm, ReLU) + head; the linear shared model has no ReLUs.
    relu = len(layers) > 1 + 5 * 2 + 3 and layers[3]["class_name"] == "Activation"
    if len(layers) < (17 if relu else 14):
        raise ValueError(f"{path}: {len(layers)} layers; a compact model has at least 17 (14 without ReLUs)")
    _expect(path, layers[0], "InputLayer")
    shape = layers[0]["config"].get("batch_shape")
    if shape is not None and list(shape[1:]) != [112, 112, 3]:
        raise ValueError(f"{path}: input shape {shape[1:]}, expected [112, 112, 3]")
    nums, cin, i = [], 3, 1
    state: dict[str, torch.Tensor] = {}
    for li, (cls, name, kernel, stride) in enumerate(_TRUNK):
        _expect(path, layers[i], cls, name, kernel_size=[kernel, kernel], strides=[stride, stride], padding="same",
                activation="linear", use_bias=True)
        f = int(layers[i]["config"]["filters"])
        if cls == "Conv2D":
            k, b = _weights(path, weights, name, [(5, 5, cin, f), (f,)])
            state["layer0_conv.weight"], state["layer0_conv.bias"] = k.permute(3, 2, 0, 1), b
        else:
            _expect(path, layers[i], cls, name, depth_multiplier=1)
            d, p, b = _weights(path, weights, name, [(5, 5, cin, 1), (1, 1, cin, f), (f,)])
            state[f"layer{li}_conv_depth.weight"] = d.permute(2, 3, 0, 1)
            state[f"layer{li}_conv_point.weight"] = p.permute(3, 2, 0, 1)
            state[f"layer{li}_conv_point.bias"] = b
        bn = layers[i + 1]
        _expect(path, bn, "BatchNormalization", center=True, scale=True)
        if bn["config"].get("axis") not in (-1, 3, [3], [-1]) or float(bn["config"]["epsilon"]) != KERAS_BN_EPS:
            raise ValueError(f"{path}: layer {bn['name']!r}: expected channel-axis batchnorm with epsilon 1e-3")
        g, beta, mean, var = _weights(path, weights, bn["name"], [(f,)] * 4)
        for key, v in zip(("weight", "bias", "running_mean", "running_var"), (g, beta, mean, var)):
            state[f"layer{li}_bn.{key}"] = v
        state[f"layer{li}_bn.num_batches_tracked"] = torch.tensor(0)
        if relu:
            _expect(path, layers[i + 2], "Activation", activation="relu")
        nums.append(f)
        cin, i = f, i + (3 if relu else 2)
    head = layers[i:]
    if [h["class_name"] for h in head] == ["Flatten", "Dense"]:
        _expect(path, head[1], "Dense", units=1, activation="linear", use_bias=True)
        w, b = _weights(path, weights, head[1]["name"], [(MAP_SIZE * MAP_SIZE * cin, 1), (1,)])
        state["readout.weight"], state["readout.bias"] = w.T.contiguous(), b
        model: CompactModel = CompactModel(nums, bn_eps=KERAS_BN_EPS)
    elif [h["class_name"] for h in head] == ["Conv2D", "DepthwiseConv2D", "Flatten"]:
        _expect(path, head[0], "Conv2D", kernel_size=[1, 1], activation="linear", use_bias=True)
        _expect(path, head[1], "DepthwiseConv2D", kernel_size=[MAP_SIZE, MAP_SIZE], padding="valid",
                activation="linear", use_bias=True, depth_multiplier=1)
        k = int(head[0]["config"]["filters"])
        mw, mb = _weights(path, weights, head[0]["name"], [(1, 1, cin, k), (k,)])
        sw, sb = _weights(path, weights, head[1]["name"], [(MAP_SIZE, MAP_SIZE, k, 1), (k,)])
        state["mixing.weight"], state["mixing.bias"] = mw.permute(3, 2, 0, 1), mb
        state["spatial"], state["spatial_bias"] = sw[:, :, :, 0].permute(2, 0, 1), sb
        model = SharedCompactModel(nums, k)
    else:
        raise ValueError(f"{path}: after layer 4 come {[h['class_name'] for h in head]}; expected "
                         "[Flatten, Dense] (compact model) or [Conv2D, DepthwiseConv2D, Flatten] (shared model)")
    model.load_state_dict({n: v.contiguous() for n, v in state.items()})
    model.to(dtype).eval()
    model.relu = relu
    model.provenance = {"source": "Cowley et al. Keras model", "file": path.name}
    if isinstance(model, SharedCompactModel):
        # Every kind of the authors' shared models was fitted to these sessions' neurons (their
        # readme): on them a trunk of theirs is a reference, not a held-out result.
        model.provenance["fitted_to_sessions"] = list(SHARED_MODEL_SESSIONS)
    m = re.search(r"compact_model_(\d+)_neuron(\d+)\.keras$", path.name)
    if m:
        model.provenance.update(session=m.group(1), neuron=int(m.group(2)))
    return model


#: The test sessions whose 219 neurons every shared compact model was fitted to.
SHARED_MODEL_SESSIONS = ("190923", "201025", "210225", "211022")

# Where the shared compact models sit: the layout of ../shared/data/v4, then that of the authors' repository.
SHARED_MODEL_DIRS = ("shared_compact_models/from_ensemble_model", "data_shared_compact_models/from_ensemble_model")


def shared_model_filters(name: str) -> int | None:
    """N for a backbone name ``"shared_compact_<N>"``, else None."""
    m = re.fullmatch(r"shared_compact_(\d+)", str(name))
    return int(m.group(1)) if m else None


def shared_model_path(root: str | Path, filters: int) -> Path:
    """``shared_compact_model_<filters>filters.keras`` under ``root``. Raises ValueError naming
    the folders looked in and the sizes found there."""
    root = Path(root)
    found = []
    for sub in SHARED_MODEL_DIRS:
        p = root / sub / f"shared_compact_model_{int(filters)}filters.keras"
        if p.is_file():
            return p
        found += sorted(int(m.group(1)) for q in (root / sub).glob("shared_compact_model_*filters.keras")
                        if (m := re.search(r"_(\d+)filters\.keras$", q.name)))
    raise ValueError(f"{root}: no shared compact model with {filters} filters (looked in "
                     f"{', '.join(SHARED_MODEL_DIRS)}; found sizes {found or 'none'})")
