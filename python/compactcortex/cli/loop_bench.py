"""``compactcortex loop-bench``: simulate a closed-loop experiment (engine vs PyTorch)."""
from __future__ import annotations

import argparse

from ..constants import PUBLISHED_FILTERS

from .args import THREADS, float_arg, int_arg


def register(sub) -> None:
    lb = sub.add_parser(
        "loop-bench", help="simulate a closed-loop experiment (engine vs PyTorch)",
        description="Simulate a closed loop: at --rate Hz (deadline 1/rate s) predict every neuron's "
                    "response to a pool of candidate images (112x112 procedural images) and choose each "
                    "neuron's best; report latency percentiles (ms), missed deadlines, and the largest pool "
                    "per trial that meets the deadline at p99, for the engine and PyTorch eager.")
    lb.add_argument("--data", help="published data folder (with --session); default: random models")
    lb.add_argument("--session", default="190923")
    lb.add_argument("--random", type=int_arg(1, 100_000), default=33, help="number of random models without --data")
    lb.add_argument("--rate", type=float_arg(0, 10_000, above=True), default=2.0, help="trials per second (default 2)")
    lb.add_argument("--pool", type=int_arg(1, 1_000_000), default=16, help="candidate images per trial (default 16)")
    lb.add_argument("--trials", type=int_arg(1, 10_000_000), default=10)
    lb.add_argument("--threads", type=int_arg(1, THREADS), default=2)
    lb.add_argument("--spin-ms", type=float_arg(0, 10_000), default=0.2,
                    help="engine workers poll this long between calls before sleeping (default 0.2; above "
                         "1000/rate keeps them hot between trials, at the cost of that CPU time)")
    lb.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    lb.add_argument("--json", help="write the results to this file")
    lb.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..files import write_json
    from ..stimulus_loop import loop_benchmark

    if args.data:
        from ..models.published import load_published_session

        models = load_published_session(args.data, args.session)
        source = f"published models of session {args.session}"
    else:
        from ..models.random import random_published_like_model

        models = [random_published_like_model(seed=i) for i in range(args.random)]
        source = f"{args.random} random models with the published filter counts {PUBLISHED_FILTERS}"
    print(f"{source}: {len(models)} neurons; {args.rate:g} Hz -> {1e3 / args.rate:.0f} ms per trial")
    res = loop_benchmark(models, args.rate, args.pool, args.trials, args.threads, not args.no_torch,
                         spin_ms=args.spin_ms)
    if args.json:
        write_json(args.json, {"source": source, **res})
    return 0
