"""Pruning a neuron cut out of a population student: one pass of the paper's rule against several.

The student is a shared (population) student of ``--session`` (``benchmarks/population_distill.py``
or ``compactcortex compress``'s ``work/population_*.safetensors``); the published compact model
of each ``--neurons`` is that neuron's teacher. For each neuron, ``prune_paper`` (threshold
``--threshold``, layers 4..0, ``--steps`` re-training steps of batch 32 after each layer on the
teacher) runs with ``--rounds`` passes (e.g. ``1`` = the paper's single pass); printed per neuron
as one JSON line: the history (layer, filters, parameters, r with the teacher on the test-half
images after that layer), the compact / published parameter ratio, seconds.

    python benchmarks/prune_rounds.py --student POP.safetensors --neurons 0,1,2 --steps 100 --rounds 1
    python benchmarks/prune_rounds.py --student POP.safetensors --neurons 0,1 --steps 60 --rounds 3
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch

import common
import compactcortex as cc
from compactcortex.compress import prune_paper
from compactcortex.data import load_session
from compactcortex.fit.distill import ImageStream, fine_tune
from compactcortex.models.compact import CompactModel
from compactcortex.models.published import load_published_session


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--session", default="190923")
    ap.add_argument("--student", type=Path, required=True, help="population student with one output per neuron")
    ap.add_argument("--neurons", default="0,1,2")
    ap.add_argument("--steps", type=int, default=60, help="re-training steps after each pruned layer")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    shared = CompactModel.load(args.student)
    session = load_session(args.data, args.session)
    published = load_published_session(args.data, args.session)
    fit, test = session.images[session.fit_indices], session.images[session.test_indices]
    for k in (int(v) for v in args.neurons.split(",")):
        t = time.perf_counter()
        teacher = cc.Predictor(published[k], threads=args.threads)
        y_test = teacher.predict(test)

        def r_teacher(m: CompactModel) -> float:
            return common.pearson(cc.Predictor(m, threads=args.threads).predict(test), y_test)

        layers = itertools.cycle((4, 3, 2, 1, 0))

        def retrain(m: CompactModel, k=k) -> CompactModel:
            stream = ImageStream(fit, 32, 0.5, 1000 + 10 * k + next(layers))
            fine_tune(m, teacher, None, stream, args.steps, lr=args.lr, progress=False)
            return m

        compact, history = prune_paper(shared.single_output(k), fit, args.threshold, retrain=retrain,
                                       evaluate=r_teacher, threads=args.threads, rounds=args.rounds)
        print(json.dumps({"neuron": k, "rounds": args.rounds, "steps": args.steps,
                          "history": [(s.layer, s.nums_filters, s.num_parameters, round(s.accuracy, 3))
                                      for s in history],
                          "published_params": published[k].num_parameters(),
                          "ratio": compact.num_parameters() / published[k].num_parameters(),
                          "seconds": time.perf_counter() - t}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
