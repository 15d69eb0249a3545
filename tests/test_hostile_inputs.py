"""Regression tests for the defects an attacker's probe found (issue 16): files whose headers lie
about their sizes, names that climb out of their folder, stale checkpoints, subnormal floats,
outputs aliasing inputs, and command-line user errors."""
from __future__ import annotations

import json
import os
import time
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

import compactcortex as cc
from compactcortex import _engine
from compactcortex.cli import main
from compactcortex.data import image_files
from compactcortex.data.image_files import read_images
from compactcortex.data.session import Session, load_session
from compactcortex.files import COMPACT_MODEL_FORMAT, ENSEMBLE_FORMAT, checked_name
from compactcortex.fit.distill import fine_tune
from compactcortex.models.compact import CompactModel
from compactcortex.models.published import load_published
from helpers import published_state, random_model

# ---- files whose declared sizes lie: refused before allocating ---------------------------------


def test_pt_with_expanded_tensor_claiming_400000_filters(tmp_path):
    state = published_state(random_model((4, 3, 3, 3, 3)))
    # 400,000 layer-4 filters declared by a stride-0 view of one float: the file stays small
    state["layers.layer4_conv_point.weight"] = torch.zeros(1).expand(400_000, 3, 1, 1)
    torch.save(state, tmp_path / "forged.pt")
    assert (tmp_path / "forged.pt").stat().st_size < 200_000
    with pytest.raises(ValueError, match=r"forged.pt: declares a model of [\d,]+ values, more than its"):
        load_published(tmp_path / "forged.pt")


def test_safetensors_metadata_claiming_huge_model(tmp_path):
    model = random_model((4, 3, 3, 3, 3))
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"format": COMPACT_MODEL_FORMAT, "nums_filters": json.dumps([4, 3, 3, 3, 4000]),
            "bn_eps": json.dumps([1e-3] * 5), "mean": json.dumps([0, 0, 0]), "provenance": "{}"}
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match="m.safetensors: declares a model of"):
        CompactModel.load(path)
    save_file(tensors, str(path), metadata={**meta, "nums_filters": json.dumps([4, 3, 3, 3, 400_000])})
    with pytest.raises(ValueError, match=r"m.safetensors: metadata nums_filters=\[4, 3, 3, 3, 400000\]; expected 5 "
                                         r"integers in \[1, 4096\]"):
        CompactModel.load(path)


def test_teacher_metadata_claiming_a_million_neurons(tmp_path):
    from compactcortex.fit.teacher import load_teacher

    path = tmp_path / "t.safetensors"
    save_file({"x": torch.zeros(4)}, str(path), metadata={"format": ENSEMBLE_FORMAT, "n_members": "2",
                                                          "n_neurons": "1000000"})
    with pytest.raises(ValueError, match="declares a model of"):
        load_teacher(path)


