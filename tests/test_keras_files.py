"""The reader of the authors' Keras 3 files (no TensorFlow): layouts, outputs, and refusals."""
from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import compactcortex as cc
from compactcortex.models.keras_files import SharedCompactModel, shared_model_path
from compactcortex.models.image_tensor import to_tensor

# A clone of github.com/cowleygroup/V4_compact_models (its per-neuron .keras files are not in ../shared).
AUTHORS = Path(os.environ.get("COMPACTCORTEX_AUTHORS_REPO", "/nonexistent"))


def test_shared_model_layout_and_exact_single_outputs(v4):
    model = cc.load_keras(shared_model_path(v4, 10), dtype=torch.float64)
    assert isinstance(model, SharedCompactModel)
    assert model.nums_filters == (10, 10, 10, 100, 100) and model.num_outputs == 219
    x = torch.randn(3, 3, 112, 112, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 60
    with torch.no_grad():
        y = model(x)
        for k in (0, 37, 218):
            one = model.single_output(k)
            assert isinstance(one, cc.CompactModel) and one.num_outputs == 1
            np.testing.assert_allclose(one(x).numpy(), y[:, k].numpy(), rtol=1e-10, atol=1e-10)
    assert "tensorflow" not in sys.modules and "keras" not in sys.modules
    with pytest.raises(ValueError, match="not saved; save single_output"):
        model.save("unused.safetensors")
    with pytest.raises(ValueError, match="output 219 out of range"):
        model.single_output(219)


def test_shared_model_predicts_its_own_session(v4):
    """A reading error (a transposed kernel, a wrong batchnorm) would destroy this correlation: the
    shared model's 33 channels of 190923 predict that session's test half (the published compact
    models reach a median r of 0.636; 0.64 measured for the 100-filter shared model)."""
    from compactcortex.data import load_session
    from compactcortex.metrics import pearson_r

    model = cc.load_keras(shared_model_path(v4, 25))
    s = load_session(v4, "190923")
    idx = s.test_indices
    with torch.no_grad():
        pred = np.concatenate([model(to_tensor(s.images[idx[i:i + 100]])).numpy() for i in range(0, len(idx), 100)])
    r = pearson_r(s.responses[:, idx], pred[:, :33].T.astype(np.float64))
    assert np.median(r) > 0.5


@pytest.mark.skipif(not (AUTHORS / "data_compact_models" / "models_keras").is_dir(),
                    reason="per-neuron .keras files need a clone of the authors' repository in "
                           "COMPACTCORTEX_AUTHORS_REPO (they are not in ../shared/data/v4)")
@pytest.mark.parametrize("neuron", [0, 5, 32])
def test_per_neuron_keras_matches_pt_and_golden(v4, neuron):
    keras = cc.load_keras(AUTHORS / "data_compact_models" / "models_keras" / f"compact_model_190923_neuron{neuron}.keras",
                          dtype=torch.float64)
    pt = cc.load_published(v4 / "compact_models" / "torch" / f"compact_model_190923_neuron{neuron}.pt",
                           dtype=torch.float64)
    assert type(keras) is cc.CompactModel and keras.nums_filters == pt.nums_filters
    assert keras.provenance["neuron"] == neuron
    g = np.load(v4 / "golden" / "golden_190923.npz")
    x = to_tensor(g["images_uint8"]).double()
    with torch.no_grad():
        a, b = keras(x).numpy(), pt(x).numpy()
    np.testing.assert_allclose(a, b, atol=1e-6 * np.abs(b).max())
    np.testing.assert_allclose(a, g["outputs"][neuron], atol=1e-5 * np.abs(b).max())


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """A copy of a .keras file with its config edited by ``edit(config)``."""
    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    config = json.loads(files["config.json"])
    edit(config)
    files["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in files.items():
            z.writestr(n, data)
    return dst


def test_other_architectures_and_broken_files_are_refused(v4, tmp_path):
    src = shared_model_path(v4, 5)
    with pytest.raises(ValueError, match="no such file"):
        cc.load_keras(tmp_path / "missing.keras")
    (tmp_path / "junk.keras").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable Keras 3"):
        cc.load_keras(tmp_path / "junk.keras")

    def stride(c):
        c["config"]["layers"][4]["config"]["strides"] = [1, 1]
    with pytest.raises(ValueError, match="layer 'layer1_conv' has strides"):
        cc.load_keras(_rewrite(src, tmp_path / "stride.keras", stride))

    def relu6(c):
        c["config"]["layers"][3]["config"]["activation"] = "relu6"
    with pytest.raises(ValueError, match="'layer0_act' has activation"):
        cc.load_keras(_rewrite(src, tmp_path / "act.keras", relu6))

    def head(c):
        c["config"]["layers"] = c["config"]["layers"][:-2] + c["config"]["layers"][-1:]
    with pytest.raises(ValueError, match=r"after layer 4 come \['Conv2D', 'Flatten'\]"):
        cc.load_keras(_rewrite(src, tmp_path / "head.keras", head))

    def filters(c):  # config and weights disagree
        c["config"]["layers"][1]["config"]["filters"] = 6
    with pytest.raises(ValueError, match=r"weight /layers/conv2d/vars/0 has shape \(5, 5, 3, 5\), expected \(5, 5, 3, 6\) from the config"):
        cc.load_keras(_rewrite(src, tmp_path / "filters.keras", filters))


KINDS = ("from_ensemble_model", "linear_from_ensemble_model", "from_V4data_direct_fit", "from_resnet50",
         "from_resnet50_robust", "from_vgg19", "from_cornets")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_shared_model_loads_marked_as_fitted_to_the_test_sessions(v4, kind):
    from compactcortex.engine.compile import compile
    from compactcortex.fit.transfer import use_engine
    from compactcortex.models.transfer import TransferTeacher, trunk_of

    model = cc.load_keras(v4 / "shared_compact_models" / kind / "shared_compact_model_100filters.keras",
                          dtype=torch.float64)
    assert model.num_outputs == 219 and model.nums_filters == (100,) * 5
    assert model.provenance["fitted_to_sessions"] == ["190923", "201025", "210225", "211022"]
    g = torch.Generator().manual_seed(1)
    x1, x2 = (torch.randn(2, 3, 112, 112, dtype=torch.float64, generator=g) * 60 for _ in range(2))
    with torch.no_grad():
        f = model.features
        affine_gap = float((f(x1) + f(x2) - f(x1 + x2) - f(torch.zeros_like(x1))).abs().max() / f(x1).abs().max())
    linear = kind.startswith("linear")
    assert model.relu == (not linear)
    # Without ReLUs the trunk is affine in the image; with them it is not.
    assert (affine_gap < 1e-9) if linear else (affine_gap > 1e-3)
    trunk = trunk_of(model)
    teacher = use_engine(TransferTeacher(trunk, 3, 1))
    assert (teacher.feature_engine is None) == linear
    if linear:
        with pytest.raises(ValueError, match="ReLU"):
            compile(trunk)


def test_a_trunk_with_some_relus_missing_is_refused(v4, tmp_path):
    src = shared_model_path(v4, 5)

    def drop_one(c):
        del c["config"]["layers"][6]  # layer1's ReLU only
    with pytest.raises(ValueError, match="expected a Activation layer, found SeparableConv2D"):
        cc.load_keras(_rewrite(src, tmp_path / "some.keras", drop_one))


# ---- files made by others: the reader's boundary (issue 26) ---------------------------------------


def _rebuild(src: Path, dst: Path, edit_config=None, edit_h5=None, config_bytes: bytes | None = None) -> Path:
    """A copy of a .keras file with ``edit_config(config)`` applied to its config and
    ``edit_h5(h5py.File)`` to its weights (opened read-write in memory)."""
    import io

    import h5py

    with zipfile.ZipFile(src) as z:
        files = {n: z.read(n) for n in z.namelist()}
    if edit_config is not None:
        config = json.loads(files["config.json"])
        edit_config(config)
        files["config.json"] = json.dumps(config).encode()
    if config_bytes is not None:
        files["config.json"] = config_bytes
    if edit_h5 is not None:
        buf = io.BytesIO(files["model.weights.h5"])
        with h5py.File(buf, "r+") as h5:
            edit_h5(h5)
        files["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        for n, data in files.items():
            z.writestr(n, data)
    return dst


def _replace(h5, name: str, **create) -> None:
    del h5[name]
    h5.create_dataset(name, **create)


def test_declared_sizes_are_checked_before_any_read(v4, tmp_path):
    import tracemalloc

    src = shared_model_path(v4, 5)
    # a chunked, compressed dataset of 2^28 floats (1 GiB) that was never written: a few KB on disk
    big = _rebuild(src, tmp_path / "big.keras", edit_h5=lambda h5: _replace(
        h5, "layers/conv2d/vars/0", shape=(1 << 28,), dtype="f4", chunks=(1 << 16,), compression="gzip"))
    assert big.stat().st_size < 2_000_000
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"big.keras: weight /layers/conv2d/vars/0 has shape \(268435456,\), expected"):
        cc.load_keras(big)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 64 * 2**20
    # a config declaring 4096 filters everywhere: more weights than the file could hold
    def wide(c):
        for layer in c["config"]["layers"]:
            if "filters" in layer["config"]:
                layer["config"]["filters"] = 4096
    with pytest.raises(ValueError, match="the config declares [\\d,]+ bytes of weights, far more than"):
        cc.load_keras(_rebuild(src, tmp_path / "wide.keras", wide))
    # a 300 MB config.json that deflates to a few hundred KB
    with pytest.raises(ValueError, match=r"bomb.keras: config.json declares 300,000,002 bytes, more than the 1,048,576"):
        cc.load_keras(_rebuild(src, tmp_path / "bomb.keras", config_bytes=b"[" + b" " * 300_000_000 + b"]"))


@pytest.mark.parametrize("how", ["external", "fifo", "virtual", "external_link", "soft_link", "group_is_dataset",
                                 "integer_weights", "tiny_chunks"])
def test_weights_stored_outside_the_file_or_oddly_are_refused(v4, tmp_path, how):
    import h5py

    src = shared_model_path(v4, 5)
    secret = tmp_path / "secret"
    secret.write_bytes(np.arange(375, dtype=np.float32).tobytes())
    name, shape = "layers/conv2d/vars/0", (5, 5, 3, 5)

    def edit(h5):
        if how == "external":
            _replace(h5, name, shape=shape, dtype="f4", external=[(str(secret), 0, h5py.h5f.UNLIMITED)])
        elif how == "fifo":
            os.mkfifo(tmp_path / "fifo")
            _replace(h5, name, shape=shape, dtype="f4", external=[(str(tmp_path / "fifo"), 0, h5py.h5f.UNLIMITED)])
        elif how == "virtual":
            layout = h5py.VirtualLayout(shape=shape, dtype="f4")
            layout[...] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=shape)
            del h5[name]
            h5.create_virtual_dataset(name, layout)
        elif how == "external_link":
            del h5[name]
            h5[name] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/x")
        elif how == "soft_link":
            del h5[name]
            h5[name] = h5py.SoftLink("/layers/conv2d/vars/1")
        elif how == "group_is_dataset":
            del h5["layers/conv2d"]
            h5.create_dataset("layers/conv2d", data=np.zeros(3, np.float32))
        elif how == "integer_weights":
            _replace(h5, name, data=np.zeros(shape, np.int32))
        elif how == "tiny_chunks":
            _replace(h5, "layers/depthwise_conv2d/vars/0", shape=(28, 28, 219, 1), dtype="f4", chunks=(1, 1, 1, 1))
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = np.ones(shape, np.float32)
    path = _rebuild(src, tmp_path / f"{how}.keras", edit_h5=edit)
    expected = {"external": "stored outside the file", "fifo": "stored outside the file",
                "virtual": "stored outside the file", "external_link": "is a ExternalLink",
                "soft_link": "is a SoftLink", "group_is_dataset": "/layers/conv2d is not a Group",
                "integer_weights": "holds int32, expected floats", "tiny_chunks": "more than 65,536 chunks"}[how]
    with pytest.raises(ValueError, match=f"{how}.keras: .*{expected}"):
        cc.load_keras(path)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["config"]["layers"][1]["config"].update(filters=[5]), "'layer0_conv' has filters=\\[5\\]; expected an integer"),
    (lambda c: c["config"]["layers"][1]["config"].update(filters=None), "has filters=None; expected an integer"),
    (lambda c: c["config"]["layers"][1]["config"].update(filters=True), "has filters=True; expected an integer"),
    (lambda c: c["config"]["layers"][1]["config"].update(filters=5.0), "has filters=5.0; expected an integer"),
    (lambda c: c["config"]["layers"][1].update(config=[1, 2]), "layer 1 is not an object with a class_name"),
    (lambda c: c["config"].update(layers={"a": 1}), "holds no list of layers"),
    (lambda c: c.update(config=None), "holds no list of layers"),
    (lambda c: c["config"]["layers"][0]["config"].update(batch_shape=7), "has input shape 7"),
    (lambda c: c["config"]["layers"][2]["config"].update(epsilon="0.001"), "not a channel-axis batchnorm"),
    (lambda c: c["config"]["layers"][2].update(name="layer0_conv"), "two layers share a name"),
])
def test_wrong_types_in_the_config_name_the_file(v4, tmp_path, edit, message):
    with pytest.raises(ValueError, match=f"cfg.keras: .*{message}"):
        cc.load_keras(_rebuild(shared_model_path(v4, 5), tmp_path / "cfg.keras", edit))


@pytest.mark.parametrize("name, value, message", [
    ("layers/conv2d/vars/1", np.nan, "key 'layer0_conv.bias' holds NaN or infinity"),
    ("layers/depthwise_conv2d/vars/0", np.inf, "key 'spatial' holds NaN or infinity"),
    ("layers/batch_normalization_2/vars/3", -1.0, "key 'layer2_bn.running_var' holds a negative variance"),
])
def test_non_finite_weights_and_negative_variances_are_refused(v4, tmp_path, name, value, message):
    def edit(h5):
        data = h5[name][()]
        data.flat[0] = value
        h5[name][...] = data
    with pytest.raises(ValueError, match=f"w.keras: {message}"):
        cc.load_keras(_rebuild(shared_model_path(v4, 5), tmp_path / "w.keras", edit_h5=edit))


def test_a_fifo_named_keras_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="m.keras: not a regular file"):
        cc.load_keras(tmp_path / "m.keras")
