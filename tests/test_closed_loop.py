"""The in-silico closed loop: the rig's budget and trials, selection rules, history, resume."""
from __future__ import annotations

import numpy as np
import pytest

from compactcortex.fit.active import disagreement
from compactcortex.fit.closed_loop import Rig, closed_loop


def rates(images):
    """Two model neurons: the mean red, and the mean blue, of an image (spikes per bin)."""
    x = np.asarray(images, np.float64)
    return np.stack([x[..., 0].mean((1, 2)) / 32, x[..., 2].mean((1, 2)) / 32])


class LinearTeacher:
    """Least squares of responses on the mean colour, members fitted on halves of the images."""

    def __init__(self, session):
        x = np.c_[np.asarray(session.images, np.float64).mean((1, 2)), np.ones(session.num_images)]
        y = session.responses.T
        self.fits = [np.linalg.lstsq(x[h::2], y[h::2], rcond=None)[0] for h in (0, 1)]

    def predict_members(self, images, batch=64):
        x = np.c_[np.asarray(images, np.float64).mean((1, 2)), np.ones(len(images))]
        return np.stack([x @ w for w in self.fits])

    def predict(self, images, batch=64):
        return self.predict_members(images).mean(0)


def images(n, seed):
    """Images of one random colour each, plus pixel noise."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 200, (n, 1, 1, 3)) + rng.integers(0, 56, (n, 112, 112, 3))
    return x.astype(np.uint8)


def test_rig_draws_poisson_trials_within_its_budget():
    rig = Rig(rates, budget=50, seed=3)
    x = images(40, 0)
    raw = rig.record(x, repeats=400)
    assert raw.shape == (2, 40, 400) and rig.remaining == 10 and np.all(raw == np.round(raw))
    np.testing.assert_allclose(raw.mean(2), rates(x), rtol=0.15)      # Poisson: mean = rate ...
    np.testing.assert_allclose(raw.var(2), rates(x), rtol=0.35)       # ... = variance
    with pytest.raises(ValueError, match="exceeds the rig's budget: 10 of 50 left"):
        rig.record(images(11, 1), 2)
    assert rig.remaining == 10  # a refused call records nothing
    again = Rig(rates, budget=50, seed=3).record(x, repeats=400)
    np.testing.assert_array_equal(again, raw)


@pytest.mark.parametrize("select", ["active", "random"])
def test_loop_records_what_it_says_and_resumes(select, tmp_path):
    cand, fresh = images(60, 1), images(20, 2)
    rig = Rig(rates, budget=40, seed=0)
    teacher, session, history = closed_loop(rig, 3, 8, cand, LinearTeacher, fresh, initial=10, repeats=4,
                                            select=select, progress=False)
    assert [h["images"] for h in history] == [10, 18, 26, 34] and rig.recorded == 34
    assert session.raw.shape == (2, 34, 4) and len({int(session.images[i].sum()) for i in range(34)}) == 34
    assert all(0 <= h["r2_truth_median"] <= 1 for h in history) and history[-1]["r2_truth_median"] > 0.9
    # Interrupted after a round (the checkpoint is what a killed run leaves), a rerun ends the same.
    ck = tmp_path / "ck"
    calls = []

    def flaky(s):
        calls.append(s.num_images)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return LinearTeacher(s)
    with pytest.raises(KeyboardInterrupt):
        closed_loop(Rig(rates, 40, 0), 3, 8, cand, flaky, fresh, 10, 4, select, checkpoint_dir=ck, progress=False)
    _, resumed, h2 = closed_loop(Rig(rates, 40, 0), 3, 8, cand, LinearTeacher, fresh, 10, 4, select,
                                 checkpoint_dir=ck, progress=False)
    assert h2[:3] == [{**h, "fit_s": h2[i]["fit_s"]} for i, h in enumerate(history[:3])]
    np.testing.assert_array_equal(resumed.raw, session.raw)


def test_active_selection_takes_the_most_disputed_candidates():
    cand, fresh = images(60, 1), images(20, 2)
    _, session, _ = closed_loop(Rig(rates, 30, 0), 1, 10, cand, LinearTeacher, fresh, initial=10, repeats=3,
                                select="active", progress=False)
    first = Rig(rates, 10, 0)
    _, s0, _ = closed_loop(first, 0, 10, cand, LinearTeacher, fresh, initial=10, repeats=3, progress=False)
    chosen0 = {int(c.sum()) for c in s0.images}
    left = [i for i in range(60) if int(cand[i].sum()) not in chosen0]
    d = disagreement(LinearTeacher(s0).predict_members(cand[left]))
    want = {int(cand[left[i]].sum()) for i in np.argsort(-d)[:10]}
    assert {int(c.sum()) for c in session.images[10:]} == want


def test_loop_refuses_impossible_plans():
    cand, fresh = images(20, 1), images(5, 2)
    with pytest.raises(ValueError, match="only 20 candidates"):
        closed_loop(Rig(rates, 100), 3, 8, cand, LinearTeacher, fresh, progress=False)
    with pytest.raises(ValueError, match="budget has 10 left"):
        closed_loop(Rig(rates, 10), 1, 5, cand, LinearTeacher, fresh, initial=8, progress=False)
    with pytest.raises(ValueError, match="select must be one of"):
        closed_loop(Rig(rates, 100), 1, 5, cand, LinearTeacher, fresh, select="greedy", progress=False)
