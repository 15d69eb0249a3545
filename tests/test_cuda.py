"""The CUDA engine (compactcortex._engine_cuda, csrc/cuda/).

Three groups of tests:

* without a GPU, everywhere: importing works, ``cuda_available()`` / ``cuda_status()`` say why
  not, the predictors on ``device="cuda"`` refuse clearly;
* the CUDA runner and kernels built as CPU emulation (csrc/cuda/emulate.cpp: every CUDA thread a
  fiber, see csrc/cuda/compat.cuh) against the CPU engine: checks the kernels' indexing,
  padding, tiling, barriers, chunking and NaN flags on machines without a GPU (needs a C++20
  compiler; skipped without one);
* on a GPU (skipped with the reason from ``cuda_status()`` elsewhere): ``Predictor`` and
  ``PopulationPredictor`` on ``device="cuda"`` against the
  CPU engine and a float64 PyTorch reference on the GPU, random and published models, odd batch
  sizes, all input dtypes and layouts, populations, streams, NaN handling.

Accuracy bar: max |error| <= 1e-4 of the output scale (max |reference|).
"""
from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import compactcortex as cc
from compactcortex.engine.cuda import CudaPredictor, cuda_available, cuda_status
from compactcortex.engine.plan import Plan

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / ".." / "shared" / "data" / "v4" / "compact_models" / "torch"
FILTER_CHOICES = (1, 3, 7, 48, 100)
RANDOM_FILTERS = [(1, 1, 1, 1, 1), (3, 7, 1, 100, 3), (48, 100, 7, 3, 1), (100, 48, 3, 7, 100),
                  (7, 3, 48, 1, 7), (48, 60, 3, 3, 3)]
TOL = 1e-4

gpu = pytest.mark.skipif(not cuda_available(), reason=f"CUDA engine unavailable: {cuda_status()}")


def lively_plan(filters, seed: int = 0) -> Plan:
    """A Plan with random weights scaled so that most ReLUs stay active on recentred pixels."""
    g = np.random.default_rng(seed)
    n = tuple(filters)

    def f(*shape, sd):
        return g.normal(0, sd, shape).astype(np.float32)

    return Plan(nums_filters=n, w0=f(n[0], 3, 5, 5, sd=1 / (np.sqrt(75) * 60)), b0=f(n[0], sd=0.5),
                dw=tuple(f(n[i], 5, 5, sd=0.2) for i in range(4)),
                pw=tuple(f(n[i + 1], n[i], sd=1 / np.sqrt(n[i])) for i in range(4)),
                pb=tuple(f(n[i + 1], sd=0.3) for i in range(4)),
                readout=f(28, 28, n[4], sd=1 / np.sqrt(784 * n[4])), readout_bias=0.1)


def images(n, seed=0, dtype=np.float32):
    """Recentred images (N, 112, 112, 3): smooth blobs plus noise, so outputs vary."""
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:112, 0:112] / 112.0
    x = g.normal(0, 30, (n, 112, 112, 3))
    for i in range(n):
        cy, cx, s = g.uniform(0.2, 0.8), g.uniform(0.2, 0.8), g.uniform(0.05, 0.3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
        x[i] += blob[..., None] * g.uniform(-120, 120, 3)
    return x.astype(dtype)


def raw_pixels(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 112, 112, 3), dtype=np.uint8)


def rel_err(a, ref) -> float:
    ref = np.asarray(ref, np.float64)
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


def published_plans(neurons):
    files = [PUBLISHED / f"compact_model_190923_neuron{k}.pt" for k in neurons]
    missing = [f for f in files if not f.is_file()]
    if missing:
        pytest.skip(f"published model {missing[0].name} not found under {PUBLISHED.resolve()}")
    return [cc.compile(cc.load_published(f)) for f in files]


# ------------------------------------------------------------------------------ no GPU needed


