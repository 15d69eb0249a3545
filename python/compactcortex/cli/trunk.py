"""``compactcortex trunk``: train a trunk (shared core) on many sessions."""
from __future__ import annotations

import argparse
from pathlib import Path

from .args import THREADS, float_arg, int_arg


def register(sub) -> None:
    from ..fit.trunk_config import TrunkConfig

    d = TrunkConfig()  # the defaults are the config's, never restated here
    tr = sub.add_parser(
        "trunk", help="train a trunk (shared core) on many sessions: a backbone for teachers",
        description="Train one core with a factorised readout per neuron on the recordings of all --sessions "
                    "at once (each image scored against its own session's neurons), on the C++ training "
                    "kernels, keeping the epoch with the best median r on held-out images of every "
                    "session. The file serves --backbone FILE of compress --teacher fit. Checkpoints go "
                    "to OUT.work/; rerunning the same command resumes.")
    tr.add_argument("--data", required=True, help="a folder laid out like ../shared/data/v4")
    tr.add_argument("--sessions", required=True, nargs="+", help="the sessions to train on (each with images)")
    tr.add_argument("--out", required=True, help="the trunk file to write (safetensors)")
    tr.add_argument("--members", type=int_arg(1, 100), default=1, help="trunks with different seeds (default 1)")
    tr.add_argument("--threads", type=int_arg(1, THREADS), default=None, help="CPU threads (default: all available)")
    tr.add_argument("--filters", type=int_arg(1, 1024), nargs=5, default=None,
                    help=f"the core's filters n0..n4 (default {' '.join(map(str, d.nums_filters))})")
    tr.add_argument("--epochs", type=int_arg(1, 10_000), default=None, help=f"passes over the data (default {d.epochs})")
    tr.add_argument("--max-minutes", type=float_arg(0, 1e6, above=True), default=None,
                    help="stop each member after this much training time, keeping its best epoch")
    tr.add_argument("--seed", type=int_arg(0, 2**31 - 1), default=None, help=f"random seed (default {d.seed})")
    tr.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..data.session import load_session
    from ..fit.trunk import TrunkConfig, fit_trunk

    sessions = [load_session(args.data, s) for s in args.sessions]
    cfg = TrunkConfig(**{k: v for k, v in (("nums_filters", args.filters), ("epochs", args.epochs),
                                           ("max_minutes", args.max_minutes), ("seed", args.seed))
                         if v is not None})
    out = Path(args.out)
    ckpt = out.parent / f"{out.name}.work"
    _, info = fit_trunk(sessions, cfg, args.members, args.threads, ckpt, out)
    for k, m in enumerate(info["members"]):
        print(f"member {k}: held-out median r {m['held_out_median_r']:.3f} (epoch {m['best_epoch']}), "
              f"{m['minutes']:.1f} min")
    print(f"trunk of {sum(s.num_neurons for s in sessions)} neurons in {len(sessions)} sessions -> {out}")
    return 0
