"""Shared fixtures: the V4 data folder (helpers the tests import live in helpers.py), and the
hypothesis profiles of the property tests: ``ci`` (the default: 40 examples per property) or
``long`` (4,000) chosen by the environment variable HYPOTHESIS_PROFILE."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the property tests skip themselves
    pass
else:
    settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("long", max_examples=4000, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "v4"


def pytest_configure(config):
    """Under pytest-xdist, each worker's default threads (PyTorch's and the engine's) are its share
    of the CPUs: oversubscribed thread pools that spin-wait cost more than they gain. Tests that ask
    for a number of threads still get it."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))


@pytest.fixture
def plan_file(tmp_path) -> Path:
    """A saved Plan of a small random model."""
    import compactcortex as cc
    from helpers import random_model

    path = tmp_path / "m.plan"
    cc.compile(random_model((4, 3, 3, 3, 2), seed=7)).save(path)
    return path


@pytest.fixture(scope="session")
def v4() -> Path:
    """The published V4 data folder; tests using it skip where it is absent."""
    if not (DATA / "compact_models" / "torch").is_dir():
        pytest.skip(f"published V4 data not found at {DATA.resolve()} (../shared/data/v4 beside the repository)")
    return DATA