def test_import_works_regardless_of_cuda():
    code = ("import sys, compactcortex, compactcortex.engine.cuda as c; "
            "s = c.cuda_status(); assert isinstance(c.cuda_available(), bool); "
            "assert 'torch' not in sys.modules, 'importing must not import torch'; print(s)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_status_explains_itself():
    s = cuda_status()
    assert cuda_available() == s.startswith("available:")
    assert s.startswith(("available: ", "not built: no CUDA compiler at build time",
                         "not importable: ", "no CUDA device: ")), s
    assert len(s.split(":", 1)[1].strip()) > 5, s


def test_unavailable_without_gpu():
    if cuda_available():
        pytest.skip(f"a CUDA device is usable here ({cuda_status()})")
    plan = lively_plan((3, 3, 3, 3, 3))
    with pytest.warns(FutureWarning, match="CudaPredictor is deprecated.*Predictor"), \
            pytest.raises(RuntimeError, match="cannot run here"):
        CudaPredictor(plan)  # the deprecated alias of the front ends' CUDA backend
    # The front ends say why, with the status, instead of falling back to the CPU.
    for make in (lambda: cc.Predictor(plan, device="cuda"), lambda: cc.PopulationPredictor([plan], device="cuda:0")):
        with pytest.raises(RuntimeError, match=re.escape(cuda_status())):
            make()


def test_extension_reports_device_count_when_built():
    if importlib.util.find_spec("compactcortex._engine_cuda") is None:
        pytest.skip(cuda_status())
    from compactcortex import _engine_cuda

    count, err = _engine_cuda.device_count()
    assert isinstance(count, int) and isinstance(err, str)
    assert (count >= 0) == (err == "")
    assert _engine_cuda.runtime_version() >= 11000
    with pytest.raises(ValueError, match="at least one model"):
        _engine_cuda.Runner([], (0.0, 0.0, 0.0))


# ------------------------------------------------------------------------------ CPU emulation


class Emulated:
    """The CUDA runner built as CPU emulation, through ctypes (csrc/cuda/emulate.cpp)."""

    CODES = {np.dtype(np.float32): 0, np.dtype(np.float64): 1, np.dtype(np.uint8): 2}

    def __init__(self, lib_path: Path) -> None:
        lib = ctypes.CDLL(str(lib_path))
        lib.ccemu_create.restype = ctypes.c_void_p
        lib.ccemu_create.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]
        lib.ccemu_predict.restype = ctypes.c_longlong
        lib.ccemu_predict.argtypes = ([ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int] + [ctypes.c_longlong] * 5
                                      + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int])
        lib.ccemu_error.restype = ctypes.c_char_p
        lib.ccemu_destroy.argtypes = [ctypes.c_void_p]
        lib.ccemu_max_pairs.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def runner(self, plans, workspace_bytes=1 << 28):
        return _EmuRunner(self.lib, plans, workspace_bytes)


