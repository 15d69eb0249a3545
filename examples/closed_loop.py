"""Simulate a closed-loop experiment: every trial, pick the next image for each neuron.

At ``--rate`` Hz (default 2 Hz: a 500 ms budget between trials) the loop predicts all neurons of
a session for a pool of candidate images and chooses, per neuron, the candidate with the largest
predicted response. It reports missed deadlines and latency percentiles, and searches the largest
pool per trial whose p99 latency still meets the deadline — for the compactcortex engine and, for
comparison, PyTorch eager running the same models one after another.

    python examples/closed_loop.py                    # published models of session 190923
    python examples/closed_loop.py --trials 20 --rate 4

Models: the published compact models of ``--session`` in ../shared/data/v4, or, where that data
is absent, 33 random models with the published filter counts (48, 60, 3, 3, 3).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import compactcortex as cc
from compactcortex.files import write_json
from compactcortex.stimulus_loop import loop_benchmark

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "v4"


def load_models(session: str):
    try:
        return cc.load_published_session(DATA, session), f"published models of session {session}"
    except ValueError:
        from compactcortex.models.random import random_published_like_model

        return [random_published_like_model(seed=i) for i in range(33)], "33 random published-size models"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--session", default="190923")
    ap.add_argument("--rate", type=float, default=2.0, help="trials per second (deadline = 1/rate)")
    ap.add_argument("--pool", type=int, default=16,
                    help="candidate images per trial (default 16: 33 published models at 2 Hz fit ~20 here)")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--spin-ms", type=float, default=None,
                    help="engine workers poll this long between calls (default: 0.2; above 1000/rate keeps "
                         "them hot between trials, at the cost of that CPU time)")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    models, source = load_models(args.session)
    print(f"{source}: {len(models)} neurons; {args.rate:g} Hz -> {1e3 / args.rate:.0f} ms per trial")
    spin = {} if args.spin_ms is None else {"spin_ms": args.spin_ms}
    res = loop_benchmark(models, args.rate, args.pool, args.trials, args.threads, not args.no_torch, **spin)
    res["source"] = source
    if "torch_eager" in res:
        ratio = res["engine"]["largest_pool_at_p99"] / max(1, res["torch_eager"]["largest_pool_at_p99"])
        print(f"largest pool, engine / PyTorch: {ratio:.1f}x")
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
