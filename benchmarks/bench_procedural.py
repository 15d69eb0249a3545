"""Speed of procedural image generation and of the digital population's ground truth, on one core.

What it measures, in one process with BLAS/OpenMP limited to one thread (set before numpy is
imported):

* ``procedural``: images per second of ``procedural(n, seed, start)`` for the default mix and for
  each image kind alone, over R rounds of fresh images (``start`` advances each round); the first
  call of a seed, which builds its texture bank, is timed separately;
* ``digital``: the time to build the default population (``digital_population()``: 32 neurons,
  1200 images, calibration included) and the images per second of ``rates()`` on fresh images.

Reported per row: median and best images/s over the rounds, by wall clock, plus the median by
process CPU time (less sensitive to other load on a shared machine). Nothing here asserts on
timings. Results go to ``benchmarks/results/bench_procedural_latest.json`` (written atomically).

Run it from the repository root::

    python benchmarks/bench_procedural.py            # about a minute
    python benchmarks/bench_procedural.py --quick    # a few seconds
"""
from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"  # one core: must precede the numpy import

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import common  # noqa: E402
from compactcortex.data.digital import digital_population  # noqa: E402
from compactcortex.data.procedural import KINDS, procedural  # noqa: E402

RESULTS = common.RESULTS / "bench_procedural_latest.json"


def timed_rounds(run: Callable[[int], None], n_items: int, rounds: int) -> dict[str, float]:
    """Items per second of ``run(round)`` over ``rounds`` calls: wall-clock median and best, CPU median."""
    wall, cpu = [], []
    for r in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        run(r)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return {"items": n_items, "rounds": rounds,
            "per_s_median": n_items / statistics.median(wall), "per_s_best": n_items / min(wall),
            "per_s_cpu_median": n_items / statistics.median(cpu)}


def bench_procedural(n: int, rounds: int, seed: int) -> dict[str, Any]:
    """Images/s of the default mix and of each kind; the first call (texture bank) separately."""
    t0 = time.perf_counter()
    procedural(1, seed)
    rows: dict[str, Any] = {"first_call_s": time.perf_counter() - t0}
    rows["mix"] = timed_rounds(lambda r: procedural(n, seed, start=(r + 1) * n), n, rounds)
    per_kind = max(n // 4, 1)
    for kind in KINDS:
        rows[kind] = timed_rounds(lambda r, k=kind: procedural(per_kind, seed, start=r * per_kind, kinds=(k,)),
                                  per_kind, max(rounds // 2, 1))
    return rows


def bench_digital(n_neurons: int, n_images: int, rate_images: int, rounds: int) -> dict[str, Any]:
    """Build time of a population and images/s of its rates() on fresh procedural images."""
    t0 = time.perf_counter()
    pop = digital_population(n_neurons, n_images)
    build_s = time.perf_counter() - t0
    fresh = procedural(rate_images * rounds, 123)
    rates = timed_rounds(lambda r: pop.rates(fresh[r * rate_images:(r + 1) * rate_images]), rate_images, rounds)
    return {"n_neurons": n_neurons, "n_images": n_images, "build_s": build_s, "rates": rates}


def print_table(result: dict[str, Any]) -> None:
    proc, dig = result["procedural"], result["digital"]
    print(f"{'what':<34}{'items':>7}{'median/s':>11}{'best/s':>10}{'cpu/s':>10}")
    rows = [(f"procedural {k}", v) for k, v in proc.items() if isinstance(v, dict)]
    rows.append((f"digital rates ({dig['n_neurons']} neurons)", dig["rates"]))
    for name, r in rows:
        print(f"{name:<34}{r['items']:>7}{r['per_s_median']:>11.0f}{r['per_s_best']:>10.0f}"
              f"{r['per_s_cpu_median']:>10.0f}")
    print(f"procedural first call (texture bank): {proc['first_call_s']:.3f} s")
    print(f"digital_population({dig['n_neurons']}, {dig['n_images']}) build: {dig['build_s']:.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000, help="images per timing round of the default mix")
    parser.add_argument("--rounds", type=int, default=5, help="timing rounds per row")
    parser.add_argument("--neurons", type=int, default=32, help="neurons of the digital population")
    parser.add_argument("--population-images", type=int, default=1200, help="images of the digital population")
    parser.add_argument("--rate-images", type=int, default=1000, help="fresh images per rates() round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.rounds, args.population_images, args.rate_images = 400, 3, 200, 100
    load_before = common.load_average()
    result = {
        "benchmark": "bench_procedural",
        "utc": common.utc_now(),
        "threads": 1,
        "args": common.args_dict(args),
        "procedural": bench_procedural(args.images, args.rounds, args.seed),
        "digital": bench_digital(args.neurons, args.population_images, args.rate_images, args.rounds),
        "machine": common.machine_info(loadavg=common.load_average(), loadavg_before=load_before),
    }
    print_table(result)
    common.write_json(args.out, result)
    print(f"JSON: {args.out}")


if __name__ == "__main__":
    main()
