"""Inference speed of the compactcortex engine against peers, on one compact CNN model.

What it measures, in one process:

* competitors: our C++ engine (``Predictor.predict(x, out=out)``; ``engine`` with its default
  Winograd layer 0, ``engine_direct`` with the direct convolution), PyTorch eager
  (``torch.inference_mode``), ``torch.compile`` (default mode), ONNX Runtime (CPU, graph
  optimisation ALL) and OpenVINO (CPU, float32 precision hint; plus OpenVINO with its default
  precision, which may run bf16 on CPUs that have it);
* for every setting (threads x batch size): each competitor is built with that thread count,
  checked against a float64 PyTorch reference on a fixed random batch (max |output - reference|
  divided by max |reference|), warmed up, then timed in R interleaved rounds: each round times
  every competitor once, in an order shuffled with a seeded RNG, after a 10 ms idle pause. A
  sample is the mean time of as many consecutive calls (1 to 10) as last about 20 ms, so batch-1
  samples are not timer noise. A ``torch.mm`` of two 1024x1024 float32 matrices is timed in the
  same rounds and gives the CPU's matrix-multiply rate (GFLOP/s) for that thread count;
* reported per competitor: median milliseconds per image, images per second, the engine ratio
  ``engine images/s / competitor images/s`` from the medians of the same setting (> 1: the
  engine is faster), the fraction of the matmul rate reached
  (``2 * MACs/image * images/s / matmul FLOP/s``) and the max relative error.

The machine is noisy: compare only numbers from one run (ratios are what carries over). Nothing
here asserts on timings.

Run it from the repository root::

    python benchmarks/bench_inference.py            # full grid, a few minutes
    python benchmarks/bench_inference.py --quick    # smoke test, under a minute

Results go to ``benchmarks/results/bench_inference_<UTC timestamp>.json`` and
``benchmarks/results/bench_inference_latest.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import logging
import math
import os
import platform
import random
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

import compactcortex as cc

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / ".." / "shared/data/v4/compact_models/torch/compact_model_190923_neuron0.pt"
RESULTS_DIR = REPO / "benchmarks" / "results"
FALLBACK_FILTERS = (48, 60, 3, 3, 3)
IMAGE = 112
PIXEL_STD = 60.0  # spread of the random recentred pixels
MATMUL_N = 1024
# Idle gap before each timed sample, so that threads of the previous competitor that spin-wait
# after their call (OpenMP, ONNX Runtime) do not eat into the next competitor's time.
PAUSE_S = 0.01
WARMUP_MIN_CALLS = 2
WARMUP_MIN_S = 0.2
# A timed sample is the mean of enough consecutive calls to last about SAMPLE_S (at most
# MAX_CALLS calls), so that fast calls (batch 1) are not dominated by timer noise.
SAMPLE_S = 0.02
MAX_CALLS = 10
MIN_ROUNDS = 3  # with --seconds, and with --quick
QUICK_BATCHES = [1, 8]

COMPETITORS = ("engine", "engine_direct", "torch_eager", "torch_compile", "onnxruntime", "openvino_f32", "openvino_default")


@dataclass
class Batch:
    """One fixed random batch in every layout the competitors take, and its float64 reference."""

    nhwc: np.ndarray  # (N, 112, 112, 3) float32, for the engine
    nchw: np.ndarray  # (N, 3, 112, 112) float32 contiguous, for ONNX Runtime and OpenVINO
    nchw_torch: torch.Tensor  # shares memory with ``nchw``
    reference: np.ndarray  # (N,) float64 outputs of the float64 model


@dataclass
class Bench:
    """What every competitor is built from."""

    model: torch.nn.Module  # float32, eval mode
    plan: cc.Plan
    onnx_path: Path | None
    onnx_error: str | None


@dataclass
class Runner:
    """A competitor bound to one batch and thread count: ``call()`` runs it once on that batch."""

    call: Callable[[], Any]
    output: Callable[[], np.ndarray]  # the outputs (N,) of the last call
    info: dict[str, Any] = field(default_factory=dict)
    calls: int = 1  # calls per timed sample, set from the warm-up


# --- model and inputs -------------------------------------------------------------------------


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The published model at ``path``, or a random model with the same filters if it is absent."""
    if path.is_file():
        model = cc.load_published(path, dtype=torch.float32)
        return model, {"path": str(path.resolve()), "source": "published", "filters": list(model.nums_filters)}
    model = random_model(FALLBACK_FILTERS)
    note = f"{path} not found: using a random CompactModel{FALLBACK_FILTERS} with random batchnorm statistics"
    return model, {"path": None, "source": "random", "filters": list(FALLBACK_FILTERS), "note": note}