class _EmuRunner:
    def __init__(self, lib, plans, workspace_bytes):
        self.lib, self.m = lib, len(plans)
        n = np.array([p.nums_filters for p in plans], np.int32)
        keep = [n]
        ptrs = (ctypes.c_void_p * (15 * len(plans)))()
        sizes = np.zeros(15 * len(plans), np.int64)
        for i, p in enumerate(plans):
            for j, a in enumerate([p.w0, p.b0, *p.dw, *p.pw, *p.pb, p.readout]):
                a = np.ascontiguousarray(a, np.float32)
                keep.append(a)
                ptrs[i * 15 + j] = a.ctypes.data
                sizes[i * 15 + j] = a.size
        bias = np.array([p.readout_bias for p in plans], np.float32)
        mean = np.array(plans[0].mean, np.float32)
        self.h = lib.ccemu_create(len(plans), n.ctypes.data, ptrs, sizes.ctypes.data, bias.ctypes.data,
                                  mean.ctypes.data, workspace_bytes)
        assert self.h, lib.ccemu_error().decode()
        self.max_pairs = lib.ccemu_max_pairs(self.h)

    def __del__(self):
        if getattr(self, "h", None):
            self.lib.ccemu_destroy(self.h)

    def predict(self, x: np.ndarray, device: bool = True, check: bool = True):
        """(first bad image or -1, outputs (N, models)). device=True reads x in place, strided."""
        es = x.itemsize
        st = [s // es for s in x.strides]
        sn, sc, sy, sx = st if x.shape[1] == 3 else (st[0], st[3], st[1], st[2])
        out = np.full((x.shape[0], self.m), -12345.0, np.float32)
        rc = self.lib.ccemu_predict(self.h, x.ctypes.data, Emulated.CODES[x.dtype], x.shape[0], sn, sy, sx,
                                    sc, out.ctypes.data, int(device), int(check))
        assert rc != -2, self.lib.ccemu_error().decode()
        return rc, out


@pytest.fixture(scope="module")
def emu(tmp_path_factory) -> Emulated:
    if not sys.platform.startswith("linux"):
        pytest.skip("the CUDA emulation uses ucontext fibers (Linux only)")
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if not cxx:
        pytest.skip("no C++ compiler to build the CUDA emulation")
    out = tmp_path_factory.mktemp("cuda_emu") / "libccemu.so"
    cmd = [cxx, "-std=c++20", "-O1", "-fno-strict-aliasing", "-shared", "-fPIC", "-DCC_CUDA_EMULATE",
           str(REPO / "csrc" / "cuda" / "emulate.cpp"), "-o", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        if "c++20" in r.stderr or "unrecognized" in r.stderr:
            pytest.skip(f"{cxx} cannot build C++20: {r.stderr[-300:]}")
        pytest.fail(f"building the CUDA emulation failed:\n{' '.join(cmd)}\n{r.stderr[-3000:]}")
    return Emulated(out)


@pytest.mark.parametrize("filters", RANDOM_FILTERS)
def test_emulated_kernels_match_cpu_engine(emu, filters):
    plan = lively_plan(filters, seed=sum(filters))
    x = images(2, seed=1)
    rc, out = emu.runner([plan]).predict(x)
    assert rc == -1
    ref = cc.Predictor(plan).predict(x)
    assert rel_err(out[:, 0], ref) <= TOL


def test_emulated_dtypes_layouts_and_strides(emu):
    plan = lively_plan((7, 48, 3, 7, 3), seed=3)
    run = emu.runner([plan])
    u8 = raw_pixels(3, seed=2)
    ref = cc.Predictor(plan).predict(u8)
    recentred = u8.astype(np.float64) - np.array(plan.mean)
    cases = {
        "uint8 NHWC": u8,
        "uint8 NCHW": np.ascontiguousarray(u8.transpose(0, 3, 1, 2)),
        "float64 NCHW": np.ascontiguousarray(recentred.transpose(0, 3, 1, 2)),
        "float32 NCHW view of NHWC": recentred.astype(np.float32).transpose(0, 3, 1, 2),
        "float32 every other image": np.repeat(recentred.astype(np.float32), 2, axis=0)[::2],
    }
    for name, x in cases.items():
        rc, out = run.predict(x)
        assert rc == -1, name
        assert rel_err(out[:, 0], ref) <= TOL, name
    for name in ("uint8 NHWC", "uint8 NCHW", "float64 NCHW"):  # host path: contiguous only
        rc, out = run.predict(cases[name], device=False)
        assert rc == -1 and rel_err(out[:, 0], ref) <= TOL, name


@pytest.mark.parametrize("batch", [1, 3])
def test_emulated_population_and_chunking(emu, batch):
    plans = [lively_plan(f, seed=i) for i, f in enumerate([(3, 7, 1, 3, 3), (48, 3, 7, 1, 3), (1, 3, 3, 7, 1)])]
    x = images(batch, seed=5)
    ref = np.stack([cc.Predictor(p).predict(x) for p in plans], axis=1)
    results = []
    for ws in (1 << 30, 1, 12 << 20):  # everything in one chunk; one pair per chunk; a few pairs
        run = emu.runner(plans, ws)
        rc, out = run.predict(x)
        assert rc == -1
        assert rel_err(out, ref) <= TOL, f"workspace {ws} ({run.max_pairs} pairs per chunk)"
        results.append(out)
    # Each output's sum runs in a fixed order whatever the chunking: identical bits.
    assert all(np.array_equal(results[0], r) for r in results[1:])


def test_emulated_nan_flag(emu):
    plans = [lively_plan((3, 3, 3, 3, 3), seed=1), lively_plan((7, 1, 3, 3, 1), seed=2)]
    run = emu.runner(plans, 1)  # one pair per chunk: the flag must survive chunks
    x = images(4, seed=3)
    x[3, 0, 0, 0] = np.inf
    x[2, 100, 7, 1] = np.nan
    rc, out = run.predict(x)
    assert rc == 2
    rc, out = run.predict(x, check=False)
    assert rc == -1
    assert np.isnan(out[2:]).all() and np.isfinite(out[:2]).all()
    rc, _ = run.predict(x.astype(np.float64), device=False)
    assert rc == 2
    big = np.where(np.isfinite(x), x.astype(np.float64), 1e39)  # 1e39 overflows float32
    big[2] = x[1]
    rc, _ = run.predict(big)
    assert rc == 3
    finite = x[:2].copy()
    finite[1, 5, 5, 2] = -2e6  # finite in float32, but beyond the accepted +-1e6 (kMaxInput)
    rc, _ = run.predict(finite)
    assert rc == 1


def test_emulated_checks_model_arrays(emu):
    """The C API converts models with the bindings' checks (csrc/common/model_weights.hpp)."""
    good = lively_plan((3, 3, 3, 3, 3), seed=1)
    fields = ("nums_filters", "w0", "b0", "dw", "pw", "pb", "readout", "readout_bias", "mean")
    bad = SimpleNamespace(**{f: getattr(good, f) for f in fields})
    bad.pw = (*good.pw[:2], good.pw[2][:2], good.pw[3])
    with pytest.raises(AssertionError, match="model 1: pw3: expected 9 values, got 6"):
        emu.runner([good, bad])


def test_emulated_published_model(emu):
    plan = published_plans([0])[0]
    u8 = raw_pixels(2, seed=7)
    rc, out = emu.runner([plan]).predict(u8)
    assert rc == -1
    assert rel_err(out[:, 0], cc.Predictor(plan).predict(u8)) <= TOL


# ------------------------------------------------------------------------------ on a GPU


def torch_reference(plans, x_nhwc_recentred, device="cuda"):
    """float64 PyTorch forward pass of Plans (independent of both engines), (N, models)."""
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(np.asarray(x_nhwc_recentred, np.float64), device=device).permute(0, 3, 1, 2)
    outs = []
    with torch.no_grad():
        for p in plans:
            t = lambda a: torch.as_tensor(np.asarray(a), device=device, dtype=torch.float64)  # noqa: E731
            h = F.relu(F.conv2d(x, t(p.w0), t(p.b0), padding=2))
            for i in range(4):
                h = F.pad(h, (1, 2, 1, 2) if i < 2 else (2, 2, 2, 2))
                h = F.conv2d(h, t(p.dw[i])[:, None], stride=2 if i < 2 else 1, groups=h.shape[1])
                h = F.relu(F.conv2d(h, t(p.pw[i])[:, :, None, None], t(p.pb[i])))
            outs.append(h.permute(0, 2, 3, 1).flatten(1) @ t(p.readout).flatten() + p.readout_bias)
    return torch.stack(outs, 1).cpu().numpy()


def _cuda(x):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x)).cuda()


