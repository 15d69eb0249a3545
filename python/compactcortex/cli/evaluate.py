"""``compactcortex evaluate``: accuracy of a session's published models on its held-out images."""
from __future__ import annotations

import argparse

from .args import THREADS, int_arg


def register(sub) -> None:
    ev = sub.add_parser(
        "evaluate", help="accuracy of a session's published models on its held-out images",
        description="Run every published compact model of a session through the engine on the test "
                    "half of the session's images (the second half; the paper's split) and print, per "
                    "neuron, the Pearson r between predictions and repeat-averaged responses (spike "
                    "counts per 100 ms) and the noise-corrected R2_ER (Pospisil & Bair 2021) where "
                    "single-trial responses exist, and the medians.")
    ev.add_argument("--data", required=True,
                    help="a folder laid out like ../shared/data/v4 (compact_models/torch, images, "
                         "responses_repeat_averaged, responses_raw) or a clone of the authors' repository")
    ev.add_argument("--session", required=True, help="session id, e.g. 190923")
    ev.add_argument("--threads", type=int_arg(1, THREADS), default=None, help="engine threads (default: all CPUs available)")
    ev.add_argument("--json", help='also write {"session", "neurons": [{"neuron", "r", "r2er"}], "median_r", '
                                   '"median_r2er"} to this file')
    ev.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..files import write_json
    from ..evaluate import evaluate_published

    res = evaluate_published(args.data, args.session, threads=args.threads)
    fmt = lambda v: "   n/a" if v is None else f"{v:6.3f}"  # noqa: E731
    print(f"session {res['session']}: {len(res['neurons'])} published models, "
          f"{res['num_test_images']} test images (second half)")
    print(f"{'neuron':>6} {'r':>6} {'R2_ER':>6}")
    for n in res["neurons"]:
        print(f"{n['neuron']:>6} {fmt(n['r'])} {fmt(n['r2er'])}")
    print(f"{'median':>6} {fmt(res['median_r'])} {fmt(res['median_r2er'])}")
    if res["median_r2er"] is None:
        print("R2_ER needs single-trial responses (responses_raw), which this session lacks")
    if args.json:
        write_json(args.json, res)
        print(f"results -> {args.json}")
    return 0
