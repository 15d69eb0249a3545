"""``compactcortex data``: data sets: a digital V4 population."""
from __future__ import annotations

import argparse

import numpy as np

from .args import deprecated_alias, int_arg


def register(sub) -> None:
    da = sub.add_parser("data", help="data sets").add_subparsers(dest="data_command", required=True)
    for name, fn in (("digital", run), ("synth", deprecated_alias(run, "data synth", "data digital"))):
        sy = da.add_parser(
            name, help="write a digital V4 population" if name == "digital" else "deprecated: use 'data digital'",
            description="Write a digital V4 population in the published data layout: OUT/images/images_NAME.zip "
                        "(PNG), OUT/responses_repeat_averaged and OUT/responses_raw (spike counts per 100 ms bin; "
                        "raw trials NaN-padded), and OUT/digital/NAME.json (the ground-truth neurons).")
        sy.add_argument("--out", required=True, help="output folder")
        sy.add_argument("--neurons", type=int_arg(1, 100_000), default=32)
        sy.add_argument("--images", type=int_arg(1, 1_000_000), default=1200)
        sy.add_argument("--repeats", type=int_arg(1, 10_000), default=10, help="trials per image (at most)")
        sy.add_argument("--min-repeats", type=int_arg(1, 10_000), default=None, help="fewest trials per image (default: all equal)")
        sy.add_argument("--seed", type=int_arg(0, 2**32 - 1), default=0)
        sy.add_argument("--name", default="digital", help="session name (default: digital)")
        sy.set_defaults(fn=fn)


def run(args: argparse.Namespace) -> int:
    from ..data.digital import digital_population, save_digital_population

    pop = digital_population(args.neurons, args.images, args.repeats, args.seed, min_repeats=args.min_repeats)
    path = save_digital_population(pop, args.out, args.name)
    print(f"{args.neurons} model neurons x {args.images} images x up to {args.repeats} trials -> {args.out} "
          f"(session {args.name!r}; ground truth in {path}); median noise ceiling {np.median(pop.noise_ceiling):.2f}")
    return 0