def random_model(filters: tuple[int, ...], seed: int = 0) -> torch.nn.Module:
    """A random CompactModel with random, non-degenerate batchnorm statistics.

    The statistics are those of random images (so activations neither vanish nor explode), then
    scaled by random factors; the batchnorm scales and shifts are random too.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = cc.CompactModel(filters)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.momentum = None  # cumulative average: the statistics of the calibration batch
    with torch.no_grad():
        model.train()(torch.randn(8, 3, IMAGE, IMAGE, generator=gen) * PIXEL_STD)
        for norm in norms:
            c = norm.num_features
            norm.running_var.mul_(torch.rand(c, generator=gen) * 1.5 + 0.5)
            norm.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            norm.bias.copy_(torch.randn(c, generator=gen) * 0.2)
    return model.eval()


def make_batch(model: torch.nn.Module, n: int, seed: int) -> Batch:
    """Random recentred images (normal, std 60) from ``seed`` and the float64 model's outputs."""
    rng = np.random.default_rng(seed)
    nhwc = rng.normal(0.0, PIXEL_STD, (n, IMAGE, IMAGE, 3)).astype(np.float32)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    model64 = copy.deepcopy(model).double()
    with torch.inference_mode():
        reference = model64(torch.from_numpy(nchw).double()).numpy()
    return Batch(nhwc, nchw, torch.from_numpy(nchw), reference)


def export_onnx(model: torch.nn.Module, folder: Path) -> tuple[Path | None, str | None, dict[str, Any]]:
    """Export to ONNX with a dynamic batch axis: the dynamo exporter, else the TorchScript one."""
    path = folder / "compact_model.onnx"
    example = (torch.zeros(2, 3, IMAGE, IMAGE),)
    axes = {"x": {0: "batch"}, "y": {0: "batch"}}
    errors: dict[str, str] = {}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    for dynamo in (True, False):
        exporter = "dynamo" if dynamo else "torchscript"
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, example, str(path), input_names=["x"], output_names=["y"],
                                  dynamic_axes=axes, dynamo=dynamo)
        except Exception as e:  # noqa: BLE001 - any exporter failure is reported, then the next one tried
            errors[exporter] = f"{type(e).__name__}: {e}"
            continue
        return path, None, {"exporter": exporter, "seconds": time.perf_counter() - t0, "errors": errors}
    return None, "; ".join(f"{k}: {v}" for k, v in errors.items()), {"exporter": None, "errors": errors}


# --- competitors: each builder takes (bench, batch, threads) and returns a Runner --------------


def _engine_runner(bench: Bench, batch: Batch, threads: int, layer0: str) -> Runner:
    predictor = cc.Predictor(bench.plan, threads=threads, layer0=layer0)
    out = np.empty(len(batch.nhwc), np.float32)
    return Runner(lambda: predictor.predict(batch.nhwc, out=out), lambda: out,
                  {"isa": predictor.isa, "layer0": predictor.layer0})


def build_engine(bench: Bench, batch: Batch, threads: int) -> Runner:
    """The default engine: Winograd F(4x4,5x5) layer 0."""
    return _engine_runner(bench, batch, threads, "winograd")


def build_engine_direct(bench: Bench, batch: Batch, threads: int) -> Runner:
    """The engine with the direct layer-0 convolution (the same operation count as the peers)."""
    return _engine_runner(bench, batch, threads, "direct")


def _torch_runner(module: Callable[[torch.Tensor], torch.Tensor], batch: Batch) -> Runner:
    result: list[torch.Tensor] = []

    def call() -> None:
        with torch.inference_mode():
            result[:] = [module(batch.nchw_torch)]

    return Runner(call, lambda: result[0].numpy())


def build_torch_eager(bench: Bench, batch: Batch, threads: int) -> Runner:
    torch.set_num_threads(threads)
    return _torch_runner(bench.model, batch)


def build_torch_compile(bench: Bench, batch: Batch, threads: int) -> Runner:
    """Compiled afresh per setting: inductor bakes the thread count and shapes into its kernels."""
    torch.set_num_threads(threads)
    torch._dynamo.reset()
    runner = _torch_runner(torch.compile(bench.model), batch)
    t0 = time.perf_counter()
    runner.call()
    runner.info["compile_s"] = time.perf_counter() - t0
    return runner


