"""``compactcortex compress``: distil and prune a session's neurons into compact models."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..compress.recipe import BACKENDS
from ..compress.recipe import DEFAULT_BACKBONE_FILTERS, DEFAULT_MINUTES_PER_NEURON
from ..devices import DEVICE_HELP
from .args import THREADS, device_arg, float_arg, int_arg


def register(sub) -> None:
    co = sub.add_parser(
        "compress", help="distil and prune a session's neurons into compact models",
        description="Compress the neurons of a recorded session: distil them all at once into one shared "
                    "student from the teacher (on the session's fit-half images, shifted, and procedural "
                    "images), cut out and prune each neuron's compact model by the paper's rule with "
                    "re-training, and write OUT/neuron<k>.safetensors and .plan, OUT/summary.json (per "
                    "neuron: parameters, and on the test half r with the teacher, r and R2_ER with the "
                    "recordings) and OUT/r_vs_params.png. Rerunning with the same --out resumes.")
    co.add_argument("--data", required=True, help="a folder laid out like ../shared/data/v4 or a clone of the "
                                                 "authors' repository")
    co.add_argument("--session", required=True, help="session id, e.g. 190923")
    co.add_argument("--teacher", default="published",
                    help="'published' (the session's published compact models: the round trip), 'fit' "
                         "(fit a teacher to the fit half), or a saved teacher file (default: published)")
    co.add_argument("--backbone", default="auto",
                    help="with --teacher fit: the pretrained trunk the teacher's readouts are fitted on: 'auto' "
                         f"(the {DEFAULT_BACKBONE_FILTERS}-filter shared compact model under --data if there is one, else a teacher "
                         "from scratch), 'none' (from scratch), 'shared_compact_<N>', a .keras file, or a trunk "
                         "file of 'compactcortex trunk'")
    co.add_argument("--neurons", type=int_arg(0, 1_000_000), nargs="+", default=None, help="neuron indices (default: all)")
    co.add_argument("--minutes-per-neuron", type=float_arg(0, 1e6, above=True), default=None,
                    help="scale the training budget to about M minutes per neuron on 2 cores (the default recipe "
                         f"took {DEFAULT_MINUTES_PER_NEURON} for the 33 neurons of 190923)")
    co.add_argument("--other-session-images", action=argparse.BooleanOptionalAction, default=None,
                    help="distil and re-train also on the images of the other sessions under --data (near-copies of "
                         "this session's images removed; the teacher labels them); default: the recipe's (off)")
    co.add_argument("--threads", type=int_arg(1, THREADS), default=None, help="CPU threads (default: all available)")
    co.add_argument("--device", type=device_arg, default="cpu",
                    help=f"where the students train: {DEVICE_HELP}; default cpu (the C++ training kernels)")
    co.add_argument("--images-from", default=None,
                    help="another session whose images to use where SESSION has none here (e.g. 211022)")
    co.add_argument("--out", required=True, help="output folder (on storage every worker sees, for ray/slurm)")
    co.add_argument("--backend", choices=BACKENDS, default="local",
                    help="where the neurons run after stage 1: here (default), one Ray task each (extra [ray]), or "
                         "a SLURM job array through submitit (extra [slurm])")
    co.add_argument("--address", default=None, help="--backend ray: the cluster address (default: a running or new "
                                                     "local one)")
    co.add_argument("--cpus-per-task", type=int_arg(1, 4096), default=None, help="--backend ray/slurm: CPUs per neuron (default 1)")
    co.add_argument("--slurm-partition", default=None, help="--backend slurm: the partition")
    co.add_argument("--slurm-time-min", type=int_arg(1, 1_000_000), default=None, help="--backend slurm: the time limit per neuron (min)")
    co.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..compress import Recipe, compress_session

    slurm = {k: v for k, v in (("slurm_partition", args.slurm_partition), ("timeout_min", args.slurm_time_min))
             if v is not None}
    recipe = Recipe().scaled(args.minutes_per_neuron)
    if args.other_session_images is not None:
        recipe = replace(recipe, other_session_images=args.other_session_images)
    summary = compress_session(args.data, args.session, args.out, args.teacher, args.neurons,
                               recipe, args.threads, args.images_from,
                               args.backbone, backend=args.backend, address=args.address,
                               cpus_per_task=args.cpus_per_task, slurm=slurm, device=args.device)
    fmt = lambda v: "   n/a" if v is None else f"{v:6.3f}"  # noqa: E731
    print(f"\n{'neuron':>6} {'params':>7} {'published':>9} {'r teacher':>9} {'r rec':>6} {'r teach-rec':>11} "
          f"{'R2_ER':>6} {'teach':>6}  filters")
    for r in summary["neurons"]:
        print(f"{r['neuron']:>6} {r['compact_params']:>7,} {r['published_params'] or '-':>9} "
              f"{fmt(r['r_teacher_test']):>9} {fmt(r['r_test'])} {fmt(r['r_teacher_model_test']):>11} "
              f"{fmt(r['r2er_test'])} {fmt(r.get('r2er_teacher_test'))}  {tuple(r['compact_filters'])}")
    rt = [r["r_teacher_test"] for r in summary["neurons"] if r["r_teacher_test"] is not None]
    ratio = [r["compact_params"] / r["published_params"] for r in summary["neurons"] if r["published_params"]]
    print(f"median r with the teacher {np.median(rt):.3f}" if rt else "no r with the teacher")
    if ratio:
        print(f"median compact / published parameters {np.median(ratio):.2f}")
    print(f"elapsed {summary['elapsed_s']:.0f} s; summary: {Path(args.out) / 'summary.json'}")
    return 0
