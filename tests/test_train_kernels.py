"""The C++ training kernels (csrc/train) against PyTorch autograd in float64 and the scalar reference."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from compactcortex import _engine
from compactcortex.compress.surgery import remove_filters
from compactcortex.models.compact import CompactModel
from compactcortex.models.engine_backend import PARAM_NAMES

from helpers import random_model

ISAS = [i for i in _engine.available_isas() if i != "reference"]


def images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 60, (n, 3, 112, 112)).astype(np.float32))


def masks_for(filters, seed):
    """Random masks keeping at least one filter of each layer."""
    rng = np.random.default_rng(seed)
    out = []
    for n in filters:
        m = rng.random(n) < 0.6
        m[rng.integers(n)] = True
        out.append(m)
    return out


def grads_of(model: CompactModel, x: torch.Tensor, gout: torch.Tensor, backend: str, dtype) -> tuple:
    """(output, {name: grad}, input grad, state_dict after) of sum(gout * model(x))."""
    m = copy.deepcopy(model).to(dtype)
    m.backend = backend
    xin = x.to(dtype).requires_grad_(True)
    y = m(xin)
    (y * gout.to(dtype)).sum().backward()
    return (y.detach().double(), {k: p.grad.double() for k, p in m.named_parameters()}, xin.grad.double(),
            {k: v.double() for k, v in m.state_dict().items()})


CASES = [  # filters, batch, training, masked
    ((1, 2, 3, 7, 16), 7, True, False),
    ((100, 48, 16, 7, 3), 1, True, False),
    ((16, 16, 16, 16, 16), 32, False, False),
    ((3, 100, 1, 2, 48), 7, True, True),
    ((7, 16, 3, 1, 100), 1, False, True),
    ((48, 7, 100, 16, 2), 7, False, False),
]


@pytest.mark.parametrize("filters,batch,training,masked", CASES)
def test_gradients_match_float64_autograd(filters, batch, training, masked):
    model = random_model(filters, seed=sum(filters) + batch)
    if masked:
        for layer, m in enumerate(masks_for(filters, batch)):
            model.set_filter_mask(layer, m)
    model.train(training)
    x, gout = images(batch, seed=batch), torch.from_numpy(np.random.default_rng(1).normal(size=batch))
    y_ref, g_ref, dx_ref, state_ref = grads_of(model, x, gout, "torch", torch.float64)
    y, g, dx, state = grads_of(model, x, gout, "engine", torch.float32)

    assert torch.abs(y - y_ref).max() <= 1e-4 * torch.abs(y_ref).max()
    assert torch.abs(dx - dx_ref).max() <= 1e-4 * torch.abs(dx_ref).max()
    for name in PARAM_NAMES:
        ref, got = g_ref[name], g[name]
        if training and name.endswith(("conv.bias", "conv_point.bias")):
            # A bias before a training-mode batchnorm has zero gradient: exactly zero here, rounding
            # noise in float64.
            weight = g_ref[name.replace("bias", "weight")]
            assert torch.all(got == 0) and torch.abs(ref).max() <= 1e-9 * max(float(torch.abs(weight).max()), 1e-30)
            continue
        scale = float(torch.abs(ref).max())
        assert float(torch.abs(got - ref).max()) <= 1e-4 * scale + 1e-30, name
    for key, ref in state_ref.items():  # running statistics follow PyTorch's momentum rule
        if "running" in key and not masked:
            assert torch.allclose(state[key], ref, rtol=1e-4, atol=1e-5), key
        if "num_batches" in key:
            assert int(state[key]) == int(ref)


def test_masked_filters_get_exactly_zero_gradient_and_match_the_smaller_model():
    filters = (7, 6, 5, 4, 3)
    model = random_model(filters, seed=3).train()
    masks = masks_for(filters, 4)
    for layer, m in enumerate(masks):
        model.set_filter_mask(layer, m)
    model.backend = "engine"
    x = images(5, seed=2)
    small = copy.deepcopy(model)
    for layer in range(5):
        small = remove_filters(small, layer, np.flatnonzero(masks[layer]))
    assert small.nums_filters == tuple(int(m.sum()) for m in masks)
    y = model(x)
    y.sum().backward()
    torch.testing.assert_close(y.detach(), small(x).detach(), rtol=1e-4, atol=1e-4 * float(y.detach().abs().max()))
    own = {0: "layer0_conv", **{i: f"layer{i}_conv_point" for i in range(1, 5)}}
    for layer, m in enumerate(masks):
        off = torch.from_numpy(~m)
        for name in (own[layer] + ".weight", own[layer] + ".bias", f"layer{layer}_bn.weight", f"layer{layer}_bn.bias"):
            assert torch.all(model.get_parameter(name).grad[off] == 0), name
        if layer < 4:
            assert torch.all(model.get_parameter(f"layer{layer + 1}_conv_depth.weight").grad[off] == 0)
            assert torch.all(model.get_parameter(f"layer{layer + 1}_conv_point.weight").grad[:, off] == 0)
        else:
            assert torch.all(model.readout.weight.grad.view(28, 28, -1)[..., off] == 0)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("filters,batch", [((1, 3, 100, 3, 1), 1), ((100, 1, 3, 100, 3), 7), ((3, 3, 3, 3, 3), 2)])
def test_vector_kernels_match_the_scalar_reference(isa, filters, batch):
    model = random_model(filters, seed=batch).train()
    x = images(batch, seed=7).contiguous()
    params = [p.detach().contiguous() for p in (dict(model.named_parameters())[n] for n in PARAM_NAMES)]
    bns = [model.layer0_bn] + [getattr(model, f"layer{i}_bn") for i in range(1, 5)]
    active = [np.arange(n, dtype=np.int32) for n in filters]
    results = []
    for which in (isa, "reference"):
        running = [t.clone() for bn in bns for t in (bn.running_mean, bn.running_var)]
        trainer = _engine.Trainer(list(filters), 2, which)
        assert trainer.isa == which
        out = torch.empty(batch)
        tape = trainer.forward(x, params, running, active, [bn.eps for bn in bns], 0.1, True, out)
        grads = [torch.empty_like(p) for p in params]
        dx = torch.empty_like(x)
        tape.backward(torch.linspace(-1, 1, batch), grads, dx, list(filters))
        results.append([out, dx, *grads, *running])
    for got, ref in zip(*results):
        assert float(torch.abs(got - ref).max()) <= 1e-4 * float(torch.abs(ref).max()) + 1e-30


@pytest.mark.parametrize("isa", ISAS + ["reference"])
@pytest.mark.parametrize("M,Nv,K,transposed", [(1, 1, 1, False), (7, 3, 75, False), (75, 7, 112, True),
                                               (13, 2, 3, True), (100, 5, 100, False)])
def test_gemm_kernel_on_odd_sizes(isa, M, Nv, K, transposed):
    width = _engine.vector_width(isa) if isa != "reference" else 1
    N = Nv * width
    rng = np.random.default_rng(M + K)
    lda = K + 3 if not transposed else M + 5
    X = rng.normal(size=(M * lda + K * lda)).astype(np.float32)
    Y = rng.normal(size=(K, N + width)).astype(np.float32)
    C = rng.normal(size=(M, N)).astype(np.float32)
    si, st = (lda, 1) if not transposed else (1, lda)
    A = np.array([[X[i * si + t * st] for t in range(K)] for i in range(M)], np.float64)
    expect = C + A @ Y[:, :N]
    out = C.copy()
    _engine._testing.train_kernel_gemm(isa, M, N, K, X, si, st, Y.ravel(), N + width, out.ravel(), N, True)
    np.testing.assert_allclose(out, expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max())


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("s,Win,pad,has", [(2, 112, 1, (True,) * 5), (1, 28, 2, (False, True, True, True, True)),
                                          (2, 57, 1, (True, True, True, False, False)), (1, 5, 2, (True,) * 5)])
def test_depthwise_kernels_match_the_reference(isa, s, Win, pad, has):
    C = 3 * _engine.vector_width(isa)
    Wout = Win // s
    rng = np.random.default_rng(Win)
    rows, w = rng.normal(size=5 * Win * C).astype(np.float32), rng.normal(size=25 * C).astype(np.float32)
    g = rng.normal(size=Wout * C).astype(np.float32)
    outs = []
    for which in (isa, "reference"):
        out = np.zeros(Wout * C, np.float32)
        _engine._testing.train_kernel_dw_row(which, rows, list(has), Win, pad, s, Wout, w, C, out)
        drows, dw = np.ones_like(rows), np.ones(25 * C, np.float32)
        _engine._testing.train_kernel_dw_row_backward(which, rows, drows, list(has), Win, pad, s, Wout, w, g, C, dw)
        outs.append((out, drows, dw))
    for got, ref in zip(*outs):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_loss_curves_of_both_backends_agree():
    """200 Adam steps from one seed: the first 20 agree to 1e-3, the rest stay within seed-to-seed noise."""
    from compactcortex.fit.distill import _param_groups

    def target(x):  # a smooth, position-specific response with a real spread over noise images
        return x[:, 0, 40:72, 40:72].mean((1, 2)) - 0.5 * x[:, 2, 10:50, 60:100].mean((1, 2))

    with torch.no_grad():
        probe = target(images(16, seed=999))
    mean, sd = float(probe.mean()), float(probe.std())

    def run(backend, seed):  # distillation as fine_tune does it: readout at the mean, scaled rates
        torch.manual_seed(seed)
        model = CompactModel((6, 6, 6, 6, 6), backend=backend).train()
        with torch.no_grad():
            model.readout.weight.zero_()
            model.readout.bias.fill_(mean)
        opt = torch.optim.Adam(_param_groups(model, 1e-3, None))
        losses = []
        for step in range(200):
            x = images(8, seed=1000 + step)
            with torch.no_grad():
                y = target(x)
            loss = torch.mean(((model(x) - y) / sd) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return np.array(losses)

    torch_0, engine_0, torch_1 = run("torch", 0), run("engine", 0), run("torch", 1)
    np.testing.assert_allclose(engine_0[:20], torch_0[:20], rtol=1e-3)
    late = slice(150, 200)
    noise = abs(torch_1[late].mean() - torch_0[late].mean()) + 2 * torch_0[late].std() / np.sqrt(50)
    assert abs(engine_0[late].mean() - torch_0[late].mean()) <= noise


def test_state_dicts_move_between_backends():
    model = CompactModel((4, 3, 2, 3, 2), backend="engine").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(3):
        loss = (model(images(4, seed=step)) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    other = CompactModel((4, 3, 2, 3, 2))
    other.load_state_dict(model.state_dict())
    model.eval(), other.eval()
    x = images(3, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(model(x), other(x), rtol=1e-4, atol=1e-4)


def test_engine_backend_falls_back_to_torch_for_float64():
    model = random_model((3, 3, 3, 3, 3), seed=1).double()
    model.backend = "engine"
    x = images(2).double()
    with torch.no_grad():
        y = model(x)
        model.backend = "torch"
        assert torch.equal(y, model(x))


def test_bad_masks_and_calls_raise_clear_errors():
    model = CompactModel((3, 3, 3, 3, 3), backend="engine")
    with pytest.raises(ValueError, match="masks every filter"):
        model.set_filter_mask(2, [0, 0, 0])
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        model.set_filter_mask(1, [1, 0])
    with pytest.raises(ValueError, match="0/1"):
        model.set_filter_mask(1, [1, 2, 0])
    with pytest.raises(ValueError, match="backend"):
        model.backend = "tpu"
    trainer = _engine.Trainer([3, 3, 3, 3, 3], 1)
    params = [p.detach() for p in (dict(model.named_parameters())[n] for n in PARAM_NAMES)]
    running = [torch.zeros(3), torch.ones(3)] * 5
    active = [np.arange(3, dtype=np.int32)] * 5
    with pytest.raises(ValueError, match=r"params\[0\]"):
        trainer.forward(images(1), [params[1]] + params[1:], running, active, [1e-3] * 5, 0.1, True, torch.empty(1))
    with pytest.raises(ValueError, match="indices must increase"):
        trainer.forward(images(1), params, running, [np.array([2, 1], np.int32)] + active[1:], [1e-3] * 5, 0.1,
                        True, torch.empty(1))
    tape = trainer.forward(images(1), params, running, active, [1e-3] * 5, 0.1, True, torch.empty(1))
    grads = [torch.empty_like(p) for p in params]
    tape.backward(torch.ones(1), grads, None, [3] * 5)
    with pytest.raises(ValueError, match="already"):
        tape.backward(torch.ones(1), grads, None, [3] * 5)


def population_model(filters, outputs, seed):
    """A random model with ``outputs`` readout rows (the trunk of random_model)."""
    base = random_model(filters, seed=seed)
    model = CompactModel(filters, bn_eps=base.bn_eps, outputs=outputs)
    state = base.state_dict()
    g = torch.Generator().manual_seed(seed)
    state["readout.weight"] = torch.randn(outputs, base.readout.in_features, generator=g) * 0.05
    state["readout.bias"] = torch.randn(outputs, generator=g)
    model.load_state_dict(state)
    return model


@pytest.mark.parametrize("filters,outputs,batch,masked", [((3, 5, 4, 3, 6), 3, 7, False),
                                                          ((1, 3, 2, 1, 100), 33, 2, True),
                                                          ((16, 7, 3, 5, 1), 100, 64, False)])
def test_population_readout_matches_float64_autograd(filters, outputs, batch, masked):
    model = population_model(filters, outputs, seed=outputs).train()
    if masked:
        for layer, m in enumerate(masks_for(filters, outputs)):
            model.set_filter_mask(layer, m)
    x = images(batch, seed=3)
    gout = torch.from_numpy(np.random.default_rng(2).normal(size=(batch, outputs)))
    y_ref, g_ref, dx_ref, _ = grads_of(model, x, gout, "torch", torch.float64)
    y, g, dx, _ = grads_of(model, x, gout, "engine", torch.float32)
    assert y.shape == (batch, outputs)
    assert torch.abs(y - y_ref).max() <= 1e-4 * torch.abs(y_ref).max()
    assert torch.abs(dx - dx_ref).max() <= 1e-4 * torch.abs(dx_ref).max()
    for name in PARAM_NAMES:
        if name.endswith(("conv.bias", "conv_point.bias")):
            continue  # zero before a training-mode batchnorm; checked in the single-output test
        scale = float(torch.abs(g_ref[name]).max())
        assert float(torch.abs(g[name] - g_ref[name]).max()) <= 1e-4 * scale + 1e-30, name


def test_single_output_is_one_column_of_the_population_model():
    model = population_model((4, 5, 3, 2, 6), 7, seed=1).eval()
    model.set_filter_mask(3, [1, 0])
    x = images(3, seed=4)
    with torch.no_grad():
        full = model(x)
        for k in (0, 6):
            one = model.single_output(k)
            assert one.num_outputs == 1 and one.filter_masks()[3].tolist() == [True, False]
            torch.testing.assert_close(one(x), full[:, k], rtol=1e-5, atol=1e-5 * float(full.abs().max()))
    with pytest.raises(ValueError, match="out of range"):
        model.single_output(7)


def test_population_model_saves_loads_and_refuses_to_compile(tmp_path):
    from compactcortex.engine.compile import compile

    model = population_model((3, 3, 3, 3, 3), 4, seed=2)
    model.save(tmp_path / "pop.safetensors")
    back = CompactModel.load(tmp_path / "pop.safetensors")
    assert back.num_outputs == 4
    torch.testing.assert_close(back.readout.weight, model.readout.weight)
    with pytest.raises(ValueError, match="single_output"):
        compile(model)
    with pytest.raises(ValueError, match="outputs must be >= 1"):
        CompactModel((3,) * 5, outputs=0)
    with pytest.raises(ValueError, match="outputs must be >= 1"):
        _engine.Trainer([3] * 5, 1, outputs=0)
    trainer = _engine.Trainer([3] * 5, 1, outputs=4)
    params = [p.detach() for p in (dict(model.named_parameters())[n] for n in PARAM_NAMES)]
    running = [torch.zeros(3), torch.ones(3)] * 5
    active = [np.arange(3, dtype=np.int32)] * 5
    with pytest.raises(ValueError, match=r"out: expected .* shape \(2, 4\)"):
        trainer.forward(images(2), params, running, active, [1e-3] * 5, 0.1, True, torch.empty(2))


def test_phase_profile_accounts_for_the_passes():
    """Every phase of a profiled step takes time, the phases fit inside the step's wall time,
    and nothing is counted outside the ``with`` block."""
    import time

    from compactcortex.models.engine_backend import phase_profile

    model = CompactModel((4, 3, 3, 3, 2), backend="engine").train()
    x = images(3, seed=5)

    def step():
        model.zero_grad()
        (model(x) ** 2).sum().backward()

    with pytest.raises(ValueError, match="run a training step"):
        with phase_profile(model):
            pass
    step()
    t0 = time.perf_counter()
    with phase_profile(model) as phases:
        step()
        step()
    elapsed = time.perf_counter() - t0
    names = ["prepare", *(f"forward layer{l}" for l in range(5)), "forward readout", "backward readout",
             *(f"backward layer{l}" for l in range(4, -1, -1)), "finish"]
    assert list(phases) == names
    assert all(phases[n] > 0 for n in names) and sum(phases.values()) <= elapsed
    step()  # outside the block: not counted
    with phase_profile(model) as again:
        pass
    assert sum(again.values()) == 0
