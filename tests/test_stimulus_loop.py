"""The stimulus-loop predictor: buffers, deadlines, latency statistics, choice helpers."""
import threading

import numpy as np
import pytest

import compactcortex as cc
from compactcortex.stimulus_loop import LoopPredictor, most_informative, top_k
from helpers import random_model


@pytest.fixture(scope="module")
def models():
    return [random_model(f, seed=i) for i, f in enumerate([(4, 3, 3, 2, 2), (3, 4, 2, 3, 1), (5, 2, 2, 2, 2)])]


def test_predict_matches_population_and_stats(models):
    lp = LoopPredictor(models, threads=2, max_images=64)
    x = np.random.default_rng(0).integers(0, 256, (20, 112, 112, 3), dtype=np.uint8)
    expect = cc.PopulationPredictor(models, threads=1).predict(x)
    np.testing.assert_array_equal(lp.predict(x), expect)
    np.testing.assert_array_equal(lp.predict(x, deadline_s=60.0), expect)  # generous: everything done
    s = lp.stats()
    assert s["calls"] == 2 and s["missed"] == 0 and 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"]
    with pytest.raises(ValueError, match="at most 64"):
        lp.predict(np.zeros((65, 112, 112, 3), np.uint8))
    lp.reset_stats()
    assert lp.stats()["calls"] == 0


def test_deadline_stops_early(models):
    lp = LoopPredictor(models, threads=1, max_images=256, chunk=8)
    x = np.random.default_rng(1).integers(0, 256, (256, 112, 112, 3), dtype=np.uint8)
    lp.predict(x[:8])
    per_image = lp.stats()["p50_ms"] / 8 / 1e3
    out = lp.predict(x, deadline_s=per_image * 40)  # room for about 40 of 256 images
    done = ~np.isnan(out[:, 0])
    assert done[:8].all() and not done.all(), "the first chunk always runs; the deadline cuts the rest"
    assert done.sum() < 256
    assert (np.flatnonzero(~done) > np.flatnonzero(done).max()).all(), "images are done in order"


def test_concurrent_callers(models):
    lp = LoopPredictor(models, threads=2, max_images=16)
    xs = [np.random.default_rng(s).integers(0, 256, (6, 112, 112, 3), dtype=np.uint8) for s in range(3)]

    def worker(i):
        for _ in range(4):
            # predict returns a view of a shared buffer, valid until the next call: a concurrent
            # caller may overwrite it after the call returns, so only the call itself is checked
            lp.predict(xs[i])

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert lp.stats()["calls"] == 12
    # and, serialised by the lock, every call computed its own images
    np.testing.assert_array_equal(lp.predict(xs[1]), cc.PopulationPredictor(models, threads=1).predict(xs[1]))


def test_threads_sharing_a_loop_predictor_get_their_own_answers(models):
    """top_k and predict(copy=True) from 8 threads give what each pool gives alone (the buffer is
    shared: a plain predict view may be overwritten by the next caller)."""
    lp = LoopPredictor(models, threads=2, max_images=16)
    pools = [np.random.default_rng(100 + s).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8) for s in range(8)]
    ref = cc.PopulationPredictor(models, threads=1)
    expect_pred = [ref.predict(p) for p in pools]
    expect_top = [top_k(e, k=2) for e in expect_pred]
    wrong = []

    def worker(i):
        for _ in range(15):
            if not np.array_equal(lp.top_k(pools[i], k=2), expect_top[i]):
                wrong.append(("top_k", i))
            if not np.array_equal(lp.predict(pools[i], copy=True), expect_pred[i]):
                wrong.append(("predict", i))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert wrong == []


def test_top_k_and_most_informative():
    p = np.array([[1.0, 9.0], [5.0, 2.0], [3.0, 7.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(top_k(p, k=2), [[1, 2], [0, 2]])
    np.testing.assert_array_equal(top_k(p, neurons=[1], k=1), [[0]])
    with pytest.raises(ValueError):
        top_k(p, k=5)
    members = np.zeros((2, 5, 3))
    members[0, 3], members[1, 3] = 1.0, -1.0
    members[0, 1], members[1, 1] = 0.5, -0.5
    members[:, :, :] += np.arange(5)[None, :, None]
    assert most_informative(members, k=2).tolist() == [3, 1]


def test_loop_bench_command(tmp_path):
    import json

    from compactcortex.cli import main

    out = tmp_path / "l.json"
    assert main(["loop-bench", "--random", "2", "--trials", "2", "--pool", "4", "--no-torch", "--rate", "50",
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["engine"]["trials"] == 2 and res["engine"]["largest_pool_at_p99"] >= 0 and "torch_eager" not in res
