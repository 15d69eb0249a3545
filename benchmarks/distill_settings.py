"""How well one distillation setting fits a published model: the check behind distill's defaults.

A fresh student (``--filters`` per layer) is distilled for ``--steps`` batches from the published
compact model of ``--session`` neuron ``--neuron`` (run by the C++ engine), on the session's
fit-half images mixed with procedural images, at learning rate ``--lr``; the readout weights get
``lr / sqrt(fan-in)`` (``--readout-lr auto``, the package default), ``lr`` (``same``: the rule
before 2026-11-27) or a given value. Printed (one JSON line) and appended to
``benchmarks/results/distill_settings.jsonl``: the Pearson r of the student with the teacher on
the held-out test-half images, the final training loss (MSE in teacher-SD units) and seconds.

    python benchmarks/distill_settings.py --neuron 0 --lr 1e-3 --steps 1200
    python benchmarks/distill_settings.py --neuron 0 --lr 2e-3 --readout-lr same --steps 1200

``--threads`` 1 by default; ``--backend torch`` trains in PyTorch instead of the C++ kernels.
24 filters x 1200 steps: ~5 min on one thread in PyTorch.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import common
from compactcortex.fit import ImageStream, fine_tune
from compactcortex.models.compact import CompactModel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--session", default="190923")
    ap.add_argument("--neuron", type=int, default=0)
    ap.add_argument("--filters", type=int, default=24)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--readout-lr", default="auto", help="auto (lr/sqrt(fan-in)), same (= lr) or a number")
    ap.add_argument("--procedural-fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=("engine", "torch"), default="engine",
                    help="what the student trains on (default engine: the C++ training kernels)")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    task = common.published_neuron(a.data, a.session, a.neuron, threads=1)
    if a.readout_lr == "auto":
        readout_lr = None
    elif a.readout_lr == "same":
        readout_lr = a.lr
    else:
        readout_lr = float(a.readout_lr)
    torch.manual_seed(a.seed)
    student = CompactModel((a.filters,) * 5)
    t = time.perf_counter()
    info = fine_tune(student, common.EngineTeacher(task.model, 1), None,
                     ImageStream(task.fit, a.batch, a.procedural_fraction, a.seed), a.steps, lr=a.lr,
                     desc=f"distil neuron {a.neuron}", init_bias=True, readout_lr=readout_lr, backend=a.backend)
    row = {**common.args_dict(a), "r_teacher": task.r_teacher(student),
           "final_loss": info["final_loss"], "seconds": time.perf_counter() - t}
    print(json.dumps(row))
    out = common.RESULTS / "distill_settings.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a") as f:  # one line per run, appended: a log, not a file to replace
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
