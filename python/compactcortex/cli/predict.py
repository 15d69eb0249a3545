"""``compactcortex predict``: predict one model's responses to images."""
from __future__ import annotations

import argparse

import numpy as np

from .args import THREADS, int_arg


def register(sub) -> None:
    pr = sub.add_parser(
        "predict", help="predict one model's responses to images",
        description="Predict a compact model's response to each image with the C++ engine. "
                    "Images are 112x112 RGB; uint8 pixels are recentred by the dataset mean, float "
                    "arrays in a .npy are taken as already recentred. Output: a float32 .npy of "
                    "shape (N,) in the model's output units (the published models: spike counts "
                    "per 100 ms bin, up to an affine map).")
    pr.add_argument("--model", required=True, help="a Plan or CompactModel (.safetensors) or an authors' .pt file")
    pr.add_argument("--images", required=True,
                    help="a .npy of (N,112,112,3) or (N,3,112,112), a .zip of images, or a folder of images "
                         "(taken in sorted name order)")
    pr.add_argument("--out", required=True, help="output .npy, float32, shape (N,)")
    pr.add_argument("--threads", type=int_arg(1, THREADS), default=None, help="worker threads (default: all CPUs available)")
    pr.set_defaults(fn=run)


def run(args: argparse.Namespace) -> int:
    from ..files import atomic_path
    from ..data.image_files import read_images
    from ..engine.predictor import Predictor
    from ..model_files import load_plan

    plan = load_plan(args.model)
    images = read_images(args.images)
    pred = Predictor(plan, threads=args.threads)
    out = pred.predict(images)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out)
    print(f"{len(out)} predictions (float32, model output units) -> {args.out}")
    return 0
