"""The engine against the float64 PyTorch reference on random models."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import compactcortex as cc
from helpers import random_model, recentred, rel_err, torch_reference

FILTER_CHOICES = [1, 2, 3, 7, 16, 48, 100]


def drawn_filters(seed):
    rng = np.random.default_rng(seed)
    return tuple(int(v) for v in rng.choice(FILTER_CHOICES, size=5))


# Filter counts drawn from FILTER_CHOICES, plus the corner cases all-1 and all-100.
CASES = [drawn_filters(s) for s in range(6)] + [(1, 1, 1, 1, 1), (100, 100, 100, 100, 100)]


@pytest.mark.parametrize("filters", CASES, ids=str)
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_engine_matches_float64_reference(filters, batch):
    model = random_model(filters, seed=sum(filters) + batch)
    x = recentred(batch, seed=batch)
    ref = torch_reference(model, x)
    assert np.abs(ref).max() > 0, "degenerate test model"
    for threads in (1, 2):
        for layer0 in ("winograd", "direct"):
            got = cc.Predictor(model, threads=threads, layer0=layer0).predict(x)
            assert got.shape == (batch,) and got.dtype == np.float32
            assert rel_err(got, ref) <= 1e-4, (filters, batch, threads, layer0)


@pytest.mark.parametrize("isa", cc.available_isas())
@pytest.mark.parametrize("layer0", ["winograd", "direct"])
def test_every_isa_agrees(isa, layer0):
    model = random_model((16, 7, 3, 2, 1), seed=3)
    x = recentred(3, seed=1)
    ref = torch_reference(model, x)
    pred = cc.Predictor(model, threads=1, isa=isa, layer0=layer0)
    assert pred.isa == isa and pred.layer0 == layer0
    assert rel_err(pred.predict(x), ref) <= 1e-4


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
@pytest.mark.parametrize("batch", [1, 2, 3, 7])
def test_thread_splits_agree(threads, batch):
    """Whole-image and row-band splitting give the same numbers."""
    model = random_model((7, 16, 3, 3, 2), seed=5)
    x = recentred(batch, seed=2)
    ref = torch_reference(model, x)
    for layer0 in ("winograd", "direct"):
        got = cc.Predictor(model, threads=threads, layer0=layer0).predict(x)
        assert rel_err(got, ref) <= 1e-4
        # every row is computed by the same kernels whichever thread takes it: bit for bit
        np.testing.assert_array_equal(got, cc.Predictor(model, threads=1, layer0=layer0).predict(x))


@pytest.mark.parametrize("threads", [2, 3])
def test_late_workers_change_nothing(threads):
    """With spin_ms=0 the workers sleep between calls and join each one late, or not at all:
    the rows they leave to the caller give the same bits."""
    model = random_model((7, 16, 3, 3, 2), seed=6)
    x = recentred(1, seed=3)
    expect = cc.Predictor(model, threads=1).predict(x)
    pred = cc.Predictor(model, threads=threads, spin_ms=0.0)
    for k in range(40):
        time.sleep(0.0005 * (k % 4))
        np.testing.assert_array_equal(pred.predict(x), expect)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), 1e6])
def test_spin_ms_is_checked(bad):
    with pytest.raises(ValueError, match="spin_ms"):
        cc.Predictor(random_model((3, 3, 3, 3, 3)), spin_ms=bad)


def test_concurrent_callers():
    model = random_model((7, 7, 3, 3, 3), seed=1)
    pred = cc.Predictor(model, threads=2)
    xs = [recentred(3, seed=s) for s in range(4)]
    expect = [pred.predict(x) for x in xs]
    errors = []

    def worker(i):
        for _ in range(5):
            if not np.array_equal(pred.predict(xs[i]), expect[i]):
                errors.append(i)

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_float64_model_and_plan_metadata():
    model = random_model((3, 3, 3, 3, 3), seed=2)
    model64 = random_model((3, 3, 3, 3, 3), seed=2, dtype=__import__("torch").float64)
    x = recentred(2)
    assert rel_err(cc.Predictor(model64).predict(x), torch_reference(model, x)) <= 1e-4
    plan = cc.compile(model)
    assert plan.nums_filters == (3, 3, 3, 3, 3)
    assert plan.macs_per_image() > 112 * 112 * 75 * 3
    assert model.num_parameters() == sum(p.numel() for p in model.parameters())


def test_dead_channels_are_dropped():
    import torch

    model = random_model((8, 6, 5, 4, 3), seed=4)
    with torch.no_grad():  # prune filter 2 of layer 0 and filter 1 of layer 3 the way pruning does
        model.layer0_conv.weight[2] = 0
        model.layer0_conv.bias[2] = 0
        model.layer0_bn.weight[2] = 0
        model.layer0_bn.bias[2] = 0
        model.layer3_conv_point.weight[1] = 0
        model.layer3_conv_point.bias[1] = 0
        model.layer3_bn.weight[1] = 0
        model.layer3_bn.bias[1] = 0
    plan = cc.compile(model)
    assert plan.nums_filters == (7, 6, 5, 3, 3)
    full = cc.compile(model, drop_dead_channels=False)
    assert full.nums_filters == (8, 6, 5, 4, 3)
    x = recentred(3)
    ref = torch_reference(model, x)
    assert rel_err(cc.Predictor(plan).predict(x), ref) <= 1e-4
    assert rel_err(cc.Predictor(full).predict(x), ref) <= 1e-4


def test_executed_macs_follow_the_kernels():
    plan = cc.compile(random_model((7, 16, 3, 3, 2)))
    # one float per vector, direct layer 0: nothing padded, the model's own count
    assert cc.Predictor(plan, threads=1, isa="reference", layer0="direct").executed_macs_per_image() == \
        plan.macs_per_image()
    # Winograd: 12 products + ~11 transform operations per layer-0 output instead of 75
    wino = cc.Predictor(plan, threads=1, isa="reference").executed_macs_per_image()
    assert plan.macs_per_image() - wino == 112 * 112 * 7 * (75 - 23)
    # wider vectors pad the channels: more work executed, never less
    assert cc.Predictor(plan, threads=1).executed_macs_per_image() >= wino
    pop = cc.PopulationPredictor([plan, plan], threads=1, isa="reference")
    assert pop.executed_macs_per_image() == 2 * wino


@pytest.mark.skipif("libasan" in os.environ.get("LD_PRELOAD", ""),
                    reason="under AddressSanitizer (its shadow memory needs more address space than ulimit -v allows)")
def test_thread_limits_are_clear_errors(tmp_path):
    plan = cc.compile(random_model((3, 3, 3, 3, 3)))
    with pytest.raises(ValueError, match="threads must be between 1 and 1024"):
        cc.Predictor(plan, threads=1025)
    # The OS refusing threads (here: too little address space for their stacks) is a RuntimeError,
    # not a hang (a condition variable destroyed under waiting workers did hang).
    path = tmp_path / "m.plan"
    plan.save(path)
    code = (f"import compactcortex as cc\ntry:\n    cc.Predictor({str(path)!r}, threads=1000)\n"
            "except RuntimeError as e:\n    print('refused:', e)\n")
    r = subprocess.run(["bash", "-c", f"ulimit -v 3000000; exec {sys.executable} -c \"$0\"", code],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert "refused: could not start 1000 threads" in r.stdout, (r.stdout, r.stderr[-2000:])


@pytest.mark.parametrize("value, capped", [("1", True), ("", False), ("0", False), ("two", False)])
def test_default_threads_follow_omp_num_threads(monkeypatch, value, capped):
    """OMP_NUM_THREADS (PyTorch's knob) caps the engine's default threads too; unset, empty or
    nonsense values leave the CPUs the process may run on."""
    from compactcortex.engine.inputs import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", value)
    assert default_threads() == (1 if capped else len(os.sched_getaffinity(0)))
