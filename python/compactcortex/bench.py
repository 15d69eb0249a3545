"""A quick, interleaved engine-vs-PyTorch timing used by ``compactcortex bench``.

The full comparison against torch.compile, ONNX Runtime and OpenVINO is
``benchmarks/bench_inference.py``; this one needs only torch.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .engine.plan import Plan
from .engine.predictor import Predictor

__all__ = ["compare_with_torch"]


def __getattr__(name: str):
    if name == "random_published_like_model":  # moved in 0.2
        import warnings

        warnings.warn("compactcortex.bench.random_published_like_model moved to "
                      "compactcortex.models.random.random_published_like_model", FutureWarning, stacklevel=2)
        from .models.random import random_published_like_model

        return random_published_like_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls


def compare_with_torch(model, plan: Plan, threads: int, batch: int, rounds: int, seed: int = 0,
                       progress: bool = True) -> dict:
    """Time the engine and PyTorch eager float32 on the same random images, interleaved.

    Returns a dict with median milliseconds per image for each, the speed-up
    (torch time / engine time), and the engine's max error relative to the output scale.
    """
    import torch
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 60, (batch, 112, 112, 3)).astype(np.float32)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    pred = Predictor(plan, threads=threads)
    out = np.empty(batch, np.float32)
    torch.set_num_threads(threads)
    model = model.float().eval()

    def run_torch():
        with torch.inference_mode():
            return model(xt)

    ref = run_torch().numpy()
    pred.predict(x, out=out)
    err = float(np.abs(out - ref).max() / max(np.abs(ref).max(), 1e-12))
    calls = max(1, 16 // batch)
    samples = {"engine": [], "torch_eager": []}
    for _ in tqdm(range(rounds), desc=f"threads={threads} batch={batch}", disable=not progress, leave=False):
        samples["engine"].append(_seconds_per_call(lambda: pred.predict(x, out=out), calls))
        samples["torch_eager"].append(_seconds_per_call(run_torch, calls))
    ms = {k: float(np.median(v)) / batch * 1e3 for k, v in samples.items()}
    return {
        "threads": threads, "batch": batch, "isa": pred.isa,
        "ms_per_image": ms,
        "speedup_vs_torch_eager": ms["torch_eager"] / ms["engine"],
        "max_rel_error_vs_torch": err,
        "samples_s": samples,
    }