@gpu
@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("filters", RANDOM_FILTERS)
def test_gpu_matches_cpu_engine_and_torch(filters, batch):
    plan = lively_plan(filters, seed=sum(filters) + batch)
    x = images(batch, seed=batch)
    pred = cc.Predictor(plan, device="cuda")
    y = pred.predict(_cuda(x)).cpu().numpy()
    assert y.shape == (batch,) and y.dtype == np.float32
    assert rel_err(y, cc.Predictor(plan).predict(x)) <= TOL
    assert rel_err(y, torch_reference([plan], x)[:, 0]) <= TOL
    y_np = pred.predict(x)
    assert isinstance(y_np, np.ndarray) and np.array_equal(y_np, y)


@gpu
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_gpu_published_models(batch):
    plans = published_plans([0, 1, 5, 17])
    u8 = raw_pixels(batch, seed=11)
    x = (u8.astype(np.float32) - np.array(plans[0].mean, np.float32))
    for p in plans:
        y = cc.Predictor(p, device="cuda").predict(_cuda(u8)).cpu().numpy()
        assert rel_err(y, cc.Predictor(p).predict(u8)) <= TOL
        assert rel_err(y, torch_reference([p], x)[:, 0]) <= TOL
    pop = cc.PopulationPredictor(plans, device="cuda").predict(_cuda(u8)).cpu().numpy()
    assert pop.shape == (batch, len(plans))
    assert rel_err(pop, torch_reference(plans, x)) <= TOL


