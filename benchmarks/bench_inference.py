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
  (``2 * MACs/image * images/s / matmul FLOP/s``, MACs of the direct convolution: the model's
  own count), for the engine also with the multiply-adds its kernels actually execute (``%exec``:
  channels padded to the vector width, Winograd layer 0 at 12 + ~11 per output value instead
  of 75; ``Predictor.executed_macs_per_image``), and the max relative error. The engine runs
  with its default ``spin_ms`` (workers poll 0.2 ms, then sleep through the pauses): a longer
  spin would take a core from the next competitor; ``bench_latency.py`` measures it alone.

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
import copy
import random
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

import common
import compactcortex as cc
from common import Runner

DEFAULT_MODEL = common.published_model_path(common.DATA, "190923", 0)
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


def make_batch(model: torch.nn.Module, n: int, seed: int) -> Batch:
    """Random recentred images (normal, std 60) from ``seed`` and the float64 model's outputs."""
    nhwc = common.random_images(np.random.default_rng(seed), n)
    nchw = np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    model64 = copy.deepcopy(model).double()
    with torch.inference_mode():
        reference = model64(torch.from_numpy(nchw).double()).numpy()
    return Batch(nhwc, nchw, torch.from_numpy(nchw), reference)


# --- competitors: each builder takes (bench, batch, threads) and returns a Runner --------------


def _engine_runner(bench: Bench, batch: Batch, threads: int, layer0: str) -> Runner:
    predictor = cc.Predictor(bench.plan, threads=threads, layer0=layer0)
    out = np.empty(len(batch.nhwc), np.float32)
    return Runner(lambda: predictor.predict(batch.nhwc, out=out), lambda: out,
                  {"isa": predictor.isa, "layer0": predictor.layer0,
                   "executed_macs_per_image": predictor.executed_macs_per_image()})


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


# --- one setting ------------------------------------------------------------------------------


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
            error = common.max_rel_error(runner.output(), batch.reference)
            common.warm_up(runner)
        except Exception as e:  # noqa: BLE001 - one failing competitor must not stop the others
            records[name] = {"error": common.error_text(e)}
            continue
        runners[name] = runner
        records[name] = {"max_rel_error": error, "setup_s": time.perf_counter() - t0,
                         "calls_per_sample": runner.calls, **runner.info}
    return runners, records


