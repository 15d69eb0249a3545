"""Latency of one image through the engine when calls come with gaps, as in a stimulus loop.

A rig calls ``predict`` on one new image every few hundred ms. Between calls the engine's worker
threads poll for ``spin_ms`` and then sleep; on a virtual machine a CPU that slept runs the next
call slowly. This script measures, per call, the latency of batch 1 after a gap of ``--gap-ms``
for: 1 thread, 2 threads with the default ``spin_ms`` (0.2 ms), and 2 threads with ``spin_ms``
above the gap (the workers stay hot, at the cost of that CPU time).

Variants run in blocks, interleaved round by round; each block builds its predictor and drops it
at the end, so no variant's polling threads run during another's block. Only the engine runs
(a polling engine would take a core from a peer). Run from the repository root::

    python benchmarks/bench_latency.py [--gap-ms 10] [--calls 40] [--rounds 5]

Results: ``benchmarks/results/bench_latency_<UTC timestamp>.json`` (every latency, seconds).
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

import common
import compactcortex as cc


def variants(gap_ms: float) -> dict[str, dict]:
    return {"1 thread": {"threads": 1}, "2 threads": {"threads": 2},
            f"2 threads, spin_ms={2 * gap_ms:g}": {"threads": 2, "spin_ms": 2 * gap_ms}}


def block(plan: cc.Plan, settings: dict, image: np.ndarray, calls: int, gap_s: float) -> list[float]:
    """Latencies (s) of ``calls`` batch-1 calls, each after ``gap_s`` of idling."""
    pred = cc.Predictor(plan, **settings)
    out = np.empty(1, np.float32)
    pred.predict(image, out=out)  # warm-up
    latencies = []
    for _ in range(calls):
        time.sleep(gap_s)
        t0 = time.perf_counter()
        pred.predict(image, out=out)
        latencies.append(time.perf_counter() - t0)
    return latencies


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gap-ms", type=float, default=10.0, help="idle time before each call (ms)")
    ap.add_argument("--calls", type=int, default=40, help="calls per block")
    ap.add_argument("--rounds", type=int, default=5, help="blocks per variant, interleaved")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    model, model_info = common.model_or_random(common.published_model_path(common.DATA, "190923", 0))
    plan = cc.compile(model)
    image = common.random_images(np.random.default_rng(args.seed), 1)
    runs = variants(args.gap_ms)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    rng = random.Random(args.seed)
    for _ in range(args.rounds):
        for name in rng.sample(list(runs), len(runs)):
            samples[name] += block(plan, runs[name], image, args.calls, args.gap_ms / 1e3)
    print(f"batch 1 after {args.gap_ms:g} ms idle, {args.rounds} x {args.calls} calls per variant "
          f"({model_info.get('path') or model_info.get('source')}, engine isa {cc.Predictor(plan, threads=1).isa})")
    print(f"{'variant':<28} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'vs 1 thread':>11}")
    base = float(np.median(samples["1 thread"]))
    summary = {}
    for name, lat in samples.items():
        p50, p90, p99 = (float(np.percentile(lat, q)) for q in (50, 90, 99))
        summary[name] = {"settings": runs[name], "p50_s": p50, "p90_s": p90, "p99_s": p99,
                         "p50_vs_1_thread": p50 / base, "latencies_s": lat}
        print(f"{name:<28} {1e3 * p50:7.3f} {1e3 * p90:7.3f} {1e3 * p99:7.3f} {p50 / base:10.2f}x")
    path = common.write_json(common.RESULTS / f"bench_latency_{common.utc_stamp()}.json", {
        "command": common.command_line(), "args": common.args_dict(args), "model": model_info,
        "machine": common.machine_info(), "results": summary})
    print(f"JSON: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