@gpu
def test_gpu_dtypes_layouts_strides():
    import torch

    plan = lively_plan((48, 60, 3, 3, 3), seed=2)
    pred = cc.Predictor(plan, device="cuda")
    u8 = raw_pixels(7, seed=3)
    ref = cc.Predictor(plan).predict(u8)
    t8 = _cuda(u8)
    rec = t8.double() - torch.tensor(plan.mean, device="cuda", dtype=torch.float64)
    cases = {
        "uint8 NHWC": t8,
        "uint8 NCHW": t8.permute(0, 3, 1, 2).contiguous(),
        "uint8 NCHW view": t8.permute(0, 3, 1, 2),
        "float64 NHWC": rec,
        "float32 NCHW": rec.float().permute(0, 3, 1, 2).contiguous(),
        "float32 every other image": rec.float().repeat_interleave(2, 0)[::2],
        "float32 requiring grad": rec.float().requires_grad_(True),
    }
    for name, x in cases.items():
        y = pred.predict(x)
        assert y.is_cuda and y.dtype == torch.float32 and tuple(y.shape) == (7,), name
        assert rel_err(y.cpu().numpy(), ref) <= TOL, name
    assert rel_err(pred.predict(u8.transpose(0, 3, 1, 2)), ref) <= TOL  # numpy, non-contiguous
    assert rel_err(pred.predict(torch.from_numpy(u8)), ref) <= TOL      # torch CPU -> numpy


@gpu
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_gpu_population_matches_single_models(batch):
    rng = np.random.default_rng(batch)
    plans = [lively_plan(tuple(int(v) for v in rng.choice(FILTER_CHOICES, 5)), seed=i) for i in range(9)]
    x = images(batch, seed=4)
    ref = np.stack([cc.Predictor(p).predict(x) for p in plans], axis=1)
    big = cc.PopulationPredictor(plans, device="cuda").predict(_cuda(x)).cpu().numpy()
    small = cc.PopulationPredictor(plans, device="cuda", workspace_mb=8)  # a few pairs per chunk
    assert small._backend.max_pairs < len(plans) * batch or batch == 1
    y = small.predict(x)
    assert y.shape == (batch, len(plans))
    assert rel_err(big, ref) <= TOL and rel_err(y, ref) <= TOL
    assert np.array_equal(big, y)  # fixed summation order: chunking changes no bit


@gpu
def test_gpu_streams_and_out():
    import torch

    plan = lively_plan((7, 48, 3, 7, 3), seed=5)
    pred = cc.Predictor(plan, device="cuda")
    x = _cuda(images(64, seed=6))
    ref = pred.predict(x).cpu().numpy()
    s = torch.cuda.Stream()
    out = torch.empty(64, device="cuda")
    with torch.cuda.stream(s):
        x2 = x * 1.0  # made on s: the engine must read it on s
        r = pred.predict(x2, out=out, check_finite=False)
    assert r is out
    s.synchronize()
    assert np.array_equal(out.cpu().numpy(), ref)
    for _ in range(3):  # repeated calls: deterministic
        assert np.array_equal(pred.predict(x).cpu().numpy(), ref)
    with pytest.raises(ValueError, match="out must be"):
        pred.predict(x, out=torch.empty(63, device="cuda"))


