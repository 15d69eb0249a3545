"""``compactcortex bench``: time the engine against PyTorch eager."""
from __future__ import annotations

import argparse

from ..constants import PUBLISHED_FILTERS
from pathlib import Path

from .args import THREADS, int_arg


def register(sub) -> None:
    be = sub.add_parser(
        "bench", help="time the engine against PyTorch eager",
        description="Time the C++ engine against PyTorch eager float32 on random recentred images, "
                    "interleaved; prints median milliseconds per image and the speed-up (PyTorch time "
                    "/ engine time). Without --model, uses a random model with the published filter "
                    f"counts {PUBLISHED_FILTERS}. For ONNX Runtime, OpenVINO and torch.compile, run "
                    "benchmarks/bench_inference.py.")
    be.add_argument("--model", help="an authors' .pt file (default: random published-size model)")
    be.add_argument("--threads", type=int_arg(1, THREADS), nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    be.add_argument("--batch", type=int_arg(1, 100_000), nargs="+", default=[1, 64], help="batch sizes (default: 1 64)")
    be.add_argument("--rounds", type=int_arg(1, 10_000), default=15, help="interleaved timing rounds (default: 15)")
    be.add_argument("--json", help="also write the results to this JSON file")
    be.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from .. import __version__
    from ..files import write_json
    from ..bench import compare_with_torch
    from ..models.random import random_published_like_model
    from ..engine.compile import compile

    if args.model:
        from ..model_files import load_plan
        from ..models.published import load_published

        if Path(args.model).suffix != ".pt":
            raise ValueError("bench --model takes an authors' .pt file (the torch side needs the module)")
        model = load_published(args.model)
        plan = load_plan(args.model)
        name = args.model
    else:
        model = random_published_like_model(PUBLISHED_FILTERS)
        plan = compile(model)
        name = f"random model with the published filter counts {PUBLISHED_FILTERS}"
    print(f"model: {name}\nfilters {plan.nums_filters}, {plan.num_parameters():,} weights, "
          f"{plan.macs_per_image() / 1e6:.1f}M multiply-adds per image")
    results = []
    print(f"{'threads':>7} {'batch':>5} {'engine ms/img':>14} {'torch ms/img':>13} {'speed-up':>9} {'max rel err':>12}")
    for threads in args.threads:
        for batch in args.batch:
            r = compare_with_torch(model, plan, threads, batch, args.rounds)
            results.append(r)
            print(f"{threads:>7} {batch:>5} {r['ms_per_image']['engine']:>14.3f} "
                  f"{r['ms_per_image']['torch_eager']:>13.3f} {r['speedup_vs_torch_eager']:>8.2f}x "
                  f"{r['max_rel_error_vs_torch']:>12.1e}")
    print(f"engine kernels: {results[0]['isa']}; speed-up = PyTorch eager time / engine time, medians of "
          f"{args.rounds} interleaved rounds")
    if args.json:
        write_json(args.json, {"version": __version__, "model": name, "nums_filters": plan.nums_filters,
                               "results": results})
        print(f"results -> {args.json}")
    return 0
