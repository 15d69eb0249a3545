"""Population distillation of a session's published models: held-out accuracy against steps.

All published compact models of ``--session`` are the teacher (one C++ PopulationPredictor);
one shared student (``--filters``, a readout row per neuron) is distilled from them on a pool of
``--pool`` images (the session's fit-half images, shifted, and procedural images; the teacher
runs once per pool image), by ``compactcortex.fit.distill_population``; with
``--other-session-images`` the natural half of the pool also draws from the data folder's other
sessions' images (near-copies of this session's removed: ``compactcortex.data.natural``), as the
recipe's ``other_session_images`` does. Every ``--every``
steps the student's Pearson r with each teacher on the session's test-half images is recorded.
For comparison, per-neuron distillation (``benchmarks/distill_settings.py``) reached r = 0.77
on neuron 0 after 2,400 steps of 16 images (24 filters).

    python benchmarks/population_distill.py --steps 2000 --every 250
    python benchmarks/population_distill.py --steps 2000 --every 250 --other-session-images
Results: ``benchmarks/results/population_distill_<session>.json`` (atomic, rewritten at each
evaluation); the student: ``benchmarks/results/population_<session>_<filters>.safetensors``.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import common
import compactcortex as cc
from compactcortex.data import load_session
from compactcortex.data.natural import other_session_images
from compactcortex.fit.distill import distill_population
from compactcortex.models.published import load_published_session
from compactcortex.models.image_tensor import to_tensor


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--session", default="190923")
    ap.add_argument("--filters", default="64,96,64,64,64")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pool", type=int, default=16384)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--other-session-images", action="store_true",
                    help="distil also on the other sessions' images of --data (near-copies of this session's removed)")
    args = ap.parse_args()
    if args.steps % args.every:
        ap.error("--every must divide --steps (the student is scored at its checkpoints)")
    torch.set_num_threads(args.threads)
    filters = tuple(int(v) for v in args.filters.split(","))
    out_dir = common.RESULTS
    tag = f"{args.session}_{'x'.join(map(str, filters))}_s{args.steps}_b{args.batch}_p{args.pool}_lr{args.lr:g}"
    tag += "_other" if args.other_session_images else ""
    session = load_session(args.data, args.session)
    images = session.images[session.fit_indices]
    if args.other_session_images:
        images = np.concatenate([images, other_session_images(args.data, session.images, exclude=[args.session])])
    teacher = cc.PopulationPredictor(load_published_session(args.data, args.session), threads=args.threads)
    test = session.images[session.test_indices]
    y_test = teacher.predict(test)
    x_test = to_tensor(test)
    res = {"benchmark": "population_distill", "settings": common.args_dict(args), "machine": common.machine_info(),
           "neurons": int(y_test.shape[1]), "test_images": len(test), "distillation_images": len(images), "curve": []}
    t0 = time.perf_counter()
    path = out_dir / f"population_distill_{tag}.json"

    def record(step: int, student) -> None:
        with torch.no_grad():
            ys = student(x_test).numpy()
        r = [common.pearson(ys[:, k], y_test[:, k]) for k in range(ys.shape[1])]
        res["curve"].append({"step": step, "seconds": time.perf_counter() - t0, "median_r": float(np.median(r)),
                             "quartiles_r": [float(q) for q in np.percentile(r, [25, 75])], "r": r})
        common.write_json(path, res)
        print(f"step {step}: median r {np.median(r):.3f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    student = distill_population(teacher, None, images, args.steps, args.batch,
                                 filters, args.pool, lr=args.lr, checkpoint=out_dir / f"population_{tag}.ckpt",
                                 callback=record, checkpoint_every=args.every)
    student.save(out_dir / f"population_{tag}.safetensors")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
