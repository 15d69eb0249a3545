"""Whole-population prediction: all models of a session on the same images.

Competitors, in one process, interleaved (each round times every competitor once, in a shuffled
order): ``population`` (compactcortex.PopulationPredictor, one call), ``engine_loop`` (our
single-model Predictor, model after model), ``openvino_f32_loop`` and ``onnxruntime_loop``
(one compiled model per neuron, run one after another, ``--peer-chunk`` images per call) and
``torch_eager_loop`` (the CompactModels one after another). Reported: image x neuron predictions
per second, the ratio population speed / competitor speed, the max error on the first 16 images
against each model's float64 PyTorch output (relative to that model's output scale), and the
fraction of the CPU's measured float32 matrix-multiply rate (``torch.mm``) that the
direct-convolution multiply-adds represent.

Models: the published models of ``--session`` (default 190923: 33 models) from ../shared/data/v4,
or, where that data is absent, 33 random models with filter counts in the published ranges.

    python benchmarks/bench_population.py               # 64 and 512 images, 2 threads
    python benchmarks/bench_population.py --quick       # smoke test

PyTorch eager is slow (~20 ms per image and model here); at 512 images it is skipped unless
``--torch-all`` is given. JSON: benchmarks/results/bench_population_latest.json.
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import common
import compactcortex as cc
from common import Runner
from compactcortex.models.random import random_published_like_model

POPULATION = 33  # models of one recorded session


def load_models(session: str) -> tuple[list[torch.nn.Module], str]:
    try:
        return cc.load_published_session(common.DATA, session), f"published models of session {session}"
    except ValueError:
        filters, _ = common.published_like_filters(POPULATION, 0)
        return [random_published_like_model(f, seed=i) for i, f in enumerate(filters)], \
            f"{POPULATION} random models with published-range filter counts (data absent)"


def build(name: str, models, plans, x_nhwc, x_nchw, threads: int, onnx_paths, chunk: int) -> Runner:
    """One competitor. The per-model peers (OpenVINO, ONNX Runtime) run ``chunk`` images per call:
    each compiled model keeps buffers for its batch shape, and 33 of them at 64+ images do not fit
    in 24 GB (layer 0 alone is 64 x 58 x 112 x 112 floats = 186 MB per model)."""
    n, m = len(x_nhwc), len(models)
    chunks = [slice(i, i + chunk) for i in range(0, n, chunk)]
    if name == "population":
        pop = cc.PopulationPredictor(plans, threads=threads)
        out = np.empty((n, m), np.float32)
        return Runner(lambda: pop.predict(x_nhwc, out=out), lambda: out)
    if name == "engine_loop":
        preds = [cc.Predictor(p, threads=threads) for p in plans]
        outs = np.empty((m, n), np.float32)

        def call():
            for p, o in zip(preds, outs):
                p.predict(x_nhwc, out=o)
        return Runner(call, lambda: outs.T)
    if name == "torch_eager_loop":
        torch.set_num_threads(threads)
        xt = torch.from_numpy(x_nchw)
        res: list = []

        def call():
            with torch.inference_mode():
                res[:] = [torch.stack([mod(xt) for mod in models], 1)]
        return Runner(call, lambda: res[0].numpy())
    if name == "openvino_f32_loop":
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hints

        core = ov.Core()
        reqs = []
        for path in onnx_paths:
            model = core.read_model(str(path))
            model.reshape({0: [chunk, *x_nchw.shape[1:]]})
            compiled = core.compile_model(model, "CPU", {props.inference_num_threads: threads,
                                                         hints.performance_mode: hints.PerformanceMode.LATENCY,
                                                         hints.inference_precision: ov.Type.f32})
            reqs.append(compiled.create_infer_request())

        outs = np.empty((m, n), np.float32)

        def call():
            for r, o in zip(reqs, outs):
                for c in chunks:
                    r.infer({0: x_nchw[c]}, share_inputs=True)
                    o[c] = r.get_output_tensor(0).data.reshape(-1)
        return Runner(call, lambda: outs.T)
    if name == "onnxruntime_loop":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Every session owns a thread pool; spinning pools of 33 idle sessions would steal the cores.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = [ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"]) for p in onnx_paths]
        outs = np.empty((m, n), np.float32)

        def call():
            for s, o in zip(sessions, outs):
                for c in chunks:
                    o[c] = s.run(None, {"x": x_nchw[c]})[0].reshape(-1)
        return Runner(call, lambda: outs.T)
    raise ValueError(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] + " Units: image x neuron predictions "
                                 "per second; ratio = population speed / competitor speed (> 1: population faster).")
    ap.add_argument("--session", default="190923")
    ap.add_argument("--images", type=int, nargs="+", default=[64, 512])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--torch-all", action="store_true", help="also time PyTorch eager at more than 64 images")
    ap.add_argument("--peer-chunk", type=int, default=16,
                    help="images per call of the OpenVINO / ONNX Runtime models (default 16; see build())")
    ap.add_argument("--quick", action="store_true", help="8 images, 1 round, first 6 models")
    args = ap.parse_args()
    models, source = load_models(args.session)
    if args.quick:
        models, args.images, args.rounds = models[:6], [8], 1
    models = [mod.float().eval() for mod in models]
    plans = [cc.compile(mod) for mod in models]
    names = ["population", "engine_loop", "openvino_f32_loop", "onnxruntime_loop", "torch_eager_loop"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_population_"))
    onnx_paths, onnx_error = [], None
    for i, mod in enumerate(tqdm(models, desc="ONNX export", leave=False)):
        (tmp / f"m{i}").mkdir()
        path, err, _ = common.export_onnx(mod, tmp / f"m{i}")
        if path is None:
            onnx_error = err
            break
        onnx_paths.append(path)
    settings = []
    mm = common.matmul_runner(args.threads)
    common.warm_up(mm)
    for n in args.images:
        x = common.random_images(np.random.default_rng(n), n)
        xc = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        n_ref = min(n, 16)  # float64 PyTorch on 512 images x 33 models would take minutes and GBs
        with torch.inference_mode():
            ref = torch.stack([mod.double()(torch.from_numpy(xc[:n_ref]).double()) for mod in models], 1).numpy()
        for mod in models:
            mod.float()
        runners, errors, record = {}, {}, {}
        for name in names:
            if name == "torch_eager_loop" and n > 64 and not args.torch_all:
                errors[name] = "skipped (slow; --torch-all to include)"
                continue
            if name in ("openvino_f32_loop", "onnxruntime_loop") and onnx_error:
                errors[name] = f"ONNX export failed: {onnx_error}"
                continue
            try:
                r = build(name, models, plans, x, xc, args.threads, onnx_paths, math.gcd(n, args.peer_chunk))
                common.warm_up(r)
                r.calls = 1
                out = np.asarray(r.output())[:n_ref]
                record[name] = {"max_rel_error": common.max_rel_error(out, ref, axis=0)}
                runners[name] = r
            except Exception as e:  # noqa: BLE001 - a failing competitor is reported, not fatal
                errors[name] = common.error_text(e)
        with tqdm(total=args.rounds, desc=f"{n} images", leave=False) as bar:
            samples, failed = common.interleaved_rounds({**runners, "matmul": mm}, args.rounds, random.Random(n),
                                                        on_round=lambda _: bar.update())
        errors.update(failed)
        flops = common.matmul_flops(statistics.median(samples.pop("matmul")))
        macs = sum(p.macs_per_image() for p in plans)
        # what the engine's kernels execute (padded channels, Winograd layer 0): its own limit
        executed = cc.PopulationPredictor(plans, threads=1).executed_macs_per_image()
        median_s = common.medians(samples)
        ratio = common.ratios_to(median_s, "population") if "population" in median_s else {}
        for k, t in median_s.items():
            record[k].update(seconds=t, samples_s=samples[k], predictions_per_s=n * len(models) / t,
                             matmul_fraction=2 * macs * n / t / flops)
            if k in ("population", "engine_loop"):
                record[k]["executed_matmul_fraction"] = 2 * executed * n / t / flops
            if k in ratio:
                record[k]["population_ratio"] = ratio[k]
        settings.append({"images": n, "threads": args.threads, "peer_chunk": math.gcd(n, args.peer_chunk),
                         "matmul_gflops": flops / 1e9, "results": record,
                         "errors": errors})
        print(f"\n{n} images x {len(models)} models, {args.threads} threads (matmul {flops / 1e9:.1f} GFLOP/s)")
        print(f"{'competitor':<20} {'pred/s':>9} {'population x':>12} {'%matmul':>8} {'%exec':>7} {'max rel err':>11}")
        for k, r in record.items():
            if "predictions_per_s" in r:
                exe = f"{100 * r['executed_matmul_fraction']:6.1f}%" if "executed_matmul_fraction" in r else f"{'-':>7}"
                print(f"{k:<20} {r['predictions_per_s']:>9.0f} {r.get('population_ratio', float('nan')):>12.2f} "
                      f"{100 * r['matmul_fraction']:>7.1f}% {exe} {r['max_rel_error']:>11.1e}")
        for k, e in errors.items():
            print(f"{k:<20} {e[:90]}")
    result = {"models": source, "num_models": len(models), "isa": cc.available_isas()[0],
              "cpu": common.cpu_model(), "settings": settings}
    out = common.write_json(common.RESULTS / "bench_population_latest.json", result)
    print(f"JSON: {out}")


if __name__ == "__main__":
    main()
