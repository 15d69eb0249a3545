"""Published models: golden outputs of the original Keras models, and loader errors."""
from collections import OrderedDict

import numpy as np
import pytest
import torch

import compactcortex as cc


def golden(v4):
    g = np.load(v4 / "golden" / "golden_190923.npz")
    return g["images_uint8"], g["outputs"], g["rgb_mean"]


def test_golden_outputs_all_33_neurons(v4):
    images, outputs, mean = golden(v4)
    assert np.allclose(mean, cc.DATASET_MEAN, atol=1e-3)
    models = cc.load_published_session(v4, 190923, dtype=torch.float64)
    assert len(models) == 33 == outputs.shape[0]
    x = torch.from_numpy(images.astype(np.float64) - np.asarray(cc.DATASET_MEAN)).permute(0, 3, 1, 2)
    for k, model in enumerate(models):
        scale = np.abs(outputs[k]).max()
        if k % 8 == 0:  # the float64 torch model on a few neurons (slow on the CPU)
            with torch.no_grad():
                torch_out = model(x[::8]).numpy()
            assert np.abs(torch_out - outputs[k, ::8]).max() <= 1e-4 * scale, f"torch model, neuron {k}"
        plan = cc.compile(model)
        for layer0 in ("winograd", "direct"):
            engine_out = cc.Predictor(plan, threads=2, layer0=layer0).predict(images)  # uint8: recentred inside
            assert np.abs(engine_out - outputs[k]).max() <= 1e-4 * scale, f"engine ({layer0}), neuron {k}"


def test_published_filters_match_nums_filters_files(v4):
    for pt in sorted((v4 / "compact_models" / "torch").glob("compact_model_190923_neuron*.pt"))[:5]:
        nf = np.load(v4 / "compact_models" / "nums_filters" / pt.name.replace(".pt", ".npy"))
        model = cc.load_published(pt, nums_filters=nf)
        assert model.nums_filters == tuple(int(v) for v in nf)
        assert model.provenance["session"] == "190923"


def test_mismatched_filters_name_file_and_key(v4):
    pt = v4 / "compact_models" / "torch" / "compact_model_190923_neuron0.pt"
    with pytest.raises(ValueError, match=r"compact_model_190923_neuron0\.pt.*layer1_conv_point"):
        cc.load_published(pt, nums_filters=(48, 61, 3, 3, 3))


def _published_like_state(model):
    state = OrderedDict()
    for k, v in model.state_dict().items():
        key = "layers." + (k.replace("readout.", "Beta.") if k.startswith("readout.") else k)
        state[key] = v.double() if v.is_floating_point() else v
    return state


def test_loader_errors(tmp_path):
    from helpers import random_model

    with pytest.raises(ValueError, match="no such model file"):
        cc.load_published(tmp_path / "missing.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="corrupt.pt"):
        cc.load_published(bad)

    state = _published_like_state(random_model((4, 3, 3, 3, 2)))
    good = tmp_path / "compact_model_1_neuron0.pt"
    torch.save(state, good)
    assert cc.load_published(good).nums_filters == (4, 3, 3, 3, 2)

    missing = OrderedDict(state)
    del missing["layers.layer2_bn.running_var"]
    torch.save(missing, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=r"m\.pt.*layer2_bn\.running_var"):
        cc.load_published(tmp_path / "m.pt")

    wrong = OrderedDict(state)
    wrong["layers.Beta.weight"] = torch.zeros(1, 28 * 28 * 5, dtype=torch.float64)
    torch.save(wrong, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=r"w\.pt.*readout\.weight.*shape"):
        cc.load_published(tmp_path / "w.pt")

    with pytest.raises(ValueError, match="no published models"):
        cc.load_published_session(tmp_path, 1)
