"""GPU inference speed of the compactcortex CUDA engine against PyTorch CUDA, in one process.

Settings (all on one GPU, float32 recentred images in NCHW, the same tensor for everyone):

* ``single_b1``: batch-1 latency of one model (published 190923 neuron 0, or a random model with
  filters 48,60,3,3,3 where the published file is absent);
* ``single_b<B>``: batch-B throughput of the same model (B = 1024 by default);
* ``population_<M>``: M random models with published-like filter counts (drawn from the
  published ``nums_filters`` files where present) on 1,024 images; throughput counted as
  image x neuron predictions per second. M = 33 (one recorded session) and 219 (all published).

Competitors:

* ``engine``: ``Predictor(device="cuda").predict(x, out=out, check_finite=False)`` (and
  ``PopulationPredictor``; default workspace);
  ``engine_checked`` with the NaN check (waits for the stream); ``engine_ws64`` /
  ``engine_ws1024``: workspace 64 / 1024 MiB (chunk size);
* ``torch_eager``: the ``CompactModel`` (batchnorm unfolded, as users run it) in
  ``torch.inference_mode``, cuDNN float32 (TF32 off); ``torch_eager_tf32``: the same with
  PyTorch's default TF32 convolutions (less precise, shown for reference);
  ``torch_compile``: ``torch.compile`` (default mode) of the float32 model, TF32 off;
* populations: ``torch_loop``: every model's eager float32 forward in turn;
  ``torch_grouped``: all models as one zero-padded grouped network (batchnorm folded: the
  Plans' weights; layer 0 one convolution, depthwise and pointwise as grouped convolutions,
  readout one einsum), in image chunks that fit memory; ``torch_compile_grouped`` with
  ``--compile-population``.

Method: each competitor is built, checked against a float64 PyTorch reference on the GPU (max
|output - reference| / max |reference|; populations on the first 64 images), warmed up, then
timed in R interleaved rounds, each round in a seeded random order. A sample is the mean
wall-clock time of as many consecutive calls as last about 20 ms (CUDA-synchronised before and
after; so batch-1 latency includes launch overheads). Reported: medians, images/s,
predictions/s, and ratios ``engine throughput / competitor throughput`` (> 1: the engine is
faster) from medians of the same run. Nothing asserts on timings.

Run from the repository root on a GPU machine::

    python benchmarks/bench_cuda.py               # a few minutes
    python benchmarks/bench_cuda.py --quick       # smoke test: small sizes, no torch.compile

Results: ``benchmarks/results/bench_cuda_latest.json`` and ``bench_cuda_<UTC stamp>.json``
(written atomically).
"""
from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

import common
from common import Runner
from compactcortex.models.random import random_published_like_model

DEFAULT_MODEL = common.published_model_path(common.DATA, "190923", 0)
MAX_CALLS = 20    # calls per sample at most
REF_IMAGES = 64   # population errors are measured on this many images


