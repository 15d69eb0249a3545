"""Trunks (fit_trunk): the engine path against PyTorch, training mechanics, files, backbones, and
the C++ engine's layer-4 maps (TrunkFeatures) against the PyTorch trunk."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from compactcortex.cli import main
from compactcortex.data.session import Session, save_session
from compactcortex.engine.compile import compile
from compactcortex.engine.features import TrunkFeatures
from compactcortex.fit.transfer import fit_transfer_teacher, resolve_backbone, trunk_features, use_engine
from compactcortex.fit.trunk import TrunkConfig, fit_trunk
from compactcortex.models.image_tensor import to_tensor
from compactcortex.models.transfer import TransferTeacher, trunk_of
from compactcortex.models.trunk import Trunk, load_trunks, save_trunks

from helpers import random_model, recentred, rel_err

TINY = (4, 5, 3, 6, 7)


def _session(name: str, neurons: int, images: int, seed: int) -> Session:
    """Images of 4x4 blocks of random grey levels; neuron k fires with the brightness of block k
    (a function a trunk with a spatial readout can learn)."""
    g = np.random.default_rng(seed)
    blocks = g.uniform(0, 255, (images, 4, 4))
    imgs = np.repeat(np.repeat(blocks, 28, 1), 28, 2)[..., None].repeat(3, -1)
    imgs = np.clip(imgs + g.normal(0, 8, imgs.shape), 0, 255).astype(np.uint8)
    rates = blocks.reshape(images, 16)[:, :neurons].T / 64
    return Session(name, imgs, rates + g.uniform(0, 0.2, rates.shape))


def _trunk(seed: int = 0) -> Trunk:
    torch.manual_seed(seed)
    t = Trunk(TINY, {"a": (3, None, None), "b": (5, None, None)})
    for m in t.modules():  # non-trivial batchnorm statistics and readouts
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        for r in t.readouts.values():
            r.mask.normal_()
    return t


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("session", ["a", "b"])
def test_engine_path_matches_torch_outputs_and_gradients(session, training):
    x = torch.from_numpy(recentred(3, seed=1)).permute(0, 3, 1, 2).contiguous()
    results = []
    for backend in ("engine", "torch"):  # the engine in float32, PyTorch in float64
        t = _trunk()
        t.core.backend = backend
        t.train(training)
        if backend == "torch":
            t.double()
        y = t(x if backend == "engine" else x.double(), session)
        (y * torch.arange(1, y.shape[1] + 1)).sum().backward()
        results.append((y.detach(), {n: p.grad.clone() for n, p in t.named_parameters() if p.grad is not None}))
    (ye, ge), (yt, gt) = results
    assert ye.shape == (3, 3 if session == "a" else 5)
    assert rel_err(ye.numpy(), yt.double().numpy()) < 1e-4
    assert ge.keys() == gt.keys() and f"readouts.{session}.mask" in ge
    # Error relative to each gradient's scale; a gradient that is 0 in exact arithmetic (a conv bias
    # before batch statistics) is judged against the largest gradient instead of its rounding noise.
    top = max(float(g.abs().max()) for g in gt.values())
    for name in gt:
        scale = max(float(gt[name].abs().max()), 1e-4 * top)
        assert float((ge[name].double() - gt[name]).abs().max()) <= 1e-4 * scale, name


def test_fit_trunk_trains_saves_loads_and_resumes(tmp_path):
    sessions = [_session("s1", 3, 40, 0), _session("s2", 4, 30, 1)]
    cfg = TrunkConfig(nums_filters=TINY, epochs=2, batch=8)
    trunks, info = fit_trunk(sessions, cfg, members=2, threads=1, checkpoint_dir=tmp_path / "ck",
                             out=tmp_path / "t.safetensors", progress=False)
    assert len(trunks) == 2 and len(info["members"]) == 2
    assert [len(m["history"]) for m in info["members"]] == [2, 2]
    assert all(np.isfinite(h["train_mse"]) for m in info["members"] for h in m["history"])
    # members differ by seed
    assert not torch.equal(trunks[0].core.layer0_conv.weight, trunks[1].core.layer0_conv.weight)
    loaded, linfo = load_trunks(tmp_path / "t.safetensors")
    assert linfo["sessions"] == info["sessions"]
    x = to_tensor(sessions[1].images[:4])
    for a, b in zip(trunks, loaded):
        assert torch.equal(a.predict_session(x, "s2"), b.predict_session(x, "s2"))
    # a rerun finds the finished checkpoints: the same weights without training again
    again, info2 = fit_trunk(sessions, cfg, members=2, threads=1, checkpoint_dir=tmp_path / "ck", progress=False)
    assert info2["members"][0]["history"] == info["members"][0]["history"]
    assert torch.equal(again[0].core.layer0_conv.weight, trunks[0].core.layer0_conv.weight)
    # other settings refuse the checkpoint instead of resuming it
    with pytest.raises(ValueError, match="batch"):
        fit_trunk(sessions, TrunkConfig(nums_filters=TINY, epochs=2, batch=4), threads=1,
                  checkpoint_dir=tmp_path / "ck", progress=False)


def test_fit_trunk_learns_on_held_out_images():
    """A learnable response function: the held-out median r climbs well above chance."""
    sessions = [_session("s1", 4, 160, 0)]
    _, info = fit_trunk(sessions, TrunkConfig(nums_filters=(8, 8, 8, 8, 8), epochs=6, batch=16, lr=5e-3),
                        threads=2, progress=False)
    assert info["members"][0]["held_out_median_r"] > 0.3


@pytest.mark.parametrize("bad, match", [
    (lambda s: [s, s], "twice"),
    (lambda s: [Session("few", s.images[:10], s.responses[:, :10])], "at least 20"),
    (lambda s: [Session("nan", s.images, np.where(np.eye(1, s.num_images, 3, dtype=bool).repeat(s.num_neurons, 0),
                                                 np.nan, s.responses))], "NaN"),
    (lambda s: [], "at least one session"),
])
def test_fit_trunk_refuses_bad_sessions(bad, match):
    with pytest.raises(ValueError, match=match):
        fit_trunk(bad(_session("s1", 2, 30, 0)), TrunkConfig(nums_filters=TINY, epochs=1), progress=False)


def test_trunk_file_is_a_backbone(tmp_path):
    t = _trunk().eval()
    save_trunks([t], tmp_path / "t.safetensors")
    core = resolve_backbone(tmp_path / "t.safetensors")
    x = torch.from_numpy(recentred(2)).permute(0, 3, 1, 2).contiguous()
    with torch.no_grad():
        assert torch.equal(core.features(x), t.core.features(x))
    s = _session("new", 6, 40, 3)
    teacher = fit_transfer_teacher(s, tmp_path / "t.safetensors", members=2, progress=False)
    assert teacher.predict(s.images[:5]).shape == (5, 6)
    assert teacher.trunk.provenance["trunk_file"] == "t.safetensors"
    with pytest.raises(ValueError, match="member 3"):
        resolve_backbone(tmp_path / "t.safetensors", member=3)


def test_load_trunks_refuses_foreign_and_corrupt_files(tmp_path, plan_file):
    with pytest.raises(ValueError):
        load_trunks(plan_file)
    save_trunks([_trunk()], tmp_path / "t.safetensors")
    data = bytearray((tmp_path / "t.safetensors").read_bytes())
    (tmp_path / "cut.safetensors").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(ValueError):
        load_trunks(tmp_path / "cut.safetensors")


@pytest.mark.parametrize("filters", [(5, 3, 4, 2, 1), (3, 7, 5, 4, 3), (16, 24, 16, 100, 100)])
@pytest.mark.parametrize("n", [1, 7])
def test_trunk_features_match_torch(filters, n):
    trunk = trunk_of(random_model(filters, seed=sum(filters)))
    with torch.no_grad():  # every layer-4 channel alive somewhere (a map of zeros would prove nothing)
        trunk.layer4_bn.bias.add_(1.0)
    images = recentred(n, seed=n)
    x = torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = trunk.to(torch.float64).features(x).permute(0, 2, 3, 1).numpy()
    fast = TrunkFeatures(compile(trunk, drop_dead_channels=False), threads=2)(images)
    assert fast.shape == (n, 28, 28, filters[4]) and (ref.max(axis=(0, 1, 2)) > 0).all()
    assert rel_err(fast, ref) < 1e-4


def test_trunk_features_refuse_nan_and_bad_out():
    feats = TrunkFeatures(compile(trunk_of(random_model(TINY)), drop_dead_channels=False), threads=1)
    images = recentred(3)
    images[2, 5, 5, 1] = np.nan
    with pytest.raises(ValueError, match="2"):
        feats(images)
    with pytest.raises(ValueError, match="shape"):
        feats(recentred(2), out=np.empty((2, 28, 28, 3), np.float32))


def test_transfer_teacher_on_the_engine_predicts_as_on_torch():
    s = _session("new", 5, 40, 4)
    torch.manual_seed(0)
    trunk = trunk_of(random_model((12, 10, 8, 9, 11), seed=5))
    slow = fit_transfer_teacher(s, trunk, members=2, progress=False)
    slow.feature_engine = None
    fast = use_engine(TransferTeacher(trunk, 5, 2), threads=2)
    fast.load_state_dict(slow.state_dict())
    ref, got = slow.predict(s.images), fast.predict(s.images)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    feats = trunk_features(trunk, s.images[:3], progress=False)
    assert feats.shape == (3, 11, 28, 28)


def test_cli_trunk(tmp_path, capsys):
    for s in (_session("100001", 3, 30, 0), _session("100002", 2, 24, 1)):
        save_session(s, tmp_path / "data")
    out = tmp_path / "t.safetensors"
    assert main(["trunk", "--data", str(tmp_path / "data"), "--sessions", "100001", "100002", "--out", str(out),
                 "--filters", *map(str, TINY), "--epochs", "1", "--threads", "1"]) == 0
    assert "held-out median r" in capsys.readouterr().out
    trunks, info = load_trunks(out)
    assert trunks[0].sessions == ["100001", "100002"] and info["config"]["epochs"] == 1
    assert main(["trunk", "--data", str(tmp_path / "data"), "--sessions", "100009", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no session 100009" in err[0]
    # responses without images; responses whose neuron count disagrees with the raw repeats
    (tmp_path / "data" / "images" / "images_100002.zip").unlink()
    assert main(["trunk", "--data", str(tmp_path / "data"), "--sessions", "100001", "100002", "--out", str(out)]) == 2
    assert "session 100002 has responses but no images" in capsys.readouterr().err
    (tmp_path / "data" / "responses_raw").mkdir(exist_ok=True)
    np.save(tmp_path / "data" / "responses_raw" / "responses_100001.npy", np.zeros((7, 30, 2)))
    assert main(["trunk", "--data", str(tmp_path / "data"), "--sessions", "100001", "--out", str(out)]) == 2
    assert "does not match the repeat-averaged (3, 30)" in capsys.readouterr().err