def run_setting(bench: Bench, batch: Batch, threads: int, names: list[str], global_errors: dict[str, str],
                args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    """Prepare, time and summarise every competitor at one (threads, batch size)."""
    n = len(batch.nhwc)
    runners, records = prepare(bench, batch, threads, names, global_errors)
    matmul = common.matmul_runner(threads)
    common.warm_up(matmul)
    rounds = None if args.seconds is not None else (args.rounds or default_rounds(n))
    with tqdm(total=rounds, desc=f"threads={threads} batch={n}", unit="round", leave=False) as bar:
        samples, failed = common.interleaved_rounds({**runners, "matmul": matmul}, rounds, rng, seconds=args.seconds,
                                                    min_rounds=MIN_ROUNDS, on_round=lambda _: bar.update())
    matmul_samples = samples.pop("matmul")
    matmul_flops = common.matmul_flops(statistics.median(matmul_samples))
    for name, error in failed.items():
        records[name]["error"] = error
    summarise(records, samples, n, matmul_flops, 2 * bench.plan.macs_per_image())
    return {
        "threads": threads,
        "batch": n,
        "rounds": len(matmul_samples),
        "matmul": {"op": f"torch.mm {common.MATMUL_N}x{common.MATMUL_N} float32", "calls_per_sample": matmul.calls,
                   "samples_s_per_call": matmul_samples,
                   "gflops_median": matmul_flops / 1e9},
        "competitors": records,
    }


def default_rounds(batch: int) -> int:
    return 30 if batch <= 4 else 7


def summarise(records: dict[str, dict[str, Any]], samples: dict[str, list[float]], batch: int,
              matmul_flops: float, flops_per_image: float) -> None:
    """Add medians, images/s, engine ratio and matmul fraction to ``records`` in place."""
    median_s = common.medians(samples)
    engine_ratio = common.ratios_to(median_s, "engine") if "engine" in median_s else {}
    for name, median in median_s.items():
        images_per_s = batch / median
        records[name].update(
            samples_s_per_call=samples[name],
            median_ms_per_image=1e3 * median / batch,
            images_per_s=images_per_s,
            fraction_of_matmul=flops_per_image * images_per_s / matmul_flops,
            engine_ratio=engine_ratio.get(name),
        )
        executed = records[name].get("executed_macs_per_image")
        if executed:  # the engine's own count: padded channels, Winograd layer 0 as executed
            records[name]["fraction_executed_of_matmul"] = 2 * executed * images_per_s / matmul_flops


# --- report -----------------------------------------------------------------------------------


def machine_info(isa: str, load_before: list[float] | None) -> dict[str, Any]:
    """The shared machine description, the engine's ISA, peer versions, and the load averages."""
    info = common.machine_info(engine_isa=isa, loadavg_before=load_before, loadavg_after=common.load_average())
    for package in ("onnxruntime", "openvino"):
        try:
            info[package] = __import__(package).__version__
        except Exception as e:  # noqa: BLE001 - missing or broken package
            info[package] = f"unavailable ({common.error_text(e)})"
    return info


def format_table(settings: list[dict[str, Any]]) -> str:
    header = (f"{'threads':>7} {'batch':>5}  {'competitor':<17} {'ms/img':>8} {'img/s':>8} "
              f"{'engine x':>8} {'%matmul':>7} {'%exec':>6} {'max rel err':>11}")
    lines = [header, "-" * len(header)]
    for s in settings:
        for name, r in s["competitors"].items():
            prefix = f"{s['threads']:>7} {s['batch']:>5}  {name:<17}"
            if "images_per_s" not in r:
                lines.append(f"{prefix} failed: {r.get('error', 'no samples')[:80]}")
                continue
            ratio = "-" if r["engine_ratio"] is None else f"{r['engine_ratio']:.2f}"
            executed = (f"{100 * r['fraction_executed_of_matmul']:5.1f}%" if "fraction_executed_of_matmul" in r
                        else f"{'-':>6}")
            lines.append(f"{prefix} {r['median_ms_per_image']:8.3f} {r['images_per_s']:8.1f} {ratio:>8} "
                         f"{100 * r['fraction_of_matmul']:6.1f}% {executed} {r['max_rel_error']:11.2e}")
        lines.append(f"{'':>15}matmul rate ({s['matmul']['op']}): {s['matmul']['gflops_median']:.1f} GFLOP/s")
    return "\n".join(lines)


def write_results(result: dict[str, Any], stamp: str) -> Path:
    """Write to a timestamped file and to ``..._latest.json``, each atomically."""
    path = common.RESULTS / f"bench_inference_{stamp}.json"
    for target in (path, common.RESULTS / "bench_inference_latest.json"):
        common.write_json(target, result)
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
                errors[name] = common.error_text(e)
    return errors


# --- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the compactcortex engine against PyTorch eager, torch.compile, ONNX Runtime and "
                    "OpenVINO on one compact model, interleaved in one process. Units: ms/img = median "
                    "wall milliseconds per image; img/s = images per second from that median; engine x = "
                    "engine img/s / competitor img/s in the same setting (>1: engine faster); %matmul = "
                    "2 * MACs/image * img/s as a percentage of the median GFLOP/s of a 1024x1024 float32 "
                    "torch.mm at the same thread count (MACs of the direct convolution); %exec = the same with "
                    "the multiply-adds the engine's kernels execute (padding, Winograd); max rel err = max "
                    "|output - float64 reference| / max |reference|. JSON sample times are seconds per call.",
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
    stamp = common.utc_stamp()
    load_before = common.load_average()
    model, model_info = common.model_or_random(args.model or DEFAULT_MODEL)
    if "note" in model_info:
        print(f"NOTE: {model_info['note']}")
    plan = cc.compile(model)
    model_info["macs_per_image"] = plan.macs_per_image()
    names = [name for name in COMPETITORS if name in args.competitors]
    isa = cc.Predictor(plan, threads=1).isa
    rng = random.Random(args.seed)
    settings: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        onnx_path, onnx_error, onnx_info = common.export_onnx(model, Path(folder))
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
                   "seconds": args.seconds, "quick": args.quick, "seed": args.seed, "pause_s": common.PAUSE_S,
                   "pixel_std": common.PIXEL_STD, "competitors": names},
        "onnx_export": onnx_info,
        "package_errors": global_errors,
        "settings": settings,
    }
    print(format_table(settings))
    print(f"model: {model_info['path'] or model_info['note']}, {plan.macs_per_image() / 1e6:.1f}M MACs/image, "
          f"engine isa {result['machine']['engine_isa']}")
    print(f"JSON: {write_results(result, stamp)}")


if __name__ == "__main__":
    main()
