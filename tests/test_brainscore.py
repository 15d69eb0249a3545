"""The Brain-Score plugin against brainscore-vision's own interfaces, on local stimuli.

brainscore-vision pins numpy<2 and old xarray, so it lives in an environment of its own: .ci/run
makes one and runs this file there; elsewhere these tests skip.
"""
import numpy as np
import pytest

pytest.importorskip("brainscore_vision", reason="brainscore-vision is not installed (it needs numpy<2: "
                    ".ci/run runs this file in an environment of its own)")

import compactcortex as cc  # noqa: E402
from brainscore_core.supported_data_standards.brainio.assemblies import NeuroidAssembly  # noqa: E402
from brainscore_core.supported_data_standards.brainio.stimuli import StimulusSet  # noqa: E402
from brainscore_core import Score  # noqa: E402
from brainscore_vision.benchmark_helpers.neural_common import NeuralBenchmark  # noqa: E402
from brainscore_vision.benchmarks.cowley2026.benchmark import VISUAL_DEGREES, pls_metric  # noqa: E402
from compactcortex.brainscore import brain_model, read_stimulus  # noqa: E402
from compactcortex.data.procedural import procedural  # noqa: E402
from helpers import random_model  # noqa: E402
from PIL import Image  # noqa: E402

FILTERS = [(7, 5, 3, 2, 1), (16, 12, 3, 7, 3), (4, 9, 5, 3, 2)]


@pytest.fixture(autouse=True)
def brainscore_home(tmp_path, monkeypatch):
    """Brain-Score's screen placement caches images under these folders."""
    monkeypatch.setenv("BRAINSCORE_HOME", str(tmp_path / "brainscore"))
    monkeypatch.setenv("RESULTCACHING_HOME", str(tmp_path / "result_caching"))


@pytest.fixture(scope="module")
def plans():
    return [cc.compile(random_model(f, seed=i)) for i, f in enumerate(FILTERS)]


def stimulus_set(folder, images, name="local"):
    """A StimulusSet of PNG files (lossless, so the decoded pixels are the ones written)."""
    folder.mkdir(exist_ok=True)
    ids, paths = [f"{name}{k}" for k in range(len(images))], {}
    for sid, img in zip(ids, images):
        paths[sid] = folder / f"{sid}.png"
        Image.fromarray(img).save(paths[sid])
    s = StimulusSet({"stimulus_id": ids, "image_label": [f"label{k % 3}" for k in range(len(ids))]})
    s.stimulus_paths = paths
    s.identifier = name
    return s


def test_look_at_returns_one_neuroid_per_model_on_rgb_pixels(plans, tmp_path):
    images = procedural(10, seed=3)
    stimuli = stimulus_set(tmp_path / "s", images)
    model = brain_model(plans, identifier="test-compact")
    assert model.identifier == "test-compact" and model.visual_degrees() == VISUAL_DEGREES
    model.start_recording("V4", time_bins=[(70, 170), (170, 270)])
    got = model.look_at(stimuli, number_of_trials=14)
    assert isinstance(got, NeuroidAssembly)
    assert got.dims == ("presentation", "neuroid", "time_bin") and got.shape == (10, 3, 2)
    assert list(got["stimulus_id"].values) == list(stimuli["stimulus_id"])
    assert list(got["image_label"].values) == list(stimuli["image_label"])
    assert list(got["neuroid_id"].values) == ["neuron0", "neuron1", "neuron2"]
    assert set(got["region"].values) == {"V4"}
    assert list(got["time_bin_start"].values) == [70, 170] and list(got["time_bin_end"].values) == [170, 270]
    # RGB in the published order: the same responses as the engine on the pixels written
    expected = cc.PopulationPredictor(plans, threads=1).predict(images)
    np.testing.assert_array_equal(got.values[:, :, 0], expected)
    np.testing.assert_array_equal(got.values[:, :, 1], expected)


def test_stimuli_of_other_sizes_and_modes_are_resized_rgb(tmp_path):
    big = np.repeat(np.repeat(procedural(1, seed=5)[0], 2, 0), 2, 1)  # 224x224
    Image.fromarray(big).save(tmp_path / "big.png")
    Image.fromarray(big[..., 0]).convert("L").save(tmp_path / "grey.png")
    small = read_stimulus(tmp_path / "big.png")
    assert small.shape == (112, 112, 3) and small.dtype == np.uint8
    # a 2x2-replicated image shrinks back to (nearly) itself
    assert np.abs(small.astype(int) - procedural(1, seed=5)[0]).mean() < 8
    grey = read_stimulus(tmp_path / "grey.png")
    assert grey.shape == (112, 112, 3) and (grey[..., 0] == grey[..., 2]).all()
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png: cannot decode"):
        read_stimulus(tmp_path / "junk.png")


