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
from ..files import ZIP_ERRORS, open_regular, read_zip_member
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


#: The largest ``config.json`` read (the authors' is 17 KB) and ``model.weights.h5`` (1.4 MB for
#: 200 filters); both are checked against the zip's declared sizes before reading.
_MAX_CONFIG_BYTES = 1 << 20
_MAX_WEIGHTS_BYTES = 256 << 20
_MAX_FILTERS = 4096
#: Weights the config may declare, as a multiple of the weights file's size: Keras stores them
#: uncompressed, so this leaves room for compression and bounds what a small file can make us allocate.
_WEIGHTS_PER_FILE_BYTE = 4
_MAX_CHUNKS = 1 << 16  # per dataset: a one-value chunking of a large dataset reads for minutes


class _Arch:
    """What the config declares, before any weight is read: filter counts, ReLUs, the head, and
    the weight shapes (Keras order) each layer must hold."""

    def __init__(self) -> None:
        self.nums: list[int] = []
        self.relu = True
        self.head = ""          # "dense" | "shared"
        self.outputs = 1
        self.shapes: dict[str, list[tuple[int, ...]]] = {}   # layer name -> its weights' shapes
        self.batchnorms: list[str] = []
        self.heads: list[str] = []     # the readout's layers that hold weights
        self.groups: dict[str, str] = {}   # layer name -> HDF5 group (layers/conv2d_1, ...)


def _fail(path: Path, layer: dict, what: str) -> ValueError:
    return ValueError(f"{path}: layer {str(layer['name'])[:80]!r} {what}")


def _int_field(path: Path, layer: dict, key: str, lo: int, hi: int) -> int:
    v = layer["config"].get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise _fail(path, layer, f"has {key}={str(v)[:40]}; expected an integer in [{lo}, {hi}]")
    return v


def _expect(path: Path, layer: dict, cls: str, name: str | None = None, **config) -> None:
    if layer["class_name"] != cls or (name is not None and layer["name"] != name):
        raise ValueError(f"{path}: expected a {cls} layer{f' {name!r}' if name else ''}, found "
                         f"{layer['class_name'][:80]} {layer['name'][:80]!r}; not a compact-model architecture")
    for key, want in config.items():
        got = layer["config"].get(key)
        if got != want:
            raise _fail(path, layer, f"has {key}={str(got)[:40]}, expected {want!r}")


def _layers(path: Path, config: object) -> list[dict]:
    """The config's layer list, each layer checked to be {class_name: str, name: str, config: dict}."""
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list):
        raise ValueError(f"{path}: config.json holds no list of layers; not a Keras 3 model config")
    for i, layer in enumerate(layers):
        if not (isinstance(layer, dict) and isinstance(layer.get("class_name"), str)
                and isinstance(layer.get("name"), str) and isinstance(layer.get("config"), dict)):
            raise ValueError(f"{path}: config.json layer {i} is not an object with a class_name, a name and a config")
    return layers