def test_image_declaring_12000_squared_pixels_is_not_decoded(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("1", (12000, 12000)).save(tmp_path / "d" / "huge.png")  # 1-bit: small to write
    assert (tmp_path / "d" / "huge.png").stat().st_size < 1_000_000
    with pytest.raises(ValueError, match=r"huge.png.*12000x12000 pixels, more than the"):
        read_images(tmp_path / "d")


def test_image_of_wrong_size_refused_from_its_header(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("RGB", (100, 112)).save(tmp_path / "d" / "a.png")
    with pytest.raises(ValueError, match=r"'a.png'.*is 100x112, expected 112x112"):
        read_images(tmp_path / "d")


def test_zip_member_declaring_too_many_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(image_files, "MAX_IMAGE_FILE_BYTES", 1000)
    with zipfile.ZipFile(tmp_path / "x.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", b"\0" * 5000)
    with pytest.raises(ValueError, match=r"member 'a.png' declares 5,000 bytes"):
        read_images(tmp_path / "x.zip")


@pytest.mark.parametrize("dtype", ["int16", "int64", "bool"])
def test_npy_of_integer_dtype_is_a_clear_error(tmp_path, dtype):
    np.save(tmp_path / "x.npy", np.zeros((2, 112, 112, 3), dtype))
    with pytest.raises(ValueError, match=f"images of dtype {dtype}; expected uint8"):
        read_images(tmp_path / "x.npy")


def test_big_endian_npy_predicts_like_native(tmp_path):
    x = np.random.default_rng(0).normal(0, 50, (3, 112, 112, 3)).astype(np.float32)
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    p = cc.Predictor(cc.compile(random_model((4, 3, 3, 3, 2))), threads=1)
    np.testing.assert_array_equal(p.predict(read_images(tmp_path / "be.npy")), p.predict(x))


# ---- names that become file names ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["../x", "a/b", "..", ".hidden", "-rf", "", "a\0b", "x" * 129, "a b"])
def test_names_that_are_not_one_path_component(name):
    with pytest.raises(ValueError, match="cannot be used as a file name"):
        checked_name(name, "session")


def test_session_name_and_loader_refuse_traversal(tmp_path):
    img = np.zeros((2, 112, 112, 3), np.uint8)
    with pytest.raises(ValueError, match="session name '../evil' cannot be used"):
        Session("../evil", img, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="session '../../etc' cannot be used"):
        load_session(tmp_path, "../../etc")
    assert Session(190923, img, np.zeros((1, 2))).name == "190923"


def test_cli_data_digital_name_traversal_exits_2(tmp_path, capsys):
    assert main(["data", "digital", "--out", str(tmp_path / "o"), "--neurons", "2", "--images", "4",
                 "--name", "../escaped"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be used as a file name" in err
    assert not (tmp_path / "escaped.json").exists() and not any(tmp_path.glob("**/*escaped*"))


# ---- checkpoints record what made them -----------------------------------------------------------


def test_checkpoint_of_other_settings_is_refused(tmp_path):
    teacher = random_model((3, 3, 3, 3, 2), seed=1)
    images = lambda step: torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(step))  # noqa: E731
    ckpt = tmp_path / "c.pt"
    student = random_model((3, 3, 3, 3, 2), seed=2)
    fine_tune(student, teacher, None, images, steps=2, checkpoint=ckpt, progress=False, settings={"seed": 0})
    # the same settings are accepted (numpy scalars compare as the Python values they are);
    # that a resumed run equals an uninterrupted one is tested in test_fit.py
    fine_tune(random_model((3, 3, 3, 3, 2), seed=2), teacher, None, images, steps=np.int64(2), checkpoint=ckpt,
              progress=False, settings={"seed": np.int64(0)})
    with pytest.raises(ValueError, match=r"c.pt: checkpoint of a run with other settings \(steps=2 there, 3 here\)"):
        fine_tune(random_model((3, 3, 3, 3, 2)), teacher, None, images, steps=3, checkpoint=ckpt,
                  progress=False, settings={"seed": 0})
    with pytest.raises(ValueError, match=r"seed=0 there, 1 here"):
        fine_tune(random_model((3, 3, 3, 3, 2)), teacher, None, images, steps=2, checkpoint=ckpt,
                  progress=False, settings={"seed": 1})
    with pytest.raises(ValueError, match=r"nums_filters=\[3, 3, 3, 3, 2\] there, \[4, 3, 3, 3, 2\] here"):
        fine_tune(random_model((4, 3, 3, 3, 2)), teacher, None, images, steps=2, checkpoint=ckpt,
                  progress=False, settings={"seed": 0})


def test_checkpoint_without_settings_is_refused(tmp_path):
    from compactcortex.fit.checkpoint import load_checkpoint

    torch.save({"model": {}, "step": 3}, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="without a record of its run's settings"):
        load_checkpoint(tmp_path / "old.pt", {"steps": 3})


# ---- subnormal floats are flushed in every engine thread ---------------------------------------


@pytest.mark.parametrize("threads", [1, 3])
def test_pool_threads_flush_subnormals(threads):
    assert _engine._testing.denormals_flushed(threads) == [1] * threads


# ---- outputs that alias inputs ---------------------------------------------------------------------


def test_out_overlapping_the_images_is_refused():
    p = cc.Predictor(cc.compile(random_model((4, 3, 3, 3, 2))), threads=1)
    x = np.zeros((4, 112, 112, 3), np.float32)
    with pytest.raises(ValueError, match="out overlaps the images"):
        p.predict(x, out=x.reshape(-1)[:4])
    with pytest.raises(ValueError, match="out overlaps the images"):
        p.predict(torch.from_numpy(x), out=x.reshape(-1)[-4:])
    pop = cc.PopulationPredictor([cc.compile(random_model((4, 3, 3, 3, 2), seed=s)) for s in (1, 2)], threads=1)
    with pytest.raises(ValueError, match="out overlaps the images"):
        pop.predict(x, out=x.reshape(-1)[8:16].reshape(4, 2))
    p.predict(x, out=np.empty(4, np.float32))  # a separate out is fine


# ---- the command line: one line and exit status 2 for user errors ------------------------------


@pytest.mark.parametrize("argv", [
    ["bench", "--threads", "0"], ["bench", "--batch", "0"], ["bench", "--rounds", "-3"],
    ["bench", "--threads", "100000"], ["loop-bench", "--rate", "nan"], ["loop-bench", "--rate", "0"],
    ["loop-bench", "--spin-ms", "inf"], ["loop-bench", "--pool", "2000000"], ["loop-bench", "--pool", "1e9"],
    ["data", "digital", "--out", "x", "--neurons", "0"], ["data", "digital", "--out", "x", "--images", "10000000000"],
    ["demo", "--threshold", "1.5"], ["demo", "--batch", "0"], ["demo", "--distill-lr", "nan"],
    ["compress", "--data", "d", "--session", "s", "--out", "o", "--minutes-per-neuron", "-1"],
])
def test_bad_numeric_arguments_exit_2_in_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("compactcortex")


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_predict_user_errors_exit_2_in_one_line(tmp_path, plan_file, capsys):
    np.save(tmp_path / "x.npy", np.zeros((2, 112, 112, 3), np.uint8))
    (tmp_path / "is_a_dir.npy").mkdir()
    assert main(["predict", "--model", str(plan_file), "--images", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "is_a_dir.npy")]) == 2
    assert "is_a_dir.npy" in _one_line_error(capsys)
    assert not list(tmp_path.glob(".is_a_dir.npy.*.tmp")), "the temporary file is left behind"
    np.save(tmp_path / "i.npy", np.zeros((2, 112, 112, 3), np.int32))
    assert main(["predict", "--model", str(plan_file), "--images", str(tmp_path / "i.npy"),
                 "--out", str(tmp_path / "o.npy")]) == 2
    assert "dtype int32" in _one_line_error(capsys)
    (tmp_path / "junk.plan").write_bytes(b"\0" * 100)
    assert main(["predict", "--model", str(tmp_path / "junk.plan"), "--images", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "o.npy")]) == 2
    assert "junk.plan" in _one_line_error(capsys)


# ---- what a killed writer leaves, and messages that must point at the right thing ---------------


def test_temporary_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    import subprocess
    import sys

    target = tmp_path / "result.json"
    child = ("import os, signal; from compactcortex.files import atomic_path\n"
             f"with atomic_path({str(target)!r}) as tmp:\n"
             "    tmp.write_text('half')\n"
             "    os.kill(os.getpid(), signal.SIGKILL)\n")
    assert subprocess.run([sys.executable, "-c", child]).returncode == -9
    orphans = list(tmp_path.glob(".result.json.*.tmp"))
    assert len(orphans) == 1 and not target.exists()
    # a live writer's file (this process) and another host's are not touched
    from compactcortex import files

    live = tmp_path / f".result.json.{files._HOST}.{os.getpid()}.abc.tmp"
    other = tmp_path / ".result.json.otherhost.1.abc.tmp"
    live.write_text("x")
    other.write_text("x")
    files.write_json(target, {"ok": 1})  # the orphan is fresh: its writer may be in another container
    assert orphans[0].exists()
    old = time.time() - files.ORPHAN_AGE_S - 10
    for f in (orphans[0], live, other):
        os.utime(f, (old, old))
    files.write_json(target, {"ok": 2})
    assert json.loads(target.read_text()) == {"ok": 2}
    assert not orphans[0].exists() and live.exists() and other.exists()


def test_loop_predictor_names_the_bad_image_of_a_later_chunk():
    from compactcortex.stimulus_loop import LoopPredictor

    plans = [cc.compile(random_model((4, 3, 3, 3, 2), seed=s)) for s in (1, 2)]
    loop = LoopPredictor(plans, max_images=64, threads=1, chunk=8)
    x = np.zeros((64, 112, 112, 3), np.float32)
    x[40, 5, 5, 1] = np.nan
    for deadline in (None, 10.0):
        with pytest.raises(ValueError, match=r"image 40 contains NaN"):
            loop.predict(x, deadline_s=deadline)


def test_metadata_of_the_wrong_type_names_the_file(tmp_path):
    plan_path, model_path = tmp_path / "m.plan", tmp_path / "m.safetensors"
    model = random_model((4, 3, 3, 3, 2))
    cc.compile(model).save(plan_path)
    model.save(model_path)
    for path in (plan_path, model_path):
        with safe_open(str(path), framework="np") as f:
            meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        from safetensors.numpy import save_file as save_np

        save_np(tensors, str(path), metadata={**meta, "nums_filters": "5"})  # a number, not a list
    with pytest.raises(ValueError, match=r"m.plan: "):
        cc.Plan.load(plan_path)
    with pytest.raises(ValueError, match=r"m.safetensors: metadata nums_filters=5; expected 5 integers"):
        CompactModel.load(model_path)


# ---- public functions refuse extreme arguments at the boundary ----------------------------------


def test_public_functions_refuse_extreme_arguments():
    from compactcortex.fit import TrainConfig
    from compactcortex.stimulus_loop import LoopPredictor

    plan = cc.compile(random_model((4, 3, 3, 3, 2)))
    for kw, what in [({"max_images": 0}, "max_images"), ({"max_images": 10**12}, "max_images"),
                     ({"chunk": 0}, "chunk")]:
        with pytest.raises(ValueError, match=what):
            LoopPredictor([plan], threads=1, **kw)
    loop = LoopPredictor([plan], threads=1, max_images=4)
    for deadline in (float("nan"), -1.0, 0.0, float("inf")):
        with pytest.raises(ValueError, match="deadline_s must be a positive number"):
            loop.predict(np.zeros((2, 112, 112, 3), np.uint8), deadline_s=deadline)
    for kw in ({"spin_ms": float("nan")}, {"spin_ms": -1}, {"threads": 0}, {"threads": 5000}):
        with pytest.raises(ValueError):
            cc.Predictor(plan, **kw)
    with pytest.raises(ValueError, match="bn_eps must be one or 5 finite values"):
        CompactModel((2, 2, 2, 2, 2), bn_eps=float("nan"))
    with pytest.raises(ValueError, match="mean must be 3 finite"):
        CompactModel((2, 2, 2, 2, 2), mean=(0.0, float("inf"), 0.0))
    for kw in ({"lr": float("nan")}, {"lr": 0.0}, {"epochs": 0}, {"batch": 0}, {"weight_decay": -1.0}):
        with pytest.raises(ValueError):
            TrainConfig(**kw)
    teacher, student = random_model((3, 3, 3, 3, 2), seed=1), random_model((3, 3, 3, 3, 2), seed=2)
    stream = lambda step: torch.zeros(2, 3, 112, 112)  # noqa: E731
    for kw, what in [({"steps": -1}, "steps"), ({"steps": 2, "lr": float("nan")}, "learning rates"),
                     ({"steps": 2, "readout_lr": -1.0}, "learning rates"), ({"steps": 2, "checkpoint_every": 0}, "checkpoint_every")]:
        with pytest.raises(ValueError, match=what):
            fine_tune(student, teacher, None, stream, progress=False, **kw)


def test_review_findings_session_glob_variance_zip_and_pillow_errors(tmp_path, v4):
    from compactcortex.models.published import load_published_session

    with pytest.raises(ValueError, match="session '\\*' cannot be used as a file name"):
        load_published_session(v4, "*")
    state = published_state(random_model((4, 3, 3, 3, 3)))
    state["layers.layer2_bn.running_var"] = -state["layers.layer2_bn.running_var"].abs() - 1
    torch.save(state, tmp_path / "negvar.pt")
    with pytest.raises(ValueError, match="negvar.pt: key 'layer2_bn.running_var' holds a negative variance"):
        load_published(tmp_path / "negvar.pt")
    # a deflate stream with a broken byte: zipfile raises zlib.error, not an OSError
    buf = tmp_path / "x.zip"
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.png", bytes(range(256)) * 64)
    data = bytearray(buf.read_bytes())
    data[60:70] = b"\xff" * 10
    buf.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="x.zip"):
        read_images(buf)