def test_list_of_paths_passive_task_and_errors(plans, tmp_path):
    stimuli = stimulus_set(tmp_path / "s", procedural(3, seed=1))
    files = [str(stimuli.get_stimulus(s)) for s in stimuli["stimulus_id"]]
    model = brain_model(plans[:2])
    model.start_recording("V4", [(50, 150)])
    got = model.look_at(files)
    assert got.shape == (3, 2, 1) and list(got["stimulus_path"].values) == files
    model.start_task("passive")
    assert model.look_at(files) is None
    with pytest.raises(NotImplementedError, match="perform no task"):
        model.start_task("label", "imagenet")
    with pytest.raises(ValueError, match="cannot record from 'IT'"):
        model.start_recording("IT", [(70, 170)])
    with pytest.raises(ValueError, match="start < end"):
        model.start_recording("V4", [(170, 70)])
    with pytest.raises(ValueError, match="session="):
        brain_model(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        brain_model([])
    with pytest.raises(ValueError, match="visual_degrees"):
        brain_model(plans, visual_degrees=float("nan"))


def recorded_assembly(stimuli, responses):
    """A V4 assembly shaped like the Cowley2026 benchmark's (time bin squeezed, region V4)."""
    n, m = responses.shape
    a = NeuroidAssembly(responses[:, :, None], dims=["presentation", "neuroid", "time_bin"], coords={
        "stimulus_id": ("presentation", list(stimuli["stimulus_id"])),
        "image_label": ("presentation", list(stimuli["image_label"])),
        "neuroid_id": ("neuroid", [f"rec{k}" for k in range(m)]),
        "region": ("neuroid", ["V4"] * m),
        "time_bin_start": ("time_bin", [50]), "time_bin_end": ("time_bin", [150])})
    a = a.squeeze("time_bin")
    a.attrs["stimulus_set"] = stimuli
    return a


def test_cowley_benchmark_on_the_recorded_session(v4, tmp_path):
    """Brain-Score's NeuralBenchmark with the Cowley2026 PLS metric, on session 190923's own
    images and repeat-averaged V4 responses (the benchmark's data, read locally): the published
    compact models score well above zero; with the recordings' stimuli shuffled, near zero. The
    images include the models' training images: a check of the plumbing, not of accuracy."""
    session = cc.data.load_session(v4, 190923)
    keep = slice(0, 400)  # enough for the metric's 10 cross-validation splits, quick
    stimuli = stimulus_set(tmp_path / "s", session.images[keep], name="cowley190923")
    model = brain_model(v4, session=190923)
    assert model.identifier == "compactcortex-190923"
    recorded = session.responses[:, keep].T

    def score(responses):
        bench = NeuralBenchmark(identifier="local.V4-pls", version=1, assembly=recorded_assembly(stimuli, responses),
                                similarity_metric=pls_metric(), visual_degrees=VISUAL_DEGREES, number_of_trials=1,
                                ceiling_func=lambda: Score(1.0), parent="V4", bibtex=None)
        return float(bench(model).values)

    real = score(recorded)
    shuffled = score(recorded[np.random.default_rng(0).permutation(len(recorded))])
    assert real > 0.2 and shuffled < 0.05, (real, shuffled)


def test_other_visual_degrees_go_through_brainscore_screen_placement(plans, tmp_path):
    """Stimuli spanning 8 degrees shown to a model of 11.2: Brain-Score places them on a larger
    grey screen and the plugin resizes that screen to 112x112; the responses differ from the
    unplaced images' and stay finite."""
    from brainscore_vision.benchmark_helpers.screen import place_on_screen

    images = procedural(4, seed=2)
    stimuli = stimulus_set(tmp_path / "s", images, name="eight_degrees")
    placed = place_on_screen(stimuli, target_visual_degrees=VISUAL_DEGREES, source_visual_degrees=8)
    model = brain_model(plans)
    model.start_recording("V4", [(70, 170)])
    got = model.look_at(placed).values[:, :, 0]
    direct = cc.PopulationPredictor(plans, threads=1).predict(images)
    assert np.isfinite(got).all() and not np.allclose(got, direct)
