"""Property tests (hypothesis): the engine against the float64 reference on drawn models and
inputs, file loaders on mutated files, metrics on drawn NaN patterns.

Example counts come from the hypothesis profile: ``ci`` (the default, bounded so the suite stays
fast) or ``long`` for a local soak::

    HYPOTHESIS_PROFILE=long python -m pytest -q tests/test_properties.py   # ~4 min on 2 cores

(``ci``: 40 examples per property, ~3 s; ``long``: 4,000, estimated from 400 in 21 s.)
"""
from __future__ import annotations

import io
import warnings
import zipfile

import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import compactcortex as cc  # noqa: E402
from compactcortex.data.image_files import read_images  # noqa: E402
from compactcortex.metrics import noise_corrected_r2, pearson_r  # noqa: E402
from compactcortex.models.compact import CompactModel  # noqa: E402
from compactcortex.models.published import load_published  # noqa: E402
from helpers import published_state, random_model, torch_reference  # noqa: E402

ISAS = cc.available_isas()
filters = st.tuples(*[st.integers(1, 20)] * 5)


# ---- the engine against the float64 reference ---------------------------------------------------


@given(filters=filters, seed=st.integers(0, 2**16), batch=st.integers(1, 7),
       dtype=st.sampled_from(["uint8", "float32", "float64"]), nchw=st.booleans(), step=st.sampled_from([1, 2]),
       isa=st.sampled_from(ISAS), layer0=st.sampled_from(["winograd", "direct"]), threads=st.integers(1, 3))
def test_engine_matches_float64_reference(filters, seed, batch, dtype, nchw, step, isa, layer0, threads):
    model = random_model(filters, seed=seed)
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (batch * step, 112, 112, 3), dtype=np.uint8)
    recentred = raw.astype(np.float64) - np.array(model.mean)
    ref = torch_reference(model, recentred[::step])
    x = raw if dtype == "uint8" else recentred.astype(dtype)
    if nchw:  # a transposed view (channel stride 1, pixel strides 3 and 336), read in place
        x = x.transpose(0, 3, 1, 2)
    x = x[::step]  # a batch stride other than the image size
    plan = cc.compile(model)
    got = cc.Predictor(plan, threads=threads, isa=isa, layer0=layer0).predict(x)
    assert got.shape == (batch,) and got.dtype == np.float32
    # Error against the size of what the readout sums (sum |weight * feature| + |bias|), not the
    # output itself: a drawn model's output may cancel to near 0, where any rounding is large.
    scale = _readout_terms(model, plan, recentred[::step])
    assert np.all(np.abs(got - ref) <= 1e-5 * scale)


def _readout_terms(model, plan, recentred: np.ndarray) -> np.ndarray:
    """Per image, sum |readout weight * layer-4 feature| + |readout bias| in float64."""
    m = model.to(torch.float64).eval()
    with torch.no_grad():
        f = m.features(torch.from_numpy(recentred).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    return np.abs(f * plan.readout.astype(np.float64)).sum((1, 2, 3)) + abs(plan.readout_bias)


@given(models=st.lists(st.tuples(filters, st.integers(0, 2**16)), min_size=1, max_size=4),
       batch=st.integers(1, 5), threads=st.integers(1, 3))
def test_population_equals_each_models_predictor(models, batch, threads):
    plans = [cc.compile(random_model(f, seed=s)) for f, s in models]
    x = np.random.default_rng(batch).integers(0, 256, (batch, 112, 112, 3), dtype=np.uint8)
    pop = cc.PopulationPredictor(plans, threads=threads).predict(x)
    for k, plan in enumerate(plans):
        np.testing.assert_array_equal(pop[:, k], cc.Predictor(plan, threads=1).predict(x))


# ---- loaders on mutated files: a result or ValueError/OSError, nothing else -------------------


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, val in edits:
        b[pos % len(b)] = val
    return bytes(b[:cut] if cut is not None else b)


edits = st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), min_size=1, max_size=8)
cuts = st.none() | st.integers(0, 4000)


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    d = tmp_path_factory.mktemp("orig")
    model = random_model((4, 3, 3, 3, 2), seed=5)
    cc.compile(model).save(d / "m.plan")
    model.save(d / "m.safetensors")
    torch.save(published_state(model), d / "compact_model_1_neuron0.pt")
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(buf, "PNG")
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", buf.getvalue())
        zf.writestr("b.png", buf.getvalue())
    return {"plan": (d / "m.plan").read_bytes(), "model": (d / "m.safetensors").read_bytes(),
            "pt": (d / "compact_model_1_neuron0.pt").read_bytes(), "png": buf.getvalue(),
            "zip": zbuf.getvalue()}


