"""Round trip on real weights: distil a published compact model, prune the student, compare.

The published compact model of ``--session`` neuron ``--neuron`` (default 190923 neuron 0) is
the teacher (run by the C++ engine during training; its outputs agree with PyTorch to ~1e-6).
A fresh student with ``--filters`` filters per layer is distilled from it on the session's
fit-half images mixed half and half with procedural images (``compactcortex.fit.distill``;
checkpointed in ``benchmarks/results/``, so an interrupted or repeated run resumes), then pruned
by the paper's procedure (``prune_paper``, threshold ``--threshold``, layers 4, 3, 2, 1, 0, each
followed by ``--retrain-steps`` steps of re-training on the teacher). Reported, on the session's
held-out test-half images (real images, predictions by the C++ engine):

* parameters of the published model, the distilled student and the compact (pruned) student;
* the Pearson correlation of the teacher's, the distilled student's and the compact student's
  predictions with the teacher's predictions and with the recorded responses of the neuron;
* the pruning history (filters, parameters, variance explained, correlation after each layer).

The paper distils into 100-filter students (as here with ``--filters 100``) for many thousands of
steps on GPUs; on a 2-core CPU a 100-filter step (16 images) takes ~1.5 s, so the defaults are
smaller (32 filters, 1200 steps, batch 16, distill's learning rate; see ``--help``). The
distillation checkpoint is named by its settings and shared with ``benchmarks/bench_pruning.py``.
Results: ``benchmarks/results/roundtrip_published_latest.json`` (atomic); the compact student is
saved as ``benchmarks/results/roundtrip_compact_<...>.safetensors``.

    python benchmarks/roundtrip_published.py                      # defaults, ~10 min of CPU
    python benchmarks/roundtrip_published.py --filters 100 --steps 800   # ~25 min
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

import common
from compactcortex.compress import prune_paper
from compactcortex.fit import ImageStream, fine_tune
from compactcortex.models.compact import CompactModel

RETRAIN_SEED = 1000  # image streams of the re-training after layer l use seed RETRAIN_SEED + l


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head benchmarks/roundtrip_published.py).")
    ap.add_argument("--data", type=Path, default=common.DATA, help="V4 data folder (default ../shared/data/v4)")
    ap.add_argument("--session", default="190923")
    ap.add_argument("--neuron", type=int, default=0)
    ap.add_argument("--filters", type=common.parse_filters, default=(32,) * 5,
                    help="student filters: N or n0,..,n4 (default 32; the paper: 100)")
    ap.add_argument("--steps", type=int, default=1200, help="distillation steps (default 1200)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3, help="distillation learning rate (default 1e-3, distill's)")
    ap.add_argument("--threshold", type=float, default=0.9, help="prune_paper threshold (default 0.9)")
    ap.add_argument("--retrain-steps", type=int, default=40, help="re-training steps after each layer (default 40)")
    ap.add_argument("--retrain-lr", type=float, default=3e-4, help="re-training learning rate (default 3e-4, fine_tune's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-threads", type=int, default=1, help="torch and engine threads for training (default 1)")
    ap.add_argument("--eval-threads", type=int, default=2)
    ap.add_argument("--outdir", type=Path, default=common.RESULTS)
    ap.add_argument("--quick", action="store_true", help="smoke run: 8 filters, 4 steps (writes *_quick.json)")
    args = ap.parse_args(argv)
    if args.quick:
        args.filters = (8,) * 5 if args.filters == (32,) * 5 else args.filters
        args.steps, args.retrain_steps, args.batch = 4, 2, 8
    torch.set_num_threads(args.train_threads)
    t_start = time.perf_counter()
    json_path = args.outdir / ("roundtrip_published_quick.json" if args.quick else "roundtrip_published_latest.json")

    task = common.published_neuron(args.data, args.session, args.neuron, args.eval_threads)
    published, fit, test = task.model, task.fit, task.test
    teacher = common.EngineTeacher(published, args.train_threads)

    results: dict[str, Any] = {
        "benchmark": "roundtrip_published", "status": "running", "quick": args.quick,
        "started_utc": common.utc_now(), "command": common.command_line(argv),
        "machine": common.machine_info(load_average_start=common.load_average()),
        "settings": common.args_dict(args),
        "teacher_file": str(task.path), "test_images": int(len(test)), "fit_images": int(len(fit)),
        "procedural_fraction": 0.5,
    }
    save = lambda: common.write_json(json_path, results)  # noqa: E731
    save()

    student, results["distill"] = common.distill_student(task, teacher, args.outdir, args.filters,
                                                         args.steps, args.batch, args.lr, args.seed)
    save()

    counter = {"layer": 0}

    def retrain(model: CompactModel) -> CompactModel:
        layer = (4, 3, 2, 1, 0)[counter["layer"]]
        counter["layer"] += 1
        stream = ImageStream(fit, args.batch, 0.5, RETRAIN_SEED + layer)
        fine_tune(model, teacher, None, stream, args.retrain_steps, lr=args.retrain_lr,
                  desc=f"retrain after layer {layer} {model.nums_filters}")
        return model

    t = time.perf_counter()
    compact, history = prune_paper(student, fit, threshold=args.threshold, retrain=retrain, evaluate=task.r_teacher,
                                   threads=args.train_threads)
    results["prune_seconds"] = time.perf_counter() - t
    results["prune_history"] = common.history_rows(history)
    f = "x".join(map(str, args.filters))
    saved = args.outdir / (f"roundtrip_compact_{args.session}_neuron{args.neuron}_f{f}_steps{args.steps}"
                           f"_thr{args.threshold:g}{'_quick' if args.quick else ''}.safetensors")
    compact.provenance = {**student.provenance, "pruned": {"threshold": args.threshold,
                                                           "retrain_steps": args.retrain_steps}}
    compact.save(saved)
    results["compact_file"] = str(saved)

    rows = {}
    for name, model, pred in (("teacher (published)", published, task.teacher_test),
                              ("distilled student", student, None), ("compact student", compact, None)):
        p = task.predict(model) if pred is None else pred
        rows[name] = {"nums_filters": list(model.nums_filters), "num_parameters": model.num_parameters(),
                      "r_teacher": common.pearson(p, task.teacher_test), "r_recorded": common.pearson(p, task.recorded)}
    results["models"] = rows
    results["compact_over_published_params"] = rows["compact student"]["num_parameters"] / published.num_parameters()
    results["status"] = "complete"
    results["seconds"] = time.perf_counter() - t_start
    results["machine"]["load_average_end"] = common.load_average()
    save()

    print(f"\nround trip: session {args.session} neuron {args.neuron}, student {args.filters}, "
          f"{args.steps} distillation steps, prune_paper threshold {args.threshold} with "
          f"{args.retrain_steps} re-training steps per layer; {len(test)} test-half images")
    print(f"{'model':>22s} {'filters':>24s} {'params':>7s} {'r teacher':>9s} {'r recorded':>10s}")
    for name, r in rows.items():
        print(f"{name:>22s} {str(tuple(r['nums_filters'])):>24s} {r['num_parameters']:7d} "
              f"{r['r_teacher']:9.4f} {r['r_recorded']:10.4f}")
    print("pruning history:")
    for s in results["prune_history"]:
        ex = "" if s["explained"] is None else f"explained {s['explained']:.3f}"
        print(f"  layer {s['layer']:>2d}  {str(tuple(s['nums_filters'])):>24s} {s['num_parameters']:7d} params  "
              f"r(teacher) {s['r_teacher']:.4f}  {ex}")
    print(f"compact / published parameters: {results['compact_over_published_params']:.3f}")
    print(f"results: {json_path}  ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
