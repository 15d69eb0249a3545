"""Labelling images with a transfer teacher: its trunk's maps on the C++ engine against PyTorch.

``compress --teacher fit`` labels a pool of 32,768 images with the teacher once; the teacher's
cost is its trunk's (layers 0-4 of a compact-architecture model; the readouts are a few small
products). Both paths of one teacher -- ``TransferTeacher`` with ``feature_engine`` (the
engine's ``features``: Winograd layer 0, fused rows) and without (PyTorch eager, float32) -- label
the same batches, interleaved in one process; reported: images per second, the ratio, and the
largest difference of the labels relative to their largest magnitude.

    python benchmarks/bench_teacher_labels.py --backbone shared_compact_200 --threads 2
    python benchmarks/bench_teacher_labels.py --backbone trunk.safetensors --threads 2
Results: ``benchmarks/results/teacher_labels.json``.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import torch

import common
from compactcortex.fit.transfer import resolve_backbone, use_engine
from compactcortex.models.image_tensor import to_tensor
from compactcortex.models.transfer import TransferTeacher


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--backbone", default="shared_compact_200", help="shared_compact_<N>, a .keras or trunk file")
    ap.add_argument("--neurons", type=int, default=33)
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=60.0, help="timing budget (at least 3 rounds)")
    ap.add_argument("--out", type=Path, default=common.RESULTS / "teacher_labels.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    trunk = resolve_backbone(args.backbone, args.data)
    torch.manual_seed(0)
    slow = TransferTeacher(trunk, args.neurons, args.members)
    with torch.no_grad():  # readouts of a plausible scale (their values do not change the cost)
        slow.mask.normal_(0, 0.05)
        slow.feature_weights.normal_(0, 0.05)
    fast = use_engine(TransferTeacher(trunk, args.neurons, args.members), args.threads)
    fast.load_state_dict(slow.state_dict())
    images = common.random_images(np.random.default_rng(0), args.batch).astype(np.float32)
    x = to_tensor(images)
    outs: dict[str, torch.Tensor] = {}

    def runner(name: str, teacher: TransferTeacher) -> common.Runner:
        def call() -> None:
            with torch.no_grad():
                outs[name] = teacher(x)
        return common.Runner(call)

    runners = {"engine": runner("engine", fast), "torch": runner("torch", slow)}
    for r in runners.values():
        common.warm_up(r, min_calls=1, min_s=0.0, max_calls=1)
    samples, failed = common.interleaved_rounds(runners, None, random.Random(0), seconds=args.seconds)
    med = common.medians(samples)
    ref = outs["torch"].double()
    err = float((outs["engine"].double() - ref).abs().max() / ref.abs().max())
    result = {
        "machine": common.machine_info(threads=args.threads), "command": common.command_line(),
        "backbone": args.backbone, "trunk_filters": list(trunk.nums_filters), "batch": args.batch,
        "neurons": args.neurons, "members": args.members, "samples": {k: len(v) for k, v in samples.items()},
        "images_per_s": {k: args.batch / v for k, v in med.items()},
        "engine_speedup": med["torch"] / med["engine"], "max_rel_error": err, "failed": failed,
    }
    common.write_json(args.out, result)
    print(f"trunk {trunk.nums_filters}, batch {args.batch}, {args.threads} threads: engine "
          f"{result['images_per_s']['engine']:.1f} img/s, torch {result['images_per_s']['torch']:.1f} img/s, "
          f"ratio {result['engine_speedup']:.2f}x; labels differ by {err:.2e} of their largest magnitude")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
