"""The CPU wheel: built here as cibuildwheel builds it (COMPACTCORTEX_CUDA=OFF), checked with
auditwheel, installed into a fresh virtual environment with no compiler on PATH, and run there
without torch. Needs the package index (build requirements, and the wheel's dependencies)."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import compactcortex as cc
from helpers import random_model

REPO = Path(__file__).resolve().parents[1]
COMPILERS = ("gcc", "g++", "cc", "c++", "clang", "nvcc")


def run(cmd, **kw):
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """The CPU wheel of this checkout: built here, or the one named by COMPACTCORTEX_TEST_WHEEL
    (built the same way beforehand: .ci/run builds it once for this test and the Brain-Score
    environment)."""
    out = tmp_path_factory.mktemp("wheel")
    given = os.environ.get("COMPACTCORTEX_TEST_WHEEL")
    if given:
        assert Path(given).is_file(), f"COMPACTCORTEX_TEST_WHEEL={given}: no such file"
        return Path(shutil.copy(given, out))
    env = {**os.environ, "COMPACTCORTEX_CUDA": "OFF"}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)], env=env)
    (path,) = out.glob("compactcortex-*.whl")
    return path


def test_wheel_holds_the_cpu_engine_and_only_system_libraries(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("compactcortex/_engine.") and n.endswith(".so") for n in names)
    assert not any("_engine_cuda" in n for n in names)  # the CPU variant
    assert not any(n.startswith(("tests/", "csrc/", "benchmarks/")) for n in names)
    assert wheel.stat().st_size < 5_000_000, f"{wheel.name}: {wheel.stat().st_size} bytes"
    auditwheel = shutil.which("auditwheel")
    if auditwheel is None:
        pytest.skip("auditwheel not installed (test extra, Linux only)")
    report = run([auditwheel, "show", str(wheel)])
    # only glibc/libstdc++-era system libraries: a manylinux tag is possible after repair
    assert 'consistent with\nthe following platform tag: "manylinux_' in report, report


def test_wheel_predicts_in_a_fresh_environment_without_compiler_or_torch(wheel, tmp_path):
    plan = cc.compile(random_model((7, 5, 3, 2, 4), seed=3))
    plan.save(tmp_path / "m.plan")
    images = np.random.default_rng(0).integers(0, 256, (5, 112, 112, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    expected = cc.Predictor(plan, threads=1).predict(images)

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = str(bin_dir)  # nothing else: no compiler can be found
    assert all(shutil.which(c, path=env["PATH"]) is None for c in COMPILERS)
    run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(wheel)], env=env)
    script = ("import sys, numpy as np, compactcortex as cc\n"
              "assert cc.__file__.startswith(sys.prefix), cc.__file__\n"
              f"out = cc.Predictor({str(tmp_path / 'm.plan')!r}, threads=1).predict(np.load({str(tmp_path / 'images.npy')!r}))\n"
              "assert 'torch' not in sys.modules\n"
              f"np.save({str(tmp_path / 'out.npy')!r}, out)\n")
    run([str(bin_dir / "python"), "-c", script], env=env, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