LOADERS = {
    "plan": ("m.plan", cc.Plan.load),
    "model": ("m.safetensors", CompactModel.load),
    "pt": ("compact_model_1_neuron0.pt", load_published),
    "png": ("imgs/a.png", lambda p: read_images(p.parent)),
    "zip": ("images.zip", read_images),
}


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(LOADERS)), edits=edits, cut=cuts)
def test_loaders_on_mutated_files_raise_only_value_or_os_errors(originals, tmp_path, kind, edits, cut):
    name, load = LOADERS[kind]
    path = tmp_path / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(_mutate(originals[kind], edits, cut))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch / Pillow may warn about what they recover from
        try:
            loaded = load(path)
            if kind in ("png", "zip"):
                assert loaded.dtype == np.uint8 and loaded.shape[1:] == (112, 112, 3)
                return
            # what loads must be usable: compiles and predicts (a byte edit may leave finite but
            # huge weights, whose outputs may overflow: that is the file's content, not a crash)
            plan = loaded if kind == "plan" else cc.compile(loaded)
            out = cc.Predictor(plan, threads=1).predict(np.zeros((1, 112, 112, 3), np.uint8))
        except (ValueError, OSError):
            return
    assert out.shape == (1,)


# ---- metrics on drawn NaN patterns --------------------------------------------------------------


@given(shape=st.tuples(st.integers(1, 3), st.integers(2, 12), st.integers(1, 5)),
       nan_fraction=st.floats(0, 0.9), seed=st.integers(0, 2**16))
def test_noise_corrected_r2_on_nan_patterns(shape, nan_fraction, seed):
    rng = np.random.default_rng(seed)
    trials = rng.poisson(5.0, shape).astype(np.float64)
    trials[rng.random(shape) < nan_fraction] = np.nan
    pred = rng.normal(size=shape[:2])
    if np.isnan(trials).all():
        with pytest.raises(ValueError, match="all NaN"):
            noise_corrected_r2(trials, pred)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from 0/0 inside
        r2 = noise_corrected_r2(trials, pred)
    assert r2.shape == (shape[0],)
    assert np.all(np.isnan(r2) | np.isfinite(r2))  # NaN where undefined, never inf


@given(shape=st.tuples(st.integers(1, 3), st.integers(2, 12)), seed=st.integers(0, 2**16),
       constant_row=st.booleans(), bad=st.sampled_from([None, np.nan, np.inf]))
def test_pearson_r_bounded_or_nan_or_clear_error(shape, seed, constant_row, bad):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    if constant_row:
        a[0] = 1.0
    if bad is not None:
        b[-1, -1] = bad
        with pytest.raises(ValueError):
            pearson_r(a, b)
        return
    r = pearson_r(a, b)
    ok = np.isnan(r) | ((r >= -1 - 1e-12) & (r <= 1 + 1e-12))
    assert ok.all() and (np.isnan(r[0]) if constant_row else True)


# ---- structural fuzzing of files made by others: .keras (config and HDF5 layout), safetensors headers

#: A file that loads or is refused must do so within these bounds (generous: a 900 KB .keras
#: loads in ~0.1 s and holds ~1 MB of weights).
_SECONDS, _PEAK_BYTES = 20.0, 64 * 2**20

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _bounded(load, path):
    """``load(path)``; asserts a refusal names the file, and the time and traced-memory bounds."""
    import time
    import tracemalloc

    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return load(path)
    except (ValueError, OSError) as e:
        assert path.name in str(e), f"the refusal does not name the file: {e}"
        return None
    finally:
        elapsed, peak = time.perf_counter() - t0, tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert elapsed < _SECONDS and peak < _PEAK_BYTES, (elapsed, peak)


@pytest.fixture(scope="module")
def keras_parts():
    from conftest import DATA

    src = DATA / "shared_compact_models" / "from_ensemble_model" / "shared_compact_model_5filters.keras"
    if not src.is_file():
        pytest.skip(f"the shared compact models are not at {DATA.resolve()}")
    with zipfile.ZipFile(src) as z:
        return {n: z.read(n) for n in z.namelist()}


_H5_EDITS = ("delete", "reshape", "int_dtype", "group_as_dataset", "soft_link", "external_link", "extra_var",
             "string_dtype")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(config_edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(
           ["filters", "kernel_size", "strides", "epsilon", "axis", "units", "batch_shape", "class_name", "name",
            "config", "padding", "activation", "depth_multiplier", "use_bias"]), json_values), max_size=3),
       h5_edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(_H5_EDITS)), max_size=2),
       drop_layers=st.lists(st.integers(0, 10**6), max_size=2))