def test_keras_member_declaring_too_many_bytes(v4, monkeypatch):
    from compactcortex.models import keras_files

    path = keras_files.shared_model_path(v4, 10)
    monkeypatch.setattr(keras_files, "_MAX_CONFIG_BYTES", 1000)
    with pytest.raises(ValueError, match=r"\.keras: config.json declares [\d,]+ bytes"):
        keras_files.load_keras(path)


def test_float_images_beyond_pixel_range_are_refused():
    # 1e30 overflows float32 inside layer 0; ReLU may turn the infinities into a finite prediction
    p = cc.Predictor(cc.compile(random_model((4, 3, 3, 3, 2))), threads=1)
    for dtype in (np.float32, np.float64):
        x = np.zeros((3, 112, 112, 3), dtype)
        x[2, 7, 9, 1] = -1e30
        with pytest.raises(ValueError, match=r"image 2 contains NaN or infinity, or a value beyond \+-1e6"):
            p.predict(x)
        x[2, 7, 9, 1] = 1e6  # the bound itself is accepted
        assert np.isfinite(p.predict(x)).all()


# ---- teacher files made by others (issue 26) ----------------------------------------------------


def _small_teacher_file(tmp_path) -> tuple:
    from compactcortex.fit.teacher import save_teacher
    from compactcortex.models.transfer import TransferTeacher, trunk_of

    teacher = TransferTeacher(trunk_of(random_model((3, 2, 2, 2, 2), seed=2)), 3, 2,
                              response_std=[1.0, 2.0, 0.5])
    path = tmp_path / "t.safetensors"
    save_teacher(teacher, path)
    with safe_open(str(path), framework="pt") as f:
        return path, f.metadata(), {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("entry, value, message", [
    ("pool", "0", r"metadata pool='0'; expected an integer in \[1, 28\]"),
    ("pool", "-2", r"metadata pool='-2'; expected an integer"),
    ("pool", "3", r"metadata pool=3 does not divide the 28x28 map"),
    ("pool", "2.0", r"metadata pool='2.0'; expected an integer"),
    ("n_members", "True", r"metadata n_members='True'; expected an integer"),
    ("trunk_dtype", "complex64", r"metadata trunk_dtype='complex64'; expected one of float32, float64"),
    ("nums_filters", "[3, 2, 2, 2, 2.5]", r"metadata nums_filters=\[3, 2, 2, 2, 2.5\]; expected 5 integers"),
    ("bn_eps", "[NaN, 0, 0, 0, 0]", r"metadata bn_eps=\[nan, 0, 0, 0, 0\]; expected 5 numbers"),
    ("readout", "dense", r"metadata readout='dense'; expected one of factorised, ridge"),
    ("provenance", "[1]", r"metadata provenance is not a JSON object"),
])
def test_teacher_metadata_is_checked_for_type_and_range(tmp_path, entry, value, message):
    from compactcortex.fit.teacher import load_teacher

    path, meta, tensors = _small_teacher_file(tmp_path)
    save_file(tensors, str(path), metadata={**meta, entry: value})
    with pytest.raises(ValueError, match=f"t.safetensors: {message}"):
        load_teacher(path)


@pytest.mark.parametrize("key, edit, message", [
    ("response_std", lambda t: t.zero_(), "key 'response_std' holds a standard deviation <= 0"),
    ("mask", lambda t: t.fill_(float("nan")), "key 'mask' holds NaN or infinity"),
    ("trunk.layer1_bn.running_var", lambda t: t.fill_(-1.0), "key .trunk.layer1_bn.running_var. holds a negative variance"),
    ("bias", lambda t: t.to(torch.complex64), r"key 'bias' holds torch.complex64; expected real floats"),
])
def test_teacher_weights_are_checked(tmp_path, key, edit, message):
    from compactcortex.fit.teacher import load_teacher

    path, meta, tensors = _small_teacher_file(tmp_path)
    tensors[key] = edit(tensors[key].clone())
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ValueError, match=f"t.safetensors: {message}"):
        load_teacher(path)
    # the file before the edit loads and predicts
    path, meta, tensors = _small_teacher_file(tmp_path)
    assert np.isfinite(load_teacher(path).predict(np.zeros((2, 112, 112, 3), np.uint8))).all()


def test_one_exception_type_for_a_bad_image_with_its_index():
    """Predictor, PopulationPredictor and LoopPredictor raise the same BadImageError (a ValueError)
    carrying the image's position in the call; C++ raises it, nothing parses its text."""
    import pickle

    from compactcortex.stimulus_loop import LoopPredictor

    plan = cc.compile(random_model((4, 3, 3, 3, 2)))
    x = np.zeros((100, 112, 112, 3), np.float32)
    x[37, 5, 6, 1] = np.inf
    calls = [lambda: cc.Predictor(plan, threads=1).predict(x),
             lambda: cc.PopulationPredictor([plan, plan], threads=2).predict(x),
             lambda: LoopPredictor([plan], threads=1, max_images=100, chunk=16).predict(x, deadline_s=60.0)]
    for call in calls:
        with pytest.raises(cc.BadImageError) as info:
            call()
        assert isinstance(info.value, ValueError) and info.value.index == 37
        assert "image 37 contains NaN or infinity" in str(info.value)
    again = pickle.loads(pickle.dumps(info.value))
    assert type(again) is cc.BadImageError and again.index == 37 and str(again) == str(info.value)