def _architecture(path: Path, layers: list[dict]) -> _Arch:
    """Walk the config: one of the two compact-model architectures, or ValueError naming the first
    layer that differs."""
    arch = _Arch()
    # model.weights.h5 names layers by class (conv2d, conv2d_1, ...) in config order.
    counts: dict[str, int] = {}
    for layer in layers:
        base = _snake(layer["class_name"])
        n = counts.get(base, 0)
        counts[base] = n + 1
        arch.groups.setdefault(layer["name"], f"layers/{base}_{n}" if n else f"layers/{base}")
    if len(arch.groups) != len(layers):
        raise ValueError(f"{path}: two layers share a name; not a Keras model")
    # With ReLUs: input + 5 x (conv, batchnorm, ReLU) + head; the linear shared model has no ReLUs.
    arch.relu = len(layers) > 1 + 5 * 2 + 3 and layers[3]["class_name"] == "Activation"
    if len(layers) < (17 if arch.relu else 14):
        raise ValueError(f"{path}: {len(layers)} layers; a compact model has at least 17 (14 without ReLUs)")
    _expect(path, layers[0], "InputLayer")
    shape = layers[0]["config"].get("batch_shape")
    if shape is not None and shape != [None, 112, 112, 3]:
        raise _fail(path, layers[0], f"has input shape {str(shape)[:40]}, expected [None, 112, 112, 3]")
    cin, i = 3, 1
    for cls, name, kernel, stride in _TRUNK:
        conv = layers[i]
        _expect(path, conv, cls, name, kernel_size=[kernel, kernel], strides=[stride, stride], padding="same",
                activation="linear", use_bias=True)
        f = _int_field(path, conv, "filters", 1, _MAX_FILTERS)
        if cls == "Conv2D":
            arch.shapes[name] = [(5, 5, cin, f), (f,)]
        else:
            _expect(path, conv, cls, name, depth_multiplier=1)
            arch.shapes[name] = [(5, 5, cin, 1), (1, 1, cin, f), (f,)]
        bn = layers[i + 1]
        _expect(path, bn, "BatchNormalization", center=True, scale=True)
        if bn["config"].get("axis") not in (-1, 3, [3], [-1]) or bn["config"].get("epsilon") != KERAS_BN_EPS:
            raise _fail(path, bn, "is not a channel-axis batchnorm with epsilon 1e-3")
        arch.shapes[bn["name"]] = [(f,)] * 4
        arch.batchnorms.append(bn["name"])
        if arch.relu:
            _expect(path, layers[i + 2], "Activation", activation="relu")
        arch.nums.append(f)
        cin, i = f, i + (3 if arch.relu else 2)
    head = layers[i:]
    classes = [h["class_name"][:40] for h in head]
    if classes == ["Flatten", "Dense"]:
        _expect(path, head[1], "Dense", units=1, activation="linear", use_bias=True)
        arch.head, arch.heads = "dense", [head[1]["name"]]
        arch.shapes[head[1]["name"]] = [(MAP_SIZE * MAP_SIZE * cin, 1), (1,)]
    elif classes == ["Conv2D", "DepthwiseConv2D", "Flatten"]:
        _expect(path, head[0], "Conv2D", kernel_size=[1, 1], activation="linear", use_bias=True)
        _expect(path, head[1], "DepthwiseConv2D", kernel_size=[MAP_SIZE, MAP_SIZE], padding="valid",
                activation="linear", use_bias=True, depth_multiplier=1)
        k = arch.outputs = _int_field(path, head[0], "filters", 1, 100_000)
        arch.head, arch.heads = "shared", [head[0]["name"], head[1]["name"]]
        arch.shapes[head[0]["name"]] = [(1, 1, cin, k), (k,)]
        arch.shapes[head[1]["name"]] = [(MAP_SIZE, MAP_SIZE, k, 1), (k,)]
    else:
        raise ValueError(f"{path}: after layer 4 come {classes[:10]}; expected [Flatten, Dense] (compact "
                         "model) or [Conv2D, DepthwiseConv2D, Flatten] (shared model)")
    return arch


def _hard_child(path: Path, group, name: str, kind):
    """``group[name]`` if it is an object of type ``kind`` reached by a hard link; else ValueError.
    Soft and external links (which may point at other files) are not followed."""
    import h5py

    link = group.get(name, getlink=True)
    if link is None:
        raise ValueError(f"{path}: model.weights.h5 has no {group.name.rstrip('/')}/{name}")
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{path}: model.weights.h5 {group.name}/{name} is a {type(link).__name__}; only "
                         "objects stored in the file are read")
    obj = group[name]
    if not isinstance(obj, kind):
        raise ValueError(f"{path}: model.weights.h5 {obj.name} is not a {kind.__name__}")
    return obj


