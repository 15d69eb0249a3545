"""The command line: predict on .npy, folders and zips; bench; --help."""
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

import compactcortex as cc
from compactcortex.cli import main


def test_predict_npy_dir_zip_agree(tmp_path, plan_file):
    raw = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", raw)
    (tmp_path / "imgs").mkdir()
    with zipfile.ZipFile(tmp_path / "x.zip", "w") as zf:
        for i, im in enumerate(raw):
            Image.fromarray(im).save(tmp_path / "imgs" / f"image{i + 1:04d}.png")
            zf.write(tmp_path / "imgs" / f"image{i + 1:04d}.png", f"sub/image{i + 1:04d}.png")
    expect = cc.Predictor(plan_file).predict(raw)
    for src in ("x.npy", "imgs", "x.zip"):
        out = tmp_path / f"out_{src}.npy"
        assert main(["predict", "--model", str(plan_file), "--images", str(tmp_path / src), "--out", str(out)]) == 0
        np.testing.assert_array_equal(np.load(out), expect)


def test_predict_errors(tmp_path, plan_file, capsys):
    assert main(["predict", "--model", str(plan_file), "--images", str(tmp_path / "none"), "--out", str(tmp_path / "o.npy")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    assert main(["predict", "--model", str(plan_file), "--images", str(tmp_path / "bad.zip"), "--out", str(tmp_path / "o.npy")]) == 2
    assert "corrupt, truncated or unsupported zip" in capsys.readouterr().err
    Image.new("RGB", (64, 64)).save(tmp_path / "small.png")
    (tmp_path / "d").mkdir()
    Image.new("RGB", (64, 64)).save(tmp_path / "d" / "small.png")
    assert main(["predict", "--model", str(plan_file), "--images", str(tmp_path / "d"), "--out", str(tmp_path / "o.npy")]) == 2
    assert "expected 112x112" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_published_model_file(v4, tmp_path):
    out = tmp_path / "o.npy"
    g = np.load(v4 / "golden" / "golden_190923.npz")
    np.save(tmp_path / "x.npy", g["images_uint8"][:4])
    pt = v4 / "compact_models" / "torch" / "compact_model_190923_neuron5.pt"
    assert main(["predict", "--model", str(pt), "--images", str(tmp_path / "x.npy"), "--out", str(out)]) == 0
    np.testing.assert_allclose(np.load(out), g["outputs"][5, :4], atol=1e-4 * np.abs(g["outputs"][5]).max())


def test_bench_runs(tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "--threads", "1", "--batch", "2", "--rounds", "1", "--json", str(out)]) == 0
    import json

    r = json.loads(out.read_text())["results"][0]
    assert r["max_rel_error_vs_torch"] < 1e-4 and r["ms_per_image"]["engine"] > 0


@pytest.mark.parametrize("cmd", [[], ["predict"], ["bench"], ["evaluate"], ["demo"], ["compress"], ["trunk"], ["data", "digital"],
                                 ["data", "synth"], ["loop-bench"], ["preferred"], ["synth"], ["consolidation"]])
def test_help(cmd):
    r = subprocess.run([sys.executable, "-m", "compactcortex.cli", *cmd, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "usage" in r.stdout


def test_evaluate_published_session(v4, tmp_path):
    out = tmp_path / "e.json"
    assert main(["evaluate", "--data", str(v4), "--session", "190923", "--json", str(out)]) == 0
    import json

    res = json.loads(out.read_text())
    assert res["session"] == "190923" and len(res["neurons"]) == 33 and res["median_r2er"] is None
    rs = [n["r"] for n in res["neurons"]]
    assert abs(np.median(rs) - res["median_r"]) < 1e-12
    # Recomputed independently for every 11th neuron: the published model in PyTorch on the
    # second half of the images, Pearson r with the repeat-averaged responses by numpy.
    import torch

    from compactcortex.data.session import load_session
    from compactcortex.models.image_tensor import to_tensor

    data = load_session(v4, "190923")
    half = data.images[len(data.images) // 2:]
    x = to_tensor(half)
    for row, model in list(zip(res["neurons"], cc.load_published_session(v4, "190923")))[::11]:
        with torch.inference_mode():
            pred = torch.cat([model(x[i:i + 100]) for i in range(0, len(x), 100)]).double().numpy()
        expect = np.corrcoef(pred, data.responses[row["neuron"], len(data.images) // 2:])[0, 1]
        assert row["r"] == pytest.approx(expect, abs=1e-5), row


def test_renamed_commands_and_module_keep_deprecated_aliases(tmp_path, capsys):
    """Users' scripts keep working for one minor version, with a warning naming the new name."""
    with pytest.warns(FutureWarning, match="'compactcortex data synth' is deprecated.*use 'compactcortex data digital'"):
        assert main(["data", "synth", "--out", str(tmp_path / "d"), "--neurons", "2", "--images", "4",
                     "--repeats", "2"]) == 0
    assert (tmp_path / "d" / "digital" / "digital.json").is_file()
    with pytest.warns(FutureWarning, match="'compactcortex synth' is deprecated.*use 'compactcortex preferred'"):
        code = main(["synth", "--data", str(tmp_path / "nowhere"), "--neurons", "0"])
    assert code == 2 and "nowhere" in capsys.readouterr().err  # the new command ran, with its own error
    code = ("import warnings; warnings.simplefilter('error');\n"
            "try:\n    import compactcortex.loop\nexcept DeprecationWarning as e:\n    print(e)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "compactcortex.loop is deprecated: import compactcortex.stimulus_loop" in r.stdout
    with pytest.warns(DeprecationWarning):
        import importlib

        import compactcortex.loop as old
        importlib.reload(old)
    from compactcortex import stimulus_loop

    assert old.LoopPredictor is stimulus_loop.LoopPredictor
    import compactcortex.bench as bench
    from compactcortex.models.random import random_published_like_model

    with pytest.warns(FutureWarning, match="moved to compactcortex.models.random.random_published_like_model"):
        assert bench.random_published_like_model is random_published_like_model


def test_demo_options_are_the_config_fields():
    """Each DemoConfig field is a --option with the field's help and default (nothing restated)."""
    from dataclasses import fields

    from compactcortex.cli import build_parser
    from compactcortex.demo import DemoConfig

    demo = next(a for a in build_parser()._subparsers._group_actions[0].choices.values() if a.prog.endswith(" demo"))
    options = {a.dest: a for a in demo._actions}
    for f in fields(DemoConfig):
        assert f.name in options and f.metadata["help"] in options[f.name].help
        assert f"default: {f.default}" in options[f.name].help