def test_keras_files_with_drawn_configs_and_layouts(keras_parts, warm_loaders, tmp_path, config_edits, h5_edits,
                                                    drop_layers):
    import json

    import h5py

    from compactcortex.models.keras_files import load_keras

    config = json.loads(keras_parts["config.json"])
    layers = config["config"]["layers"]
    for i in drop_layers:
        if layers:
            del layers[i % len(layers)]
    for i, key, value in config_edits:
        if layers:
            layer = layers[i % len(layers)]
            target = layer if key in ("class_name", "name", "config") else layer.get("config")
            if isinstance(target, dict):
                target[key] = value
    buf = io.BytesIO(keras_parts["model.weights.h5"])
    with h5py.File(buf, "r+") as h5:
        names: list[str] = []
        h5.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        for i, how in h5_edits:
            name = names[i % len(names)]
            if name not in h5:
                continue
            group = name.rsplit("/", 1)[0]
            del h5[name]
            if how == "reshape":
                h5.create_dataset(name, shape=(i % 7 + 1, 3), dtype="f4")
            elif how == "int_dtype":
                h5.create_dataset(name, data=np.zeros(3, np.int64))
            elif how == "string_dtype":
                h5.create_dataset(name, data=np.array([b"x" * 8]))
            elif how == "group_as_dataset" and group in h5:
                del h5[group]
                h5.create_dataset(group, data=np.zeros(2, np.float32))
            elif how == "soft_link":
                h5[name] = h5py.SoftLink("/" + name)  # a link to itself
            elif how == "external_link":
                h5[name] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/x")
            elif how == "extra_var" and group in h5:
                h5.create_dataset(group + "/99", data=np.zeros(2, np.float32))
    path = tmp_path / "drawn.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(config))
        z.writestr("model.weights.h5", buf.getvalue())
    model = _bounded(load_keras, path)
    if model is not None:  # what loads is usable: finite outputs for a blank image
        with torch.no_grad():
            assert torch.isfinite(model(torch.zeros(1, 3, 112, 112))).all()


def _safetensors_file(kind: str, d):
    from compactcortex.fit.teacher import save_teacher
    from compactcortex.models.transfer import TransferTeacher, trunk_of
    from compactcortex.models.trunk import Trunk, save_trunks

    path = d / f"{kind}.safetensors"
    model = random_model((3, 2, 2, 2, 2), seed=3)
    if kind == "model":
        model.save(path)
    elif kind == "plan":
        cc.compile(model).save(path)
    elif kind == "teacher":
        save_teacher(TransferTeacher(trunk_of(model), 2, 1), path)
    else:
        save_trunks([Trunk((3, 2, 2, 2, 2), {"s1": (2, None, None)})], path)
    return path


def _safetensors_loader(kind: str):
    from compactcortex.fit.teacher import load_teacher
    from compactcortex.models.trunk import load_trunks

    return {"model": CompactModel.load, "plan": cc.Plan.load, "teacher": load_teacher, "trunk": load_trunks}[kind]


@pytest.fixture(scope="module")
def warm_loaders(tmp_path_factory):
    """Each loader run once on its intact file: the bounds then measure loading, not first imports."""
    d = tmp_path_factory.mktemp("warm")
    for kind in ("model", "plan", "teacher", "trunk"):
        assert _safetensors_loader(kind)(_safetensors_file(kind, d)) is not None


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kind=st.sampled_from(["model", "plan", "teacher", "trunk"]),
       edits=st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["dtype", "shape", "data_offsets", "metadata",
                                                                         "drop", "rename"]), json_values),
                      min_size=1, max_size=3))
def test_safetensors_headers_with_drawn_entries(warm_loaders, tmp_path, kind, edits):
    """The JSON header of our own formats, edited: each tensor's dtype, shape and offsets, and
    every metadata entry, replaced by drawn JSON values; entries dropped or renamed."""
    import json
    import struct

    path = _safetensors_file(kind, tmp_path)
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header, body = json.loads(raw[8:8 + n]), raw[8 + n:]
    tensors = sorted(k for k in header if k != "__metadata__")
    meta = header.setdefault("__metadata__", {})
    for i, what, value in edits:
        name = tensors[i % len(tensors)]
        if what == "metadata":
            key = sorted(meta)[i % len(meta)] if meta else "format"
            meta[key] = value if isinstance(value, str) else json.dumps(value)
        elif what == "drop":
            header.pop(name, None)
        elif what == "rename" and name in header:
            header[f"x{i}"] = header.pop(name)
        elif name in header:
            header[name][what] = value
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)
    loaded = _bounded(_safetensors_loader(kind), path)
    if loaded is not None and kind == "model":
        with torch.no_grad():
            assert torch.isfinite(loaded(torch.zeros(1, 3, 112, 112))).all()