def _dataset(path: Path, ds, shape: tuple[int, ...]) -> np.ndarray:
    """An HDF5 dataset as float32, after checking (without reading it) that it holds floats of
    ``shape`` stored inside the file: external raw storage could read any local file (or block
    on a FIFO) and a virtual dataset maps other files' data."""
    if ds.shape != shape:
        raise ValueError(f"{path}: weight {ds.name} has shape {ds.shape}, expected {shape} from the config")
    if ds.dtype.kind != "f":
        raise ValueError(f"{path}: weight {ds.name} holds {ds.dtype}, expected floats")
    if ds.is_virtual or ds.id.get_create_plist().get_external_count():
        raise ValueError(f"{path}: weight {ds.name} is stored outside the file (external or virtual "
                         "dataset); refused")
    if ds.chunks is not None and np.prod([-(-s // c) for s, c in zip(ds.shape, ds.chunks)]) > _MAX_CHUNKS:
        raise ValueError(f"{path}: weight {ds.name} is split into more than {_MAX_CHUNKS:,} chunks")
    out = np.empty(shape, np.float32)
    if out.size:
        ds.read_direct(out)
    return out


def _read(path: Path) -> tuple[_Arch, dict[str, list[np.ndarray]]]:
    """The architecture the config declares, then each of its layers' weights by layer name."""
    import h5py

    if not path.exists():
        raise ValueError(f"{path}: no such file")
    try:
        with open_regular(path, str(path)) as f, zipfile.ZipFile(f) as z:  # a FIFO or device would block
            config = read_zip_member(z, "config.json", _MAX_CONFIG_BYTES, f"{path}: config.json")
            weights = read_zip_member(z, "model.weights.h5", _MAX_WEIGHTS_BYTES, f"{path}: model.weights.h5")
    except (*ZIP_ERRORS, KeyError) as e:
        raise ValueError(f"{path}: not a readable Keras 3 .keras file ({type(e).__name__}: {str(e)[:200]})") from None
    try:
        config = json.loads(config)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{path}: config.json is not JSON ({type(e).__name__}: {str(e)[:200]})") from None
    arch = _architecture(path, _layers(path, config))
    declared = 4 * sum(int(np.prod(s)) for shapes in arch.shapes.values() for s in shapes)
    if declared > _WEIGHTS_PER_FILE_BYTE * len(weights) + (1 << 20):
        raise ValueError(f"{path}: the config declares {declared:,} bytes of weights, far more than the "
                         f"{len(weights):,}-byte weights file holds")
    out: dict[str, list[np.ndarray]] = {}
    try:
        with h5py.File(io.BytesIO(weights), "r") as h5:
            for name, shapes in arch.shapes.items():
                group = h5
                for part in arch.groups[name].split("/") + ["vars"]:
                    group = _hard_child(path, group, part, h5py.Group)
                if len(group) != len(shapes):
                    raise ValueError(f"{path}: layer {name!r} holds {len(group)} weights, expected {len(shapes)}")
                out[name] = [_dataset(path, _hard_child(path, group, str(j), h5py.Dataset), s)
                             for j, s in enumerate(shapes)]
    except (OSError, KeyError, TypeError, RuntimeError) as e:  # h5py's errors for damaged files
        raise ValueError(f"{path}: model.weights.h5 is not readable HDF5 ({type(e).__name__}: {str(e)[:200]})") from None
    return arch, out


def load_keras(path: str | Path, dtype: torch.dtype = torch.float32) -> CompactModel:
    """Load one of the authors' ``.keras`` files into our torch modules (no TensorFlow needed).

    Returns a :class:`CompactModel` (per-neuron compact model) or a :class:`SharedCompactModel`
    (shared compact model, K outputs), in eval mode, computing the same function as the Keras
    model. Inputs are recentred images (N, 3, 112, 112); outputs (N,) or (N, K).

    The config is read (at most 1 MiB) and checked first; each weight is read only after its
    shape matches the config and its storage is found inside the file (external storage,
    external and soft links and virtual datasets are refused). Weights must be finite and
    batchnorm variances >= 0.

    Raises:
        ValueError: the file is missing or not a Keras 3 zip, or its layers are not one of the
            two compact-model architectures (the message names the first layer that differs),
            or its weights disagree with its config or are not finite.
    """
    from .compact import load_state_checked

    path = Path(path)
    arch, weights = _read(path)
    w = {name: [torch.from_numpy(a) for a in arrays] for name, arrays in weights.items()}
    state: dict[str, torch.Tensor] = {}
    for li, (cls, name, _, _) in enumerate(_TRUNK):
        if cls == "Conv2D":
            k, b = w[name]
            state["layer0_conv.weight"], state["layer0_conv.bias"] = k.permute(3, 2, 0, 1), b
        else:
            d, p, b = w[name]
            state[f"layer{li}_conv_depth.weight"] = d.permute(2, 3, 0, 1)
            state[f"layer{li}_conv_point.weight"] = p.permute(3, 2, 0, 1)
            state[f"layer{li}_conv_point.bias"] = b
    for li, bn in enumerate(arch.batchnorms):
        for key, v in zip(("weight", "bias", "running_mean", "running_var"), w[bn]):
            state[f"layer{li}_bn.{key}"] = v
        state[f"layer{li}_bn.num_batches_tracked"] = torch.tensor(0)
    if arch.head == "dense":
        wt, b = w[arch.heads[0]]
        state["readout.weight"], state["readout.bias"] = wt.T, b
        model: CompactModel = CompactModel(arch.nums, bn_eps=KERAS_BN_EPS)
    else:
        (mw, mb), (sw, sb) = (w[n] for n in arch.heads)
        state["mixing.weight"], state["mixing.bias"] = mw.permute(3, 2, 0, 1), mb
        state["spatial"], state["spatial_bias"] = sw[:, :, :, 0].permute(2, 0, 1), sb
        model = SharedCompactModel(arch.nums, arch.outputs)
    load_state_checked(model, {n: v.contiguous() for n, v in state.items()}, str(path))
    model.to(dtype).eval()
    model.relu = arch.relu
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
