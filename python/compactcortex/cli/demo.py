"""``compactcortex demo``: the whole pipeline on the embedded digital V4 population (the main job)."""
from __future__ import annotations

import argparse
from dataclasses import Field, fields
from pathlib import Path

from ..demo import DemoConfig
from .args import THREADS, float_arg, int_arg

#: A tiny configuration for smoke tests (about a minute).
QUICK_DEMO = dict(neurons=2, population=6, test_images=60, initial_images=40, loop_rounds=1, images_per_round=20,
                  candidates=100, members=2, teacher_epochs=2, student_filters=6,
                  distill_steps=10, pool_size=64, batch=8, rounds=1, retrain_steps=4, final_steps=4, fresh_images=40)
_ZERO_OK = {"seed", "loop_rounds", "final_steps", "retrain_steps", "rounds"}  # the other counts must be >= 1


def _option_type(f: Field):
    """The argparse type of a DemoConfig field: bounded numbers."""
    if f.name == "threshold":
        return float_arg(0, 1, above=True)
    if f.type == "float":
        return float_arg(0, 1e3, above=True)
    if f.name == "threads":
        return int_arg(1, THREADS)
    return int_arg(0 if f.name in _ZERO_OK else 1, 2**32 - 1 if f.name == "seed" else 10_000_000)


def register(sub) -> None:
    de = sub.add_parser(
        "demo", help="the whole pipeline on the embedded digital V4 population (the main job)",
        description="Record a digital V4 population (ground-truth model neurons, Poisson trials) in silico "
                    "with the paper's adaptive closed loop (fit a teacher ensemble, record the candidate images its "
                    "members disagree on most, refit), distil the neurons with the highest noise ceiling at once into one shared "
                    "student, cut out and prune each one's compact model (the paper's rule in several passes, "
                    "re-training after each layer; the recipe of compactcortex compress), evaluate them (R2_ER on "
                    "held-out trials, r against the ground truth on fresh images), time the engine against "
                    "PyTorch, and write OUT/report.md, OUT/summary.json, PNG plots and the compact models "
                    "(.safetensors and .plan). Rerunning with the same --out resumes. About 3.5 minutes on 2 "
                    "cores with the defaults.")
    de.add_argument("--out", default="demo_out", help="report folder (default: demo_out)")
    de.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (about a minute)")
    for f in fields(DemoConfig):  # one option per field: its type, bounds and help from the field
        quick = f"; --quick: {QUICK_DEMO[f.name]}" if f.name in QUICK_DEMO else ""
        de.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=_option_type(f), default=None,
                        help=f"{f.metadata['help']} (default: {f.default}{quick})")
    de.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    cfg = DemoConfig(**QUICK_DEMO) if args.quick else DemoConfig()
    for f in fields(DemoConfig):
        if getattr(args, f.name, None) is not None:
            setattr(cfg, f.name, getattr(args, f.name))
    summary = run_demo(args.out, cfg)
    print(f"\n{'neuron':>6} {'compact params':>14} {'R2_ER teacher':>13} {'R2_ER compact':>13} {'r vs truth':>10}")
    for r in summary["neurons"]:
        print(f"{r['neuron']:>6} {r['compact_params']:>14,} {r['r2er_teacher']:>13.2f} {r['r2er_compact']:>13.2f} "
              f"{r['r_compact_vs_truth']:>10.2f}")
    print(f"engine vs PyTorch eager: {summary['engine_speedup_vs_torch']:.1f}x; elapsed {summary['elapsed_s']:.0f} s")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0