@gpu
def test_gpu_nan_handling():
    plan = lively_plan((3, 7, 3, 3, 3), seed=6)
    pred = cc.PopulationPredictor([plan, plan], device="cuda")
    x = images(7, seed=8)
    x[5, 3, 4, 2] = np.nan
    with pytest.raises(ValueError, match="image 5 contains NaN"):
        pred.predict(_cuda(x))
    with pytest.raises(ValueError, match="image 5 contains NaN"):
        pred.predict(x)
    y = pred.predict(_cuda(x), check_finite=False).cpu().numpy()
    assert np.isnan(y[5]).all() and np.isfinite(np.delete(y, 5, axis=0)).all()


@gpu
def test_gpu_input_validation():
    import torch

    pred = cc.Predictor(lively_plan((3, 3, 3, 3, 3)), device="cuda")
    with pytest.raises(ValueError, match="expected shape"):
        pred.predict(torch.zeros(2, 112, 112, 4, device="cuda"))
    with pytest.raises(ValueError, match="empty batch"):
        pred.predict(torch.zeros(0, 112, 112, 3, device="cuda"))
    with pytest.raises(TypeError, match="dtype"):
        pred.predict(torch.zeros(2, 112, 112, 3, device="cuda", dtype=torch.float16))
    with pytest.raises(TypeError, match="dtype"):
        pred.predict(np.zeros((2, 112, 112, 3), np.int32))
    with pytest.raises(TypeError):
        pred.predict([[0.0]])
    if torch.cuda.device_count() > 1:
        with pytest.raises(ValueError, match="predictor on cuda:0"):
            pred.predict(torch.zeros(1, 112, 112, 3, device="cuda:1"))


def test_device_argument_without_a_gpu():
    """device="cuda" says clearly why it cannot run where CUDA is unusable; bad names are refused."""
    from helpers import random_model

    model = random_model((2, 2, 2, 2, 2))
    with pytest.raises(ValueError, match="device must be"):
        cc.Predictor(model, device="gpu")
    if not cc.cuda_available():
        with pytest.raises(RuntimeError, match="CUDA engine cannot run here"):
            cc.Predictor(model, device="cuda")
        with pytest.raises(RuntimeError, match="CUDA engine cannot run here"):
            cc.PopulationPredictor([model], device="cuda:0")


@pytest.mark.parametrize("option, name", [({"threads": 2}, "threads"), ({"isa": "avx2"}, "isa"),
                                          ({"spin_ms": 5.0}, "spin_ms"), ({"layer0": "winograd"}, "layer0='winograd'")])
def test_cpu_only_options_are_refused_on_cuda_not_ignored(option, name):
    """Checked before CUDA's availability, so this runs on any machine."""
    from helpers import random_model

    plan = cc.compile(random_model((3, 2, 2, 2, 2)))
    for cls in (cc.Predictor, lambda p, **k: cc.PopulationPredictor([p, p], **k)):
        with pytest.raises(ValueError, match=f"device 'cuda': {re.escape(name)} apply to the CPU engine only"):
            cls(plan, device="cuda", **option)
    assert cc.Predictor(plan, threads=1, **{k: v for k, v in option.items() if k != "threads"}).threads == 1


def test_cuda_only_options_are_refused_on_the_cpu_not_ignored():
    from helpers import random_model

    plan = cc.compile(random_model((3, 2, 2, 2, 2)))
    with pytest.raises(ValueError, match="device 'cpu': workspace_mb apply to the CUDA engine only"):
        cc.Predictor(plan, workspace_mb=64)
    pop = cc.PopulationPredictor([plan, plan], threads=1)
    x = images(2, seed=1)
    with pytest.raises(ValueError, match="check_finite apply to the CUDA engine only .the CPU engine checks"):
        pop.predict(x, check_finite=False)
    assert np.array_equal(pop(x, check_finite=True), pop.predict(x))
