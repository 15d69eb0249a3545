"""The main job end to end (tiny sizes), its resume, and the data commands."""
import json
import time

import numpy as np

from compactcortex.cli import main


def test_demo_quick_and_resume(tmp_path, capsys):
    out = tmp_path / "demo"
    t0 = time.perf_counter()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    keys = {"teacher_params", "student_params", "compact_params", "r2er_teacher", "r2er_compact", "r_compact_vs_truth"}
    assert len(summary["neurons"]) == 2
    for row in summary["neurons"]:
        assert keys <= set(row)
        assert row["compact_params"] <= row["student_params"] < row["teacher_params"]
        assert all(np.isfinite(row[k]) for k in keys)
    # what the summary says is what the report says, and the elapsed time is the run's own
    report = (out / "report.md").read_text()
    assert f"{summary['engine_speedup_vs_torch']:.1f}x" in report
    assert 0 < summary["elapsed_s"] <= wall + 0.1
    for name in ("report.md", "accuracy_vs_params.png", "predicted_vs_measured.png", "layer0_filters.png"):
        assert (out / name).stat().st_size > 0
    plans = sorted((out / "models").glob("compact_n*.plan"))
    assert len(plans) == 2
    # a rerun reuses every saved stage and reproduces the accuracies
    models_before = {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.safetensors")}
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert [r["r2er_compact"] for r in again["neurons"]] == [r["r2er_compact"] for r in summary["neurons"]]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "models").glob("*.safetensors")} == models_before


def test_data_digital_writes_the_published_layout(tmp_path):
    from compactcortex.data import load_digital_population, load_session

    assert main(["data", "digital", "--out", str(tmp_path), "--neurons", "3", "--images", "20", "--repeats", "4",
                 "--min-repeats", "2"]) == 0
    s = load_session(tmp_path, "digital")
    assert s.images.shape == (20, 112, 112, 3) and s.raw.shape == (3, 20, 4)
    pop = load_digital_population(tmp_path)
    np.testing.assert_array_equal(pop.rates(s.images[:3]), pop.true_rates[:, :3])
