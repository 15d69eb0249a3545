"""compress runs end to end: the round trip, reruns and resumes, fitted teachers, errors, budgets."""
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch

import compactcortex as cc
from compactcortex.models.image_tensor import to_tensor
from helpers import TINY_RECIPE as TINY

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
                          "r_teacher_test", "r_test", "r_teacher_model_test", "r2er_test", "r2er_teacher_test",
                          "r_teacher_trace"}
        trace = r["r_teacher_trace"]  # the shared student's neuron, then each pruned layer
        assert trace[0]["layer"] == -1 and [s["layer"] for s in trace[1:6]] == [4, 3, 2, 1, 0]
        assert trace[-1]["filters"] == r["compact_filters"] and all(-1 <= s["r"] <= 1 for s in trace)
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

    recipe = Recipe(**{**TINY, "rounds": 1})  # what is tested is the bookkeeping, not the pruning
    first = compress_session(v4, "190923", tmp_path, "published", [3, 0], recipe, threads=1, progress=False)
    mtime = (tmp_path / "neurons" / "neuron0.json").stat().st_mtime_ns
    second = compress_session(v4, "190923", tmp_path, "published", [0, 5], recipe, threads=1, progress=False)
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
    # an unknown device is an argument error; an unusable GPU is refused before the folder is claimed
    with pytest.raises(SystemExit) as e:
        main(["compress", "--data", str(v4), "--session", "190923", "--device", "gpu", "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'" in capsys.readouterr().err
    from compactcortex.devices import cuda_unusable_reason

    if cuda_unusable_reason(7) is not None:
        assert main(["compress", "--data", str(v4), "--session", "190923", "--neurons", "0", "--device", "cuda:7",
                     "--out", str(tmp_path / "gpu")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "device 'cuda:7'" in err[0] and not (tmp_path / "gpu" / "settings.json").exists()
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

    import json

    compress_session(v4, "190923", tmp_path, "published", [0], Recipe(**TINY), threads=1, progress=False)
    # a folder written before a recipe field existed resumes: the new field's default is the old behaviour
    settings = json.loads((tmp_path / "settings.json").read_text())
    del settings["recipe"]["other_session_images"]
    (tmp_path / "settings.json").write_text(json.dumps(settings))
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


def test_other_session_images_widen_distillation_but_never_copy_the_session(v4, tmp_path):
    from compactcortex.compress import NeuronJob, Recipe, compress_neuron
    from compactcortex.compress.stage1 import prepare_run, session_run
    from compactcortex.data.natural import near_duplicates

    root = tmp_path / "data"  # 190923 and one other session's images (210305: 400 images)
    (root / "images").mkdir(parents=True)
    for sub in ("responses_repeat_averaged", "responses_raw", "compact_models"):
        (root / sub).symlink_to((v4 / sub).resolve())
    for s in ("190923", "210305"):
        (root / "images" / f"images_{s}.zip").symlink_to((v4 / "images" / f"images_{s}.zip").resolve())
    job = NeuronJob(str(root), "190923", -1, str(tmp_path / "out"), "published", (0,),
                    asdict(Recipe(**{**TINY, "other_session_images": True})), 2)
    prepare_run(job, progress=False)
    run = session_run(job, progress=False, train_shared=False)
    own = run.data.images
    np.testing.assert_array_equal(run.train_images[:600], own[run.data.fit_indices])
    assert 600 < len(run.train_images) <= 1000
    assert not near_duplicates(run.train_images[600:], own).any()
    row = compress_neuron(replace(job, neuron=0))
    assert -1 <= row["r_teacher_test"] <= 1
