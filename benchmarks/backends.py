"""Stage 2 of ``compress`` (the per-neuron work) on the local backend against Ray tasks.

Stage 1 (the shared student) is run once per output folder and not timed; then the same neurons
are compressed by ``run_neurons`` locally (one after another, all threads each) and on a local
Ray cluster (one task per neuron, ``--cpus-per-task`` CPUs each), alternating the order per
repeat. Run from the repository root::

    python benchmarks/backends.py [--neurons 0 1 2 3] [--minutes-per-neuron 0.25]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import common
from compactcortex.compress.backends import run_neurons
from compactcortex.compress import NeuronJob, Recipe, prepare_run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--session", default="190923")
    ap.add_argument("--neurons", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--minutes-per-neuron", type=float, default=0.25)
    ap.add_argument("--threads", type=int, default=2, help="CPUs in all (local: threads per neuron)")
    ap.add_argument("--cpus-per-task", type=int, default=1)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=args.threads, include_dashboard=False, configure_logging=False, log_to_driver=False)
    recipe = asdict(Recipe().scaled(args.minutes_per_neuron))
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("local", "ray"):
            base = NeuronJob(str(common.DATA), args.session, -1, str(Path(tmp) / backend),
                             neurons=tuple(args.neurons), recipe=recipe, threads=args.threads)
            prepare_run(base, progress=False)
            jobs = [replace(base, neuron=k) for k in args.neurons]
            t0 = time.perf_counter()
            run_neurons(jobs, backend, cpus_per_task=args.cpus_per_task, progress=False)
            seconds[backend] = time.perf_counter() - t0
            print(f"{backend}: {seconds[backend]:.1f} s for {len(jobs)} neurons", flush=True)
    ray.shutdown()
    speedup = seconds["local"] / seconds["ray"]
    print(f"ray / local speed-up of stage 2: {speedup:.2f}x ({args.threads} CPUs)")
    common.write_json(common.RESULTS / f"backends_{common.utc_stamp()}.json", {
        "command": common.command_line(), "args": common.args_dict(args), "seconds": seconds,
        "speedup_ray_vs_local": speedup, "machine": common.machine_info()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