def build_onnxruntime(bench: Bench, batch: Batch, threads: int) -> Runner:
    import onnxruntime as ort

    if bench.onnx_path is None:
        raise RuntimeError(f"ONNX export failed: {bench.onnx_error}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(bench.onnx_path), options, providers=["CPUExecutionProvider"])
    feeds = {session.get_inputs()[0].name: batch.nchw}
    result: list[np.ndarray] = []

    def call() -> None:
        result[:] = session.run(None, feeds)

    return Runner(call, lambda: result[0], {"providers": session.get_providers()})


def _openvino_runner(bench: Bench, batch: Batch, threads: int, f32_hint: bool) -> Runner:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    if bench.onnx_path is None:
        raise RuntimeError(f"ONNX export failed: {bench.onnx_error}")
    core = ov.Core()
    model = core.read_model(str(bench.onnx_path))
    model.reshape({0: list(batch.nchw.shape)})  # static batch, as a deployment would compile it
    config: dict[Any, Any] = {props.inference_num_threads: threads,
                              hints.performance_mode: hints.PerformanceMode.LATENCY}
    if f32_hint:
        config[hints.inference_precision] = ov.Type.f32
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    feeds = {0: batch.nchw}
    info = {"inference_precision": compiled.get_property(hints.inference_precision).get_type_name()}
    return Runner(lambda: request.infer(feeds, share_inputs=True),
                  lambda: request.get_output_tensor(0).data.reshape(-1), info)


def build_openvino_f32(bench: Bench, batch: Batch, threads: int) -> Runner:
    return _openvino_runner(bench, batch, threads, f32_hint=True)


def build_openvino_default(bench: Bench, batch: Batch, threads: int) -> Runner:
    return _openvino_runner(bench, batch, threads, f32_hint=False)


BUILDERS: dict[str, Callable[[Bench, Batch, int], Runner]] = {
    "engine": build_engine,
    "engine_direct": build_engine_direct,
    "torch_eager": build_torch_eager,
    "torch_compile": build_torch_compile,
    "onnxruntime": build_onnxruntime,
    "openvino_f32": build_openvino_f32,
    "openvino_default": build_openvino_default,
}


def matmul_runner(threads: int) -> Runner:
    """``torch.mm`` of two fixed 1024x1024 float32 matrices."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    out = torch.empty(MATMUL_N, MATMUL_N)

    torch.set_num_threads(threads)
    return Runner(lambda: torch.mm(a, b, out=out), lambda: out.numpy())


# --- timing -----------------------------------------------------------------------------------


def error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


def max_rel_error(output: np.ndarray, reference: np.ndarray) -> float:
    """max |output - reference| / max |reference|."""
    out = np.asarray(output, dtype=np.float64).reshape(-1)
    return float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))


def warm_up(runner: Runner) -> None:
    """Call at least WARMUP_MIN_CALLS times and WARMUP_MIN_S seconds; set ``runner.calls``."""
    t0 = time.perf_counter()
    calls = 0
    while calls < WARMUP_MIN_CALLS or time.perf_counter() - t0 < WARMUP_MIN_S:
        runner.call()
        calls += 1
    per_call = (time.perf_counter() - t0) / calls
    runner.calls = max(1, min(MAX_CALLS, math.ceil(SAMPLE_S / per_call)))


def time_sample(runner: Runner) -> float:
    """Mean wall seconds per call over ``runner.calls`` consecutive calls, after a short idle pause."""
    time.sleep(PAUSE_S)
    t0 = time.perf_counter()
    for _ in range(runner.calls):
        runner.call()
    return (time.perf_counter() - t0) / runner.calls


def prepare(bench: Bench, batch: Batch, threads: int, names: list[str], global_errors: dict[str, str],
            ) -> tuple[dict[str, Runner], dict[str, dict[str, Any]]]:
    """Build, check and warm up every competitor; failures are recorded, not raised."""
    runners: dict[str, Runner] = {}
    records: dict[str, dict[str, Any]] = {}
    for name in names:
        if name in global_errors:
            records[name] = {"error": global_errors[name]}
            continue
        t0 = time.perf_counter()
        try:
            runner = BUILDERS[name](bench, batch, threads)
            runner.call()
            error = max_rel_error(runner.output(), batch.reference)
            warm_up(runner)
        except Exception as e:  # noqa: BLE001 - one failing competitor must not stop the others
            records[name] = {"error": error_text(e)}
            continue
        runners[name] = runner
        records[name] = {"max_rel_error": error, "setup_s": time.perf_counter() - t0,
                         "calls_per_sample": runner.calls, **runner.info}
    return runners, records


def run_rounds(runners: dict[str, Runner], rounds: int | None, seconds: float | None,
               rng: random.Random, desc: str) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Interleaved rounds: each round times every runner once, in a freshly shuffled order."""
    samples: dict[str, list[float]] = {name: [] for name in runners}
    failed: dict[str, str] = {}
    deadline = None if seconds is None else time.perf_counter() + seconds
    with tqdm(total=rounds, desc=desc, unit="round", leave=False) as bar:
        done = 0
        while _more_rounds(done, rounds, deadline):
            order = [name for name in runners if name not in failed]
            rng.shuffle(order)
            for name in order:
                try:
                    samples[name].append(time_sample(runners[name]))
                except Exception as e:  # noqa: BLE001 - drop the competitor, keep timing the rest
                    failed[name] = error_text(e)
            done += 1
            bar.update()
    return samples, failed


def _more_rounds(done: int, rounds: int | None, deadline: float | None) -> bool:
    if deadline is not None:
        return done < MIN_ROUNDS or time.perf_counter() < deadline
    return done < rounds


# --- one setting ------------------------------------------------------------------------------


def run_setting(bench: Bench, batch: Batch, threads: int, names: list[str], global_errors: dict[str, str],
                args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Prepare, time and summarise every competitor at one (threads, batch size)."""
    n = len(batch.nhwc)
    runners, records = prepare(bench, batch, threads, names, global_errors)
    matmul = matmul_runner(threads)
    warm_up(matmul)
    rounds = None if args.seconds is not None else (args.rounds or default_rounds(n))
    samples, failed = run_rounds({**runners, "matmul": matmul}, rounds, args.seconds, rng,
                                 desc=f"threads={threads} batch={n}")
    matmul_samples = samples.pop("matmul")
    matmul_flops = 2 * MATMUL_N**3 / statistics.median(matmul_samples)
    for name, error in failed.items():
        records[name]["error"] = error
    summarise(records, samples, failed, n, matmul_flops, 2 * bench.plan.macs_per_image())
    return {
        "threads": threads,
        "batch": n,
        "rounds": len(matmul_samples),
        "matmul": {"op": f"torch.mm {MATMUL_N}x{MATMUL_N} float32", "calls_per_sample": matmul.calls,
                   "samples_s_per_call": matmul_samples,
                   "gflops_median": matmul_flops / 1e9},
        "competitors": records,
    }


def default_rounds(batch: int) -> int:
    return 30 if batch <= 4 else 7


def summarise(records: dict[str, dict[str, Any]], samples: dict[str, list[float]], failed: dict[str, str],
              batch: int, matmul_flops: float, flops_per_image: float) -> None:
    """Add medians, images/s, engine ratio and matmul fraction to ``records`` in place."""
    speed: dict[str, float] = {}
    for name, times in samples.items():
        if name in failed or not times:
            continue
        median = statistics.median(times)
        speed[name] = batch / median
        records[name].update(
            samples_s_per_call=times,
            median_ms_per_image=1e3 * median / batch,
            images_per_s=speed[name],
            fraction_of_matmul=flops_per_image * speed[name] / matmul_flops,
        )
    for name, images_per_s in speed.items():
        records[name]["engine_ratio"] = speed["engine"] / images_per_s if "engine" in speed else None


# --- report -----------------------------------------------------------------------------------


def machine_info(isa: str, load_before: list[float] | None) -> dict[str, Any]:
    """Platform, CPU, package versions, and the 1/5/15-minute load averages before and after the run."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "compactcortex": cc.__version__,
        "torch": torch.__version__,
        "engine_isa": isa,
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
    }
    for package in ("onnxruntime", "openvino"):
        try:
            info[package] = __import__(package).__version__
        except Exception as e:  # noqa: BLE001 - missing or broken package
            info[package] = f"unavailable ({error_text(e)})"
    return info


def load_average() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def format_table(settings: list[dict[str, Any]]) -> str:
    header = (f"{'threads':>7} {'batch':>5}  {'competitor':<17} {'ms/img':>8} {'img/s':>8} "
              f"{'engine x':>8} {'%matmul':>7} {'max rel err':>11}")
    lines = [header, "-" * len(header)]
    for s in settings:
        for name, r in s["competitors"].items():
            prefix = f"{s['threads']:>7} {s['batch']:>5}  {name:<17}"
            if "images_per_s" not in r:
                lines.append(f"{prefix} failed: {r.get('error', 'no samples')[:80]}")
                continue
            ratio = "-" if r["engine_ratio"] is None else f"{r['engine_ratio']:.2f}"
            lines.append(f"{prefix} {r['median_ms_per_image']:8.3f} {r['images_per_s']:8.1f} {ratio:>8} "
                         f"{100 * r['fraction_of_matmul']:6.1f}% {r['max_rel_error']:11.2e}")
        lines.append(f"{'':>15}matmul rate ({s['matmul']['op']}): {s['matmul']['gflops_median']:.1f} GFLOP/s")
    return "\n".join(lines)


def write_json(result: dict[str, Any], stamp: str) -> Path:
    """Write to a timestamped file and to ``..._latest.json``, each atomically."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1)
    path = RESULTS_DIR / f"bench_inference_{stamp}.json"
    for target in (path, RESULTS_DIR / "bench_inference_latest.json"):
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=RESULTS_DIR)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return path


def package_errors(names: list[str]) -> dict[str, str]:
    """Competitors whose package cannot be imported, with the import error."""
    packages = {"onnxruntime": "onnxruntime", "openvino_f32": "openvino", "openvino_default": "openvino"}
    errors = {}
    for name in names:
        if name in packages:
            try:
                __import__(packages[name])
            except Exception as e:  # noqa: BLE001 - a missing or broken package skips the competitor
                errors[name] = error_text(e)
    return errors


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the compactcortex engine against PyTorch eager, torch.compile, ONNX Runtime and "
                    "OpenVINO on one compact model, interleaved in one process. Units: ms/img = median "
                    "wall milliseconds per image; img/s = images per second from that median; engine x = "
                    "engine img/s / competitor img/s in the same setting (>1: engine faster); %matmul = "
                    "2 * MACs/image * img/s as a percentage of the median GFLOP/s of a 1024x1024 float32 "
                    "torch.mm at the same thread count; max rel err = max |output - float64 reference| / "
                    "max |reference|. JSON sample times are seconds per call.",
)
    parser.add_argument("--model", type=Path, default=None,
                        help="published compact model .pt (default: compact_model_190923_neuron0.pt in "
                             "../shared/data/v4; if that is absent, a random model with filters 48,60,3,3,3)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64], help="batch sizes (images per call; default: 1 64)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds per setting (default: 30 for batch <= 4, else 7)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="instead of --rounds: time budget per setting in seconds (at least "
                             f"{MIN_ROUNDS} rounds)")
    parser.add_argument("--competitors", nargs="+", default=list(COMPETITORS), choices=COMPETITORS,
                        help="competitors to run (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the input images and the round order (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke test: {MIN_ROUNDS} rounds per setting and batch sizes {QUICK_BATCHES} "
                             "(overrides --rounds, --seconds and --batches)")
    args = parser.parse_args()
    if args.model is not None and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    if args.quick:
        args.rounds, args.seconds, args.batches = MIN_ROUNDS, None, QUICK_BATCHES
    return args


def main() -> None:
    args = parse_args()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    load_before = load_average()
    model, model_info = load_model(args.model or DEFAULT_MODEL)
    if "note" in model_info:
        print(f"NOTE: {model_info['note']}")
    plan = cc.compile(model)
    model_info["macs_per_image"] = plan.macs_per_image()
    names = [name for name in COMPETITORS if name in args.competitors]
    isa = cc.Predictor(plan, threads=1).isa
    rng = random.Random(args.seed)
    settings: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path, onnx_error, onnx_info = export_onnx(model, Path(folder))
        bench = Bench(model, plan, onnx_path, onnx_error)
        global_errors = package_errors(names)
        batches = {n: make_batch(model, n, args.seed) for n in args.batches}
        grid = [(t, n) for t in args.threads for n in args.batches]
        for threads, n in tqdm(grid, desc="settings", unit="setting"):
            settings.append(run_setting(bench, batches[n], threads, names, global_errors, args, rng))
    result = {
        "benchmark": "bench_inference",
        "timestamp_utc": stamp,
        "machine": machine_info(isa, load_before),
        "model": model_info,
        "config": {"batches": args.batches, "threads": args.threads, "rounds": args.rounds,
                   "seconds": args.seconds, "quick": args.quick, "seed": args.seed, "pause_s": PAUSE_S,
                   "pixel_std": PIXEL_STD, "competitors": names},
        "onnx_export": onnx_info,
        "package_errors": global_errors,
        "settings": settings,
    }
    print(format_table(settings))
    print(f"model: {model_info['path'] or model_info['note']}, {plan.macs_per_image() / 1e6:.1f}M MACs/image, "
          f"engine isa {result['machine']['engine_isa']}")
    print(f"JSON: {write_json(result, stamp)}")


if __name__ == "__main__":
    main()
