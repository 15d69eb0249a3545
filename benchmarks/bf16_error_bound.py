"""How much accuracy a bf16 engine path would lose, before any bf16 kernel is written.

A bf16 dot-product instruction (AVX512-BF16 ``vdpbf16ps``, AMX) doubles the multiply-adds per
instruction over float32 FMA, but rounds both factors to bf16 (8 significant bits; products
summed in float32). Which factors could be rounded is fixed by the engine's design:

* layer 0 runs as Winograd F(4x4, 5x5): its transformed inputs and weights span a wide range and
  the output transform amplifies their rounding, so layer 0 stays float32 in any bf16 path;
* the depthwise layers are element-wise (no dot product to pair);
* what is left is the pointwise layers' GEMMs: their inputs (the depthwise outputs) and their
  weights.

This script runs published compact models in float64 (PyTorch) with exactly those roundings
injected (round to nearest even, as ``vcvtne2ps2bf16`` does) and reports the error against the
unrounded float64 model, as max |y - ref| / max |ref| over real V4 images of session 190923:

* ``act``: pointwise inputs rounded to bf16, weights exact (the best a one-term bf16 GEMM can do);
* ``act_w``: inputs and weights rounded (a plain bf16 GEMM, like a bf16 inference runtime);
* ``act_wsplit``: inputs rounded, each weight as two bf16 terms hi + lo (~16 bits; costs the
  doubled instruction rate back).

It also reports the share of the engine's executed multiply-adds in the pointwise layers and the
speed-up a bf16 GEMM at twice the float32 rate could give at most (time taken as proportional to
multiply-adds: 1 / (1 - share / 2)).

    python benchmarks/bf16_error_bound.py              # every 8th published model, 64 images, ~3 min
    python benchmarks/bf16_error_bound.py --every 1    # all 164 models, ~25 min

Results: ``benchmarks/results/bf16_error_bound_latest.json``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import common
from compactcortex.data.session import load_session
from compactcortex.engine.compile import compile as compile_plan
from compactcortex.engine.cpu import executed_macs
from compactcortex.models.published import load_published

MODES = ("act", "act_w", "act_wsplit")


def bf16(x: torch.Tensor) -> torch.Tensor:
    """x rounded to the nearest bf16 (ties to even), returned as float64."""
    return x.to(torch.float32).to(torch.bfloat16).to(torch.float64)


def forward(plan, images: torch.Tensor, mode: str | None) -> torch.Tensor:
    """float64 forward pass of a Plan on recentred NCHW images, pointwise GEMMs rounded per `mode`."""
    t = lambda a: torch.from_numpy(np.array(a, np.float64))  # noqa: E731
    h = F.relu(F.conv2d(images, t(plan.w0), t(plan.b0), padding=2))
    for i in range(4):
        dw, pw = t(plan.dw[i])[:, None], t(plan.pw[i])[:, :, None, None]
        if i < 2:  # stride 2, TensorFlow 'same': 1 before, 2 after
            h = F.conv2d(F.pad(h, (1, 2, 1, 2)), dw, stride=2, groups=dw.shape[0])
        else:
            h = F.conv2d(h, dw, padding=2, groups=dw.shape[0])
        if mode is not None:
            h = bf16(h)
            if mode == "act_w":
                pw = bf16(pw)
            elif mode == "act_wsplit":
                hi = bf16(pw)
                pw = hi + bf16(pw - hi)
        h = F.relu(F.conv2d(h, pw, t(plan.pb[i])))
    return (h * t(plan.readout).permute(2, 0, 1)[None]).sum((1, 2, 3)) + plan.readout_bias


def pointwise_share(plan, width: int = 16) -> float:
    """Share of the engine's executed multiply-adds (Winograd layer 0) in the pointwise GEMMs."""
    pad = [-(-n // width) * width for n in plan.nums_filters]
    pw = 56 * 56 * plan.nums_filters[0] * pad[1] + 28 * 28 * sum(
        plan.nums_filters[i] * pad[i + 1] for i in (1, 2, 3))
    return pw / executed_macs(plan, width, winograd=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=common.DATA)
    ap.add_argument("--every", type=int, default=8, help="take every k-th published model (default 8)")
    ap.add_argument("--images", type=int, default=64, help="real images of session 190923 (default 64)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    files = sorted((args.data / "compact_models" / "torch").glob("*.pt"))[:: args.every]
    raw = np.asarray(load_session(args.data, "190923").images[: args.images], np.float64)
    rows = []
    for f in tqdm(files, desc="models"):
        model = load_published(f, dtype=torch.float64)
        plan = compile_plan(model)
        x = torch.from_numpy(raw - np.array(plan.mean)).permute(0, 3, 1, 2)
        ref = forward(plan, x, None)
        with torch.no_grad():  # the hand-written pass is the model (batchnorm folded in float32)
            check = float((model(x[:4]) - ref[:4]).abs().max() / ref.abs().max())
        if check > 1e-5:
            raise RuntimeError(f"{f.name}: forward() disagrees with the model by {check:.1e}")
        scale = ref.abs().max()
        err = {m: float((forward(plan, x, m) - ref).abs().max() / scale) for m in MODES}
        rows.append({"model": f.name, "nums_filters": plan.nums_filters,
                     "pointwise_share": pointwise_share(plan), **err})

    summary = {}
    for key in MODES + ("pointwise_share",):
        v = np.array([r[key] for r in rows])
        summary[key] = {"median": float(np.median(v)), "max": float(v.max()), "min": float(v.min())}
    share = summary["pointwise_share"]["median"]
    summary["speedup_bound_median"] = 1.0 / (1.0 - share / 2.0)
    print(f"{len(rows)} published models, {len(raw)} images of 190923; error = max|y-ref|/max|ref|")
    for m in MODES:
        print(f"  {m:11s} median {summary[m]['median']:.2e}  max {summary[m]['max']:.2e}")
    print(f"  pointwise share of executed multiply-adds: median {share:.2f} "
          f"-> bf16 speed-up bound {summary['speedup_bound_median']:.2f}x")
    out = common.RESULTS / "bf16_error_bound_latest.json"
    common.write_json(out, {"machine": common.machine_info(), "args": common.args_dict(args),
                            "command": common.command_line(), "summary": summary, "models": rows})
    print(f"wrote {common.repo_relative(out)}")


if __name__ == "__main__":
    main()