# --------------------------------------------------------------------------------- arguments


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Time the compactcortex CUDA engine against PyTorch CUDA eager (cuDNN) and "
                    "torch.compile: batch-1 latency, batch throughput, and populations of models. "
                    "Writes benchmarks/results/bench_cuda_latest.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL,
                   help="published .pt model for the single-model settings (random 48,60,3,3,3 if absent)")
    p.add_argument("--batch", type=int, default=1024, help="throughput batch size")
    p.add_argument("--images", type=int, default=1024, help="images for the population settings")
    p.add_argument("--populations", default="33,219", help="population sizes, comma-separated ('' for none)")
    p.add_argument("--rounds", type=int, default=9, help="timed rounds for the single-model settings")
    p.add_argument("--population-rounds", type=int, default=3, help="timed rounds for the populations")
    p.add_argument("--workspace-mb", type=float, default=256, help="the engine's default workspace")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-population", action="store_true",
                   help="also torch.compile the grouped population network (slow to compile)")
    p.add_argument("--no-tf32", action="store_true", help="skip the TF32 PyTorch competitor")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: batch 64, 128 images, populations 5,33, 3/2 rounds, no torch.compile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=common.RESULTS / "bench_cuda_latest.json", help="JSON result")
    # Checks this script's logic on a machine without a GPU: torch on the CPU, the CPU engine
    # standing in for the CUDA engine, tiny sizes. Its numbers mean nothing.
    p.add_argument("--cpu-dry-run", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.quick or a.cpu_dry_run:
        a.batch, a.images, a.rounds, a.population_rounds, a.no_compile = 64, 128, 3, 2, True
        a.populations = "5,33" if a.quick else "3,4"
        if a.cpu_dry_run:
            a.batch, a.images, a.rounds, a.population_rounds = 3, 5, 2, 1
    a.population_sizes = [int(v) for v in a.populations.split(",") if v.strip()]
    return a


# --------------------------------------------------------------------------------- timing


def to_numpy(y: Any) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().float().cpu().numpy()
    return np.asarray(y, np.float64)


def run_setting(name: str, competitors: dict[str, Runner], reference: np.ndarray, ref_rows: int,
                images: int, models: int, rounds: int, sync: Callable[[], None], seed: int,
                failed: dict[str, str]) -> dict[str, Any]:
    """Check, warm up and time the competitors, interleaved; summarise with medians."""
    print(f"\n== {name}: {images} images x {models} models, {rounds} rounds", flush=True)
    ready: dict[str, Runner] = {}
    records: dict[str, dict[str, Any]] = {}
    for cname, comp in competitors.items():
        try:
            t = time.perf_counter()
            y = to_numpy(comp.call())
            sync()
            first = time.perf_counter() - t
            err = common.max_rel_error(y.reshape(images, -1)[:ref_rows], reference)
            common.warm_up(comp, max_calls=MAX_CALLS, sync=sync)
            records[cname] = {"first_call_s": first, "max_rel_error_vs_float64": err,
                              "calls_per_sample": comp.calls, **comp.info}
            ready[cname] = comp
            print(f"   {cname:24s} ready: first call {first:7.2f} s, error {err:.1e}", flush=True)
        except Exception as e:  # a competitor that fails is reported, not fatal
            failed[f"{name}/{cname}"] = common.error_text(e)
            print(f"   {cname:24s} FAILED: {type(e).__name__}: {str(e)[:300]}", flush=True)
            traceback.print_exc(limit=3)
    samples, errors = common.interleaved_rounds(ready, rounds, random.Random(seed), pause_s=0.0, sync=sync)
    failed.update({f"{name}/{cname}": e for cname, e in errors.items()})
    median_s = common.medians(samples)
    for cname, med in median_s.items():
        records[cname].update({
            "median_s": med, "images_per_s": images / med, "predictions_per_s": images * models / med,
            "ms_per_call": med * 1e3, "samples_s": samples[cname]})
    ratios = {}
    if "engine" in median_s:
        ratios = {f"engine_vs_{c}": r for c, r in common.ratios_to(median_s, "engine").items() if c != "engine"}
    return {"name": name, "images": images, "models": models, "rounds": rounds,
            "competitors": records, "ratios": ratios}


# --------------------------------------------------------------------------------- models


def grouped_network(torch, plans, device):
    """All Plans as one zero-padded grouped float32 network: f(x (N,3,112,112)) -> (N, models)."""
    import torch.nn.functional as F

    m = len(plans)
    mx = [max(p.nums_filters[l] for p in plans) for l in range(5)]
    w0 = np.zeros((m * mx[0], 3, 5, 5), np.float32)
    b0 = np.zeros(m * mx[0], np.float32)
    dw = [np.zeros((m * mx[l], 1, 5, 5), np.float32) for l in range(4)]
    pw = [np.zeros((m * mx[l + 1], mx[l], 1, 1), np.float32) for l in range(4)]
    pb = [np.zeros(m * mx[l + 1], np.float32) for l in range(4)]
    ro = np.zeros((m, mx[4], 28, 28), np.float32)
    bias = np.zeros(m, np.float32)
    for i, p in enumerate(plans):
        n = p.nums_filters
        w0[i * mx[0]:i * mx[0] + n[0]] = p.w0
        b0[i * mx[0]:i * mx[0] + n[0]] = p.b0
        for l in range(4):
            dw[l][i * mx[l]:i * mx[l] + n[l], 0] = p.dw[l]
            pw[l][i * mx[l + 1]:i * mx[l + 1] + n[l + 1], :n[l], 0, 0] = p.pw[l]
            pb[l][i * mx[l + 1]:i * mx[l + 1] + n[l + 1]] = p.pb[l]
        ro[i, :n[4]] = np.asarray(p.readout).transpose(2, 0, 1)
        bias[i] = p.readout_bias
    t = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    w0, b0, ro, bias = t(w0), t(b0), t(ro), t(bias)
    dw, pw, pb = [t(a) for a in dw], [t(a) for a in pw], [t(a) for a in pb]
    # Image chunks: the layer-0 map of all models (and its padded copy) must fit ~6 GB.
    per_image = m * mx[0] * 115 * 115 * 4 * 3
    chunk = max(1, int(6e9 // per_image))

    def forward_chunk(x):
        h = F.relu(F.conv2d(x, w0, b0, padding=2))
        for l in range(4):
            h = F.pad(h, (1, 2, 1, 2) if l < 2 else (2, 2, 2, 2))
            h = F.conv2d(h, dw[l], stride=2 if l < 2 else 1, groups=m * mx[l])
            h = F.relu(F.conv2d(h, pw[l], pb[l], groups=m))
        return torch.einsum("nmchw,mchw->nm", h.reshape(h.shape[0], m, mx[4], 28, 28), ro) + bias

    return forward_chunk, chunk, mx


# --------------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import compactcortex as cc
    from compactcortex.engine.cuda import cuda_available, cuda_status

    dry = args.cpu_dry_run
    status = cuda_status()
    if not dry:
        if not torch.cuda.is_available():
            print(f"PyTorch sees no CUDA device (torch {torch.__version__}); nothing to compare on a GPU.")
            return 2
        if not cuda_available():
            print(f"The compactcortex CUDA engine cannot run: {status}")
            return 2
    device = torch.device("cpu" if dry else "cuda")
    sync = (lambda: None) if dry else torch.cuda.synchronize
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    failed: dict[str, str] = {}
    settings: list[dict[str, Any]] = []
    rng = np.random.default_rng(args.seed)

    def engine(plans, workspace_mb=args.workspace_mb, checked=False, single=True):
        if dry:  # stand-in: the CPU engine on CPU tensors
            pred = cc.Predictor(plans) if single else cc.PopulationPredictor(plans)
            return lambda x: pred.predict(x)
        make = cc.Predictor if single else cc.PopulationPredictor
        pred = make(plans, device="cuda", workspace_mb=workspace_mb)
        return lambda x, out=None: pred.predict(x, out=out, check_finite=checked)

    def with_tf32(fn):
        def call():
            old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
            try:
                return fn()
            finally:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old
        return call

    def inference(fn):
        def call():
            with torch.inference_mode():
                return fn()
        return call

    def single(batch: int) -> dict[str, Any]:
        """One model at batch ``batch``: the engine (and its variants) against PyTorch."""
        x = torch.from_numpy(common.random_images(rng, batch, nchw=True)).to(device)
        with torch.inference_mode():
            ref = to_numpy(model64(x.double())).reshape(batch, 1)
        out = None if dry else torch.empty(batch, device=device)
        comps: dict[str, Runner] = {}
        try:
            run = engine(plan)
            comps["engine"] = Runner(lambda: run(x, out) if not dry else run(x), info={"workspace_mb": args.workspace_mb})
            if not dry:
                run_c = engine(plan, checked=True)
                comps["engine_checked"] = Runner(lambda: run_c(x, out), info={"check_finite": True})
                if batch > 1:
                    for ws in (64, 1024):
                        r = engine(plan, workspace_mb=ws)
                        comps[f"engine_ws{ws}"] = Runner(lambda r=r: r(x, out), info={"workspace_mb": ws})
        except Exception as e:
            failed[f"single_b{batch}/engine"] = common.error_text(e)
        comps["torch_eager"] = Runner(inference(lambda: model(x)), info={"tf32": False})
        if not args.no_tf32 and not dry:
            comps["torch_eager_tf32"] = Runner(with_tf32(inference(lambda: model(x))), info={"tf32": True})
        if compiled is not None:
            comps["torch_compile"] = Runner(inference(lambda: compiled(x)), info={"mode": "default", "tf32": False})
        s = run_setting(f"single_b{batch}", comps, ref, batch, batch, 1, args.rounds, sync, args.seed, failed)
        s["model"] = model_info
        return s

    def population(count: int) -> dict[str, Any]:
        """``count`` random published-like models on ``--images`` images."""
        filters, how = common.published_like_filters(count, args.seed + count)
        models = [random_published_like_model(f, seed=i).float() for i, f in enumerate(filters)]
        plans = [cc.compile(m) for m in models]
        models = [m.to(device).eval() for m in models]
        n = args.images
        x = torch.from_numpy(common.random_images(rng, n, nchw=True)).to(device)
        rows = min(REF_IMAGES, n)
        with torch.inference_mode():
            xr = x[:rows].double()
            ref = np.stack([to_numpy(m.double()(xr)) for m in models], axis=1)
            models = [m.float() for m in models]
        comps: dict[str, Runner] = {}
        try:
            run = engine(plans, single=False)
            out = None if dry else torch.empty((n, count), device=device)
            comps["engine"] = Runner(lambda: run(x, out) if not dry else run(x), info={"workspace_mb": args.workspace_mb})
        except Exception as e:
            failed[f"population_{count}/engine"] = common.error_text(e)

        def loop():
            return torch.stack([m(x) for m in models], dim=1)

        comps["torch_loop"] = Runner(inference(loop), info={"tf32": False})
        fwd, chunk, mx = grouped_network(torch, plans, device)

        def grouped(f=fwd):
            return torch.cat([f(x[i:i + chunk]) for i in range(0, n, chunk)], dim=0)

        comps["torch_grouped"] = Runner(inference(grouped), info={"tf32": False, "image_chunk": chunk,
                                                                 "padded_filters": mx})
        if args.compile_population and not args.no_compile:
            cf = torch.compile(fwd)
            comps["torch_compile_grouped"] = Runner(inference(lambda: grouped(cf)), info={"mode": "default"})
        s = run_setting(f"population_{count}", comps, ref, rows, n, count, args.population_rounds, sync,
                        args.seed, failed)
        s["filters"] = {"how": how, "total_macs_per_image": int(sum(p.macs_per_image() for p in plans)),
                        "list": [list(f) for f in filters]}
        return s

    model, model_info = common.model_or_random(args.model)
    plan = cc.compile(model)
    model_info["macs_per_image"] = plan.macs_per_image()
    model = model.to(device).eval()
    model64 = common.model_or_random(args.model)[0].double().to(device).eval()
    compiled = None if args.no_compile else torch.compile(model)
    # Each setting's tensors live in its function, so they are freed before the next one.
    for batch in (1, args.batch):
        settings.append(single(batch))
        write(args, status, settings, failed, final=False)
    for count in args.population_sizes:
        settings.append(population(count))
        write(args, status, settings, failed, final=False)
        if not dry:
            torch.cuda.empty_cache()

    write(args, status, settings, failed, final=True)
    return 0


def write(args, status: str, settings: list, failed: dict, final: bool) -> None:
    """Write the results so far (atomically): after every setting, so a run cut short keeps them."""
    import torch

    dry = args.cpu_dry_run
    machine = common.machine_info(
        torch_cuda=getattr(torch.version, "cuda", None),
        cudnn=torch.backends.cudnn.version() if not dry else None,
        gpu=torch.cuda.get_device_name(0) if not dry else None,
        compactcortex_cuda_status=status)
    result = {
        "benchmark": "bench_cuda", "dry_run": dry, "time_utc": common.utc_now(),
        "machine": machine, "args": common.args_dict(args),
        "settings": settings, "failed": failed, "complete": final,
    }
    targets = [args.out]
    if final:
        print("\n" + format_table(settings))
        if failed:
            print("\nFailed competitors:\n" + "\n".join(f"  {k}: {v[:300]}" for k, v in failed.items()))
        if args.out == common.RESULTS / "bench_cuda_latest.json" and not dry:
            targets.append(common.RESULTS / f"bench_cuda_{common.utc_stamp()}.json")
    for target in targets:
        common.write_json(target, result)
    if final:
        print(f"JSON: {', '.join(str(t) for t in targets)}")


def format_table(settings: list[dict[str, Any]]) -> str:
    lines = [f"{'setting':16s} {'competitor':24s} {'ms/call':>10s} {'images/s':>12s} {'predictions/s':>14s} "
             f"{'engine x':>9s} {'max rel err':>11s}"]
    for s in settings:
        for cname, r in s["competitors"].items():
            if "median_s" not in r:
                continue
            ratio = s["ratios"].get(f"engine_vs_{cname}")
            lines.append(f"{s['name']:16s} {cname:24s} {r['ms_per_call']:10.3f} {r['images_per_s']:12.1f} "
                         f"{r['predictions_per_s']:14.1f} {'' if ratio is None else f'{ratio:9.2f}':>9s} "
                         f"{r['max_rel_error_vs_float64']:11.1e}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
