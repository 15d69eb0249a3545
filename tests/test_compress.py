"""Pruning: the C++ statistics kernel, the selection rule, filter surgery, the procedures."""
import numpy as np
import pytest
import torch

import compactcortex as cc
from compactcortex import _engine as E
from compactcortex.compress import (channel_stats, channel_stats_torch, contribution_gram, prune_greedy,
                                    prune_layer, prune_paper, remove_filters, select_filters)
from compactcortex.models.image_tensor import to_tensor
from helpers import random_model


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)


@pytest.mark.parametrize("isa", E.available_isas())
@pytest.mark.parametrize("n", [1, 3, 7, 100])
@pytest.mark.parametrize("m", [1, 5, 56])
def test_gram_kernel_matches_numpy(isa, n, m):
    width = E.vector_width(isa)
    ldg = (n + width - 1) // width * width
    a = np.zeros((m, ldg), np.float32)
    a[:, :n] = np.random.default_rng(n + m).normal(size=(m, n))
    G = np.zeros((n, ldg), np.float32)
    sums = np.zeros(ldg, np.float32)
    E._testing.kernel_gram_row(isa, a.ravel(), m, ldg, n, G.ravel(), ldg, sums)
    expect = a[:, :n].T @ a[:, :n]
    np.testing.assert_allclose(np.triu(G[:, :n]), np.triu(expect), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(sums[:n], a[:, :n].sum(0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("filters", [(7, 5, 3, 2, 1), (16, 12, 8, 6, 5), (1, 1, 1, 1, 1)], ids=str)
def test_engine_stats_match_torch(filters, images):
    model = random_model(filters, seed=sum(filters))
    got = channel_stats(model, images, threads=2)
    ref = channel_stats_torch(model.double(), images)
    for k in ref:
        assert got[k].count == ref[k].count
        scale = max(np.abs(ref[k].cov).max(), 1e-12)
        assert np.abs(got[k].cov - ref[k].cov).max() <= 1e-4 * scale, k
        assert np.abs(got[k].mean - ref[k].mean).max() <= 1e-4 * max(np.abs(ref[k].mean).max(), 1e-12), k


def test_select_filters_rule():
    g = np.diag([5.0, 3.0, 1.0, 1.0])  # independent contributions: variance shares 0.5, 0.3, 0.1, 0.1
    keep, explained = select_filters(g, 0.8)
    assert keep.tolist() == [0, 1] and explained == pytest.approx(0.8)
    keep, _ = select_filters(g, 0.85)
    assert keep.tolist() == [0, 1, 2]
    # two strongly anti-correlated small filters: dropping both costs little, so they go together
    g = np.array([[4.0, 0, 0], [0, 1.0, -0.99], [0, -0.99, 1.0]])
    keep, explained = select_filters(g, 0.9)
    assert keep.tolist() == [0] and explained > 0.9
    with pytest.raises(ValueError):
        select_filters(g, 0.0)


def test_surgery_is_exact(images):
    model = random_model((6, 5, 4, 3, 3), seed=1)
    x = to_tensor(images[:4])
    for layer in range(5):
        n = model.nums_filters[layer]
        drop = n // 2
        masked = random_model((6, 5, 4, 3, 3), seed=1)
        with torch.no_grad():  # the reference: silence filter `drop` where it is read
            if layer < 4:
                masked.get_submodule(f"layer{layer + 1}_conv_point").weight[:, drop] = 0
            else:
                masked.readout.weight.view(28, 28, -1)[..., drop] = 0
            smaller = remove_filters(model, layer, [k for k in range(n) if k != drop])
            assert smaller.nums_filters[layer] == n - 1
            torch.testing.assert_close(smaller(x), masked(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="distinct filter indices"):
        remove_filters(model, 1, [0, 0])
    with pytest.raises(ValueError, match="distinct filter indices"):
        remove_filters(model, 1, [])


@pytest.mark.parametrize("layer", [0, 2, 4])
def test_pruned_layer_reconstructs_threshold(layer, images):
    """Dropped filters replaced by their means: the reader's output keeps >= threshold of its variance."""
    model = random_model((12, 10, 8, 6, 6), seed=3).double()
    threshold = 0.85
    smaller, explained = prune_layer(model, layer, images, threshold)
    assert explained >= threshold and smaller.nums_filters[layer] < model.nums_filters[layer]
    # measure it in torch on the same images: pre-activation output of the reader, full vs kept-only
    stats = channel_stats_torch(model, images)
    name = "readout" if layer == 4 else f"layer{layer + 1}"
    plan = cc.compile(model, drop_dead_channels=False)
    g = contribution_gram(stats[name], None if layer == 4 else np.asarray(plan.pw[layer], np.float64))
    order = np.argsort(-np.diag(g))
    k = smaller.nums_filters[layer]
    dropped = order[k:]
    assert 1 - g[np.ix_(dropped, dropped)].sum() / g.sum() == pytest.approx(explained, rel=1e-6)
    if k > 1:  # and one filter fewer would not have been enough
        d2 = order[k - 1:]
        assert 1 - g[np.ix_(d2, d2)].sum() / g.sum() < threshold


def test_prune_paper_and_greedy(images):
    model = random_model((12, 10, 8, 6, 6), seed=5)
    x = to_tensor(images)
    with torch.no_grad():
        target = model(x).numpy()

    def accuracy(m):
        with torch.no_grad():
            return float(np.corrcoef(m(x).numpy(), target)[0, 1])

    small, hist = prune_paper(model, images, threshold=0.9, evaluate=accuracy)
    assert [h.layer for h in hist] == [-1, 4, 3, 2, 1, 0]
    assert all(b.num_parameters <= a.num_parameters for a, b in zip(hist, hist[1:]))
    assert small.num_parameters() < model.num_parameters()
    assert hist[0].accuracy == pytest.approx(1.0)
    greedy, ghist = prune_greedy(model, images, accuracy, tolerance=0.02)
    assert all(1.0 - h.accuracy < 0.02 for h in ghist)
    # one filter removed per accepted step, and the history ends at the model returned
    assert len(ghist) > 1, "this model has filters that cost < 2% of accuracy to remove"
    for before, after in zip(ghist, ghist[1:]):
        diff = np.subtract(before.nums_filters, after.nums_filters)
        assert sorted(diff) == [0, 0, 0, 0, 1] and diff[after.layer] == 1
        assert after.num_parameters < before.num_parameters
    assert tuple(greedy.nums_filters) == tuple(ghist[-1].nums_filters)
    assert accuracy(greedy) == pytest.approx(ghist[-1].accuracy, abs=1e-12)


TINY = dict(filters=(4, 4, 3, 3, 3), population_steps=3, pool_size=32, batch=8, retrain_steps=2, teacher_members=1,
            teacher_epochs=1)


def test_compress_round_trip_writes_models_summary_and_resumes(v4, tmp_path):
    import json

    from compactcortex.compress import Recipe, compress_session

    out = tmp_path / "out"
    summary = compress_session(v4, "190923", out, "published", [3, 0], Recipe(**TINY), threads=2, progress=False)
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["neurons"] == summary["neurons"] and summary["teacher"] == "published"
    assert [r["neuron"] for r in summary["neurons"]] == [3, 0]
    for r in summary["neurons"]:
        assert set(r) == {"neuron", "distilled_with", "teacher_params", "compact_params", "compact_filters", "published_params",
                          "r_teacher_test", "r_test", "r_teacher_model_test", "r2er_test", "r2er_teacher_test"}
        assert r["teacher_params"] == r["published_params"] > 0 and r["r2er_test"] is None  # no raw repeats
        model = cc.CompactModel.load(out / f"neuron{r['neuron']}.safetensors")
        assert model.num_parameters() == r["compact_params"] and list(model.nums_filters) == r["compact_filters"]
        plan = cc.Plan.load(out / f"neuron{r['neuron']}.plan")
        x = np.random.default_rng(0).integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)
        with torch.no_grad():
            ref = model(to_tensor(x)).numpy()
        np.testing.assert_allclose(cc.Predictor(plan, threads=1).predict(x), ref, atol=1e-4 * np.abs(ref).max())
        assert -1 <= r["r_teacher_test"] <= 1 and -1 <= r["r_test"] <= 1
    assert (out / "r_vs_params.png").stat().st_size > 1000
    # A rerun reads the finished neurons back instead of training them again.
    (out / "neuron0.safetensors").unlink()
    again = compress_session(v4, "190923", out, "published", [3, 0], Recipe(**TINY), threads=2, progress=False)
    assert again["neurons"] == summary["neurons"] and not (out / "neuron0.safetensors").exists()
    assert [r["distilled_with"] for r in summary["neurons"]] == [[3, 0], [3, 0]]


def test_a_rerun_with_other_neurons_recomputes_the_shared_ones(v4, tmp_path):
    """Neuron 0's model depends on the neurons distilled with it: a rerun into the same folder
    with another set recomputes it (and says with which set), never reuses the old row."""
    from compactcortex.compress import Recipe, compress_session

    first = compress_session(v4, "190923", tmp_path, "published", [3, 0], Recipe(**TINY), threads=1, progress=False)
    mtime = (tmp_path / "neurons" / "neuron0.json").stat().st_mtime_ns
    second = compress_session(v4, "190923", tmp_path, "published", [0, 5], Recipe(**TINY), threads=1, progress=False)
    assert [r["distilled_with"] for r in second["neurons"]] == [[0, 5], [0, 5]]
    assert (tmp_path / "neurons" / "neuron0.json").stat().st_mtime_ns != mtime
    assert (tmp_path / "work" / "neurons_3_0").is_dir() and (tmp_path / "work" / "neurons_0_5").is_dir()
    assert first["neurons"][1]["distilled_with"] == [3, 0]


def test_compress_errors_name_the_problem(v4, tmp_path, capsys):
    from compactcortex.cli import main
    from compactcortex.compress import Recipe, compress_session

    with pytest.raises(ValueError, match="no session 999999"):
        compress_session(v4, "999999", tmp_path, "published", [0], Recipe(**TINY), progress=False)
    with pytest.raises(ValueError, match=r"no neuron\(s\) \[99\]"):
        compress_session(v4, "190923", tmp_path, "published", [99], Recipe(**TINY), progress=False)
    with pytest.raises(ValueError, match="not 'published', 'fit' or an existing teacher file"):
        compress_session(v4, "190923", tmp_path, str(tmp_path / "missing.safetensors"), [0], Recipe(**TINY),
                         progress=False)
    with pytest.raises(ValueError, match="no published compact models"):
        compress_session(v4, "210325", tmp_path, "published", [0], Recipe(**TINY), progress=False)
    assert main(["compress", "--data", str(v4), "--session", "190923", "--neurons", "99", "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no neuron(s) [99]" in err[0]
    with pytest.raises(ValueError, match="--backbone applies to --teacher fit only"):
        compress_session(v4, "190923", tmp_path, "published", [0], Recipe(**TINY), backbone="none", progress=False)
    # a corrupt teacher file or backbone fails before the folder is claimed: the corrected rerun runs
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    for kw in (dict(teacher=str(tmp_path / "bad.safetensors")), dict(teacher="fit", backbone=str(tmp_path / "bad.safetensors"))):
        with pytest.raises(ValueError, match="bad.safetensors: not a readable safetensors file"):
            compress_session(v4, "190923", tmp_path / "claimed", neurons=[0], recipe=Recipe(**TINY), progress=False, **kw)
        assert not (tmp_path / "claimed" / "settings.json").exists()
    # a 2 MB session name ends in one short line
    assert main(["compress", "--data", str(v4), "--session", "x" * 2_000_000, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and len(err[0]) <= 400


def test_neuron_jobs_take_only_integer_neurons():
    from compactcortex.compress import NeuronJob

    job = NeuronJob("root", "190923", 3, "out", neurons=(3, 0))
    assert NeuronJob.from_dict(job.to_dict()).to_dict() == job.to_dict()
    for bad in ({"neuron": 1.7}, {"neuron": True}, {"neuron": "3"}, {"neurons": [0, 2.5]}, {"neurons": [True]},
                {"neurons": 5}, {"bogus": 1}):
        with pytest.raises(ValueError, match="NeuronJob: "):
            NeuronJob.from_dict({**job.to_dict(), **bad})


@pytest.mark.parametrize("backbone", ["none", "shared_compact_5", "trunk file"])
def test_compress_from_recordings_with_a_fitted_teacher(v4, tmp_path, backbone):
    from compactcortex.compress import Recipe, compress_session
    from compactcortex.fit import load_teacher
    from compactcortex.models.teacher import Ensemble
    from compactcortex.models.transfer import TransferTeacher
    from compactcortex.models.trunk import Trunk, save_trunks

    if backbone == "trunk file":  # a (random) trunk of compactcortex trunk
        torch.manual_seed(0)
        backbone = str(tmp_path / "in" / "ours.safetensors")
        save_trunks([Trunk((6, 5, 4, 3, 7), {"100001": (4, None, None)}).eval()], backbone)
    summary = compress_session(v4, "210325", tmp_path / "out", "fit", [1], Recipe(**TINY), threads=2,
                               backbone=backbone, progress=False)
    (row,) = summary["neurons"]
    assert row["published_params"] is None and row["teacher_params"] > row["compact_params"]
    assert None not in (row["r2er_test"], row["r2er_teacher_test"], row["r_teacher_model_test"])  # raw repeats
    teacher = load_teacher(tmp_path / "out" / "teacher.safetensors")
    if backbone == "none":
        assert isinstance(teacher, Ensemble) and summary["teacher_backbone"] is None
    elif backbone.endswith("ours.safetensors"):
        assert isinstance(teacher, TransferTeacher) and teacher.trunk.nums_filters == (6, 5, 4, 3, 7)
        assert summary["teacher_backbone"] == "ours.safetensors" and teacher.feature_engine is not None
    else:
        assert isinstance(teacher, TransferTeacher) and teacher.trunk.nums_filters == (5, 5, 5, 100, 100)
        assert summary["teacher_backbone"] == "shared_compact_model_5filters.keras"


def test_compress_backbone_names_are_checked(v4, tmp_path):
    from compactcortex.compress import resolve_teacher_backbone

    assert resolve_teacher_backbone("auto", v4).name == "shared_compact_model_200filters.keras"
    assert resolve_teacher_backbone("auto", tmp_path) is None  # nothing there: from scratch
    assert resolve_teacher_backbone("none", v4) is None
    with pytest.raises(ValueError, match="no shared compact model with 7 filters.*found sizes"):
        resolve_teacher_backbone("shared_compact_7", v4)
    with pytest.raises(ValueError, match="not 'auto', 'none'"):
        resolve_teacher_backbone(str(tmp_path / "nope.keras"), v4)


def test_compress_with_images_of_another_session(v4, tmp_path):
    from compactcortex.compress import Recipe, compress_session

    summary = compress_session(v4, "211022", tmp_path, "published", [0], Recipe(**TINY), threads=2,
                               images_from="210621", progress=False)
    (row,) = summary["neurons"]
    assert summary["images"] == "210621" and row["r_test"] is None and row["r_teacher_test"] is not None


def test_compress_refuses_a_folder_of_another_recipe(v4, tmp_path):
    from compactcortex.compress import Recipe, compress_session

    compress_session(v4, "190923", tmp_path, "published", [0], Recipe(**TINY), threads=1, progress=False)
    with pytest.raises(ValueError, match="other settings.*recipe"):
        compress_session(v4, "190923", tmp_path, "published", [0], Recipe(**{**TINY, "retrain_steps": 3}),
                         threads=1, progress=False)


def test_recipe_scales_its_budget_with_the_minutes_per_neuron():
    from compactcortex.compress import DEFAULT_MINUTES_PER_NEURON, Recipe

    base = Recipe()
    assert base.scaled(None) == base
    double = base.scaled(2 * DEFAULT_MINUTES_PER_NEURON)
    assert (double.population_steps, double.pool_size, double.retrain_steps, double.final_steps) == (
        2 * base.population_steps, 2 * base.pool_size, 2 * base.retrain_steps, 2 * base.final_steps)
    assert double.filters == base.filters and double.threshold == base.threshold
    assert base.scaled(1e-6).population_steps == base.population_steps // 4  # never below a quarter
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="minutes per neuron must be > 0"):
            base.scaled(bad)


WORKER = """
import json, sys
from compactcortex.compress import compress_neuron
print(json.dumps(compress_neuron(json.loads(sys.argv[1]))))
"""


def test_compress_neuron_is_a_unit_of_work_for_other_processes(v4, tmp_path):
    """Stage 1 here, then each neuron in worker processes: two at once on the same neuron take
    turns (one trains, the other returns its saved row), and the rows match a local run's."""
    import json
    import subprocess
    import sys
    from dataclasses import asdict

    from compactcortex.compress import NeuronJob, Recipe, compress_neuron, compress_session, prepare_run

    recipe = asdict(Recipe(**TINY))
    job = NeuronJob(str(v4), "190923", 3, str(tmp_path / "jobs"), neurons=(3, 0), recipe=recipe, threads=1)
    with pytest.raises(ValueError, match="stage 1 .* has not been run"):
        compress_neuron(job)
    prepare_run(job, progress=False)
    spec = json.dumps(job.to_dict())
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, spec], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    rows = [json.loads(w.communicate(timeout=600)[0].strip().splitlines()[-1]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert rows[0] == rows[1]
    model = tmp_path / "jobs" / "neuron3.safetensors"
    cc.CompactModel.load(model)  # whole, not interleaved writes
    # idempotent: the finished neuron is read back, not trained again
    before = model.stat().st_mtime_ns
    assert compress_neuron(job.to_dict()) == rows[0] and model.stat().st_mtime_ns == before
    # the same job run locally, in one process, gives the same row
    local = compress_session(v4, "190923", tmp_path / "local", "published", [3, 0], Recipe(**TINY), threads=1,
                             progress=False)
    assert local["neurons"][0] == rows[0]
    with pytest.raises(ValueError, match="neuron 5 was not distilled"):
        compress_neuron({**job.to_dict(), "neuron": 5})


@pytest.mark.parametrize("backend", ["ray", "slurm"])
def test_cluster_backends_give_the_local_rows(v4, tmp_path, backend):
    """Ray tasks (a local cluster started here) and a submitit job array (its local executor)
    run the same unit of work: the same rows as the local backend, in the same order."""
    pytest.importorskip("ray" if backend == "ray" else "submitit")
    from compactcortex.compress import Recipe, compress_session

    args = (v4, "190923")
    kw = dict(teacher="published", neurons=[3, 0], recipe=Recipe(**TINY), threads=1, progress=False)
    local = compress_session(*args, tmp_path / "local", **kw)
    options = {"cluster": "local", "timeout_min": 10} if backend == "slurm" else None
    if backend == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        remote = compress_session(*args, tmp_path / backend, **kw, backend=backend, cpus_per_task=1, slurm=options)
    finally:
        if backend == "ray":
            ray.shutdown()
    assert remote["neurons"] == local["neurons"]
    assert [r["neuron"] for r in remote["neurons"]] == [3, 0]


def test_ray_retries_a_killed_worker(v4, tmp_path):
    """A Ray worker killed (SIGKILL) while it compresses a neuron: the task is retried and
    resumes, and the rows equal an undisturbed local run's."""
    ray = pytest.importorskip("ray")
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    from compactcortex.compress import Recipe, compress_session

    kw = dict(teacher="published", neurons=[3, 0], recipe=Recipe(**{**TINY, "retrain_steps": 6}), threads=1,
              progress=False)
    local = compress_session(v4, "190923", tmp_path / "local", **kw)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    killed = []

    def kill_one_worker():  # the first process that Ray titled after our task, once it has started on a neuron
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if list((tmp_path / "ray" / "neurons").glob("*.lock")):
                for proc in Path("/proc").iterdir():
                    try:
                        cmd = (proc / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if proc.name.isdigit() and b"ray::compress_neuron" in cmd:
                        os.kill(int(proc.name), signal.SIGKILL)
                        killed.append(int(proc.name))
                        break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        remote = compress_session(v4, "190923", tmp_path / "ray", **kw, backend="ray", cpus_per_task=1)
    finally:
        killer.join()
        ray.shutdown()
    assert killed, "no worker was seen running compress_neuron"
    assert remote["neurons"] == local["neurons"]
