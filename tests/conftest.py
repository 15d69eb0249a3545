"""Shared fixtures: the V4 data folder (helpers the tests import live in helpers.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "v4"


@pytest.fixture
def plan_file(tmp_path) -> Path:
    """A saved Plan of a small random model."""
    import compactcortex as cc
    from helpers import random_model

    path = tmp_path / "m.plan"
    cc.compile(random_model((4, 3, 3, 3, 2), seed=7)).save(path)
    return path


@pytest.fixture
def v4() -> Path:
    """The published V4 data folder; tests using it skip where it is absent."""
    if not (DATA / "compact_models" / "torch").is_dir():
        pytest.skip(f"published V4 data not found at {DATA.resolve()} (../shared/data/v4 beside the repository)")
    return DATA
