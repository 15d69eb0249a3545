"""The closed loop in silico: active selection (ensemble disagreement) vs random selection.

A digital V4 population (``--neurons`` ground-truth model neurons, Poisson trials) is recorded
by a ``Rig``; ``compactcortex.fit.closed_loop`` records ``--initial`` random images of a
candidate pool of ``--candidates`` procedural images, then ``--rounds`` rounds of
``--per-round`` images chosen actively or at random, refitting the teacher each round (from
scratch: ``fit_teacher`` with ``--members`` members and ``--epochs`` epochs; or a transfer
teacher with ``--backbone``). Both rules see the same candidates, the same initial images and
the same number of recorded images; accuracy is the median over neurons of the squared
correlation with the true rates on ``--fresh`` images never recorded. Repeated for ``--seeds``.

    python benchmarks/closed_loop.py --seeds 0 1 2 --threads 2
Results: ``benchmarks/results/closed_loop.json`` and ``closed_loop.png`` (rewritten after each run).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

import common
from compactcortex.data.digital import digital_population
from compactcortex.data.procedural import procedural
from compactcortex.fit import TrainConfig, fit_teacher
from compactcortex.fit.closed_loop import Rig, closed_loop
from compactcortex.plots.reports import plot_closed_loop


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--neurons", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=2000)
    ap.add_argument("--fresh", type=int, default=300)
    ap.add_argument("--initial", type=int, default=200)
    ap.add_argument("--per-round", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--members", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--backbone", default=None, help="a .keras shared compact model: transfer teacher instead")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=common.RESULTS / "closed_loop.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    def fit(session, seed):
        idx = np.arange(session.num_images)
        if args.backbone:
            from compactcortex.fit import fit_transfer_teacher

            return fit_transfer_teacher(session, args.backbone, args.members, idx, seed=seed, progress=False)
        return fit_teacher(session, args.members, idx, config=TrainConfig(epochs=args.epochs, seed=seed),
                           progress=False)

    result = {"machine": common.machine_info(), "args": {k: str(v) for k, v in vars(args).items()},
              "runs": {"active": [], "random": []}}
    for seed in args.seeds:
        neurons = digital_population(args.neurons, 2, seed=seed).neurons  # the ground truth of this seed
        candidates = procedural(args.candidates, seed + 5000)
        fresh = procedural(args.fresh, seed + 9000)
        for select in ("active", "random"):
            budget = args.initial + args.rounds * args.per_round
            rig = Rig(neurons.rates, budget, seed=seed)
            t0 = time.perf_counter()
            _, _, history = closed_loop(rig, args.rounds, args.per_round, candidates, lambda s: fit(s, seed), fresh,
                                        args.initial, args.repeats, select, seed=seed, progress=True)
            result["runs"][select].append(history)
            print(json.dumps({"seed": seed, "select": select, "s": round(time.perf_counter() - t0, 1),
                              "r2": [round(h["r2_truth_median"], 3) for h in history]}), flush=True)
            common.write_json(args.out, result)
        done = {k: v for k, v in result["runs"].items() if len(v) == len(result["runs"]["active"])}
        plot_closed_loop(done, args.out.with_suffix(".png"))
    final = {k: [h[-1]["r2_truth_median"] for h in v] for k, v in result["runs"].items()}
    print("final median r2 with the truth:", {k: np.round(v, 3).tolist() for k, v in final.items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
