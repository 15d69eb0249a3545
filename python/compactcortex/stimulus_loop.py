"""A predictor made for closed-loop stimulus experiments.

Between two trials a rig has a fixed time budget (e.g. 500 ms at 2 Hz) to predict every recorded
neuron's response to a pool of candidate images and choose what to show next. ``LoopPredictor``
keeps its output buffers allocated, records the latency of every call, can stop early so that a
call finishes by a deadline, and is safe to call from several threads.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import numpy as np

from .engine.errors import BadImageError
from .engine.inputs import DEFAULT_SPIN_MS
from .engine.population import PopulationPredictor

__all__ = ["LoopPredictor", "top_k", "most_informative", "simulate_trials", "largest_pool", "torch_predictor",
           "loop_benchmark"]

class LoopPredictor:
    """All neurons' models behind one deadline-aware ``predict``.

    Args:
        models_or_plans: one model (Plan, path or CompactModel) per neuron.
        threads: engine threads (default: all CPUs available).
        max_images: the largest candidate pool; output buffers for it are allocated here, once.
        chunk: images per engine call when a deadline is given (smaller: finer stopping).
        spin_ms: how long the engine's worker threads poll for the next call before sleeping
            (see :class:`~compactcortex.Predictor`); above the interval between trials keeps
            them hot, at the cost of that CPU time.
    """

    def __init__(self, models_or_plans: Sequence[Any], threads: int | None = None, max_images: int = 4096,
                 chunk: int = 32, spin_ms: float = DEFAULT_SPIN_MS) -> None:
        if not 1 <= int(max_images) <= 1 << 20:
            raise ValueError(f"max_images must be between 1 and {1 << 20}, got {max_images}")
        if not 1 <= int(chunk):
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        self._pop = PopulationPredictor(models_or_plans, threads=threads, spin_ms=spin_ms)
        self._out = np.full((int(max_images), self._pop.num_models), np.nan, np.float32)
        self._chunk = int(chunk)
        self._lock = threading.Lock()
        self._latencies: list[float] = []
        self._missed = 0

    @property
    def num_neurons(self) -> int:
        return self._pop.num_models

    def predict(self, images: np.ndarray, deadline_s: float | None = None, copy: bool = False) -> np.ndarray:
        """Predicted responses (N, neurons) float32 of every neuron to every image.

        With ``deadline_s`` (seconds from the call), images are processed in chunks and no chunk is
        started that the measured speed says would end after the deadline; rows of images left out
        are NaN. The returned array is a view of an internal buffer, valid until the next call from
        any thread; ``copy=True`` returns a copy taken before another call can overwrite it (what
        callers on several threads need). A call that ends after its deadline counts as missed in
        :meth:`stats`.
        """
        with self._lock:
            out = self._predict_locked(images, deadline_s)
            return out.copy() if copy else out

    def _predict_locked(self, images: np.ndarray, deadline_s: float | None) -> np.ndarray:
        if deadline_s is not None and not (np.isfinite(deadline_s) and deadline_s > 0):
            raise ValueError(f"deadline_s must be a positive number of seconds, got {deadline_s}")
        n = len(images)
        if n > len(self._out):
            raise ValueError(f"{n} images, but this LoopPredictor was made for at most {len(self._out)}")
        t0 = time.perf_counter()
        out = self._out[:n]
        if deadline_s is None:
            self._pop.predict(images, out=out)
        else:
            out.fill(np.nan)
            per_image = None
            for i in range(0, n, self._chunk):
                j = min(n, i + self._chunk)
                elapsed = time.perf_counter() - t0
                if per_image is not None and elapsed + per_image * (j - i) > deadline_s:
                    break
                try:
                    self._pop.predict(images[i:j], out=out[i:j])
                except BadImageError as e:  # the engine counts images from the chunk's start
                    raise e.shifted(i) from None
                per_image = (time.perf_counter() - t0) / j
        latency = time.perf_counter() - t0
        self._latencies.append(latency)
        if deadline_s is not None and latency > deadline_s:
            self._missed += 1
        return out

    def stats(self) -> dict:
        """Latency of the calls so far: ``{"calls", "missed", "p50_ms", "p99_ms", "max_ms", "mean_ms"}``."""
        with self._lock:
            lat = np.asarray(self._latencies) * 1e3
            missed = self._missed
        if lat.size == 0:
            return {"calls": 0, "missed": 0, "p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
        return {"calls": int(lat.size), "missed": missed, "p50_ms": float(np.percentile(lat, 50)),
                "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "mean_ms": float(lat.mean())}

    def reset_stats(self) -> None:
        with self._lock:
            self._latencies.clear()
            self._missed = 0

    def top_k(self, images: np.ndarray, neurons: Sequence[int] | None = None, k: int = 1) -> np.ndarray:
        """Indices (len(neurons), k) of the images that drive each neuron most, best first.

        Safe from several threads: the choice is made before another call can reuse the buffer.
        """
        with self._lock:
            return top_k(self._predict_locked(images, None), neurons, k)


def top_k(predictions: np.ndarray, neurons: Sequence[int] | None = None, k: int = 1) -> np.ndarray:
    """From predictions (N, neurons): per neuron, the indices of its ``k`` largest, best first."""
    p = np.asarray(predictions)
    cols = range(p.shape[1]) if neurons is None else list(neurons)
    if not 1 <= k <= p.shape[0]:
        raise ValueError(f"k must be between 1 and the {p.shape[0]} images, got {k}")
    sub = np.nan_to_num(p[:, cols], nan=-np.inf)
    idx = np.argpartition(-sub, k - 1, axis=0)[:k].T
    order = np.argsort(-np.take_along_axis(sub.T, idx, 1), axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1)


def most_informative(member_predictions: np.ndarray, k: int = 1) -> np.ndarray:
    """Indices of the ``k`` images on which models disagree most, best first.

    ``member_predictions``: (members, N, neurons) — ensemble members, or several models of the same
    neurons. Disagreement = variance across members in units of each neuron's response variance,
    averaged over neurons (see :func:`compactcortex.fit.active.disagreement`).
    """
    from .fit.active import disagreement

    d = disagreement(member_predictions)
    if not 1 <= k <= d.size:
        raise ValueError(f"k must be between 1 and the {d.size} images, got {k}")
    return np.argsort(-d, kind="stable")[:k]


def simulate_trials(predict, pools: Sequence[np.ndarray], deadline_s: float) -> dict:
    """Run one trial per candidate pool: predict all neurons, choose each neuron's best image.

    ``predict(images) -> (N, neurons)``. Returns latency percentiles (ms, including the choice)
    and the number of trials that missed ``deadline_s``.
    """
    lat = []
    for pool in pools:
        t0 = time.perf_counter()
        top_k(predict(pool), k=1)
        lat.append(time.perf_counter() - t0)
    lat_ms = np.asarray(lat) * 1e3
    return {"trials": len(lat), "missed": int((lat_ms > deadline_s * 1e3).sum()),
            "p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
            "max_ms": float(lat_ms.max())}


def largest_pool(predict, deadline_s: float, trials: int = 5, seed: int = 0, start: int = 8,
                 limit: int = 4096) -> int:
    """The largest candidate pool whose p99 trial latency meets ``deadline_s`` (0 if none).

    Pool sizes double from ``start`` until the deadline is missed, then bisect (to ~6%), each
    size measured over ``trials`` trials of fresh procedural images.
    """
    from .data.procedural import procedural

    def meets(size: int) -> bool:
        pools = [procedural(size, seed, start=t * size) for t in range(trials)]
        return simulate_trials(predict, pools, deadline_s)["p99_ms"] <= deadline_s * 1e3

    lo, hi = 0, start
    while hi <= limit and meets(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > max(1, lo // 16):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo


def torch_predictor(models: Sequence[Any], threads: int):
    """The comparison: the same CompactModels in PyTorch eager, one after another.

    Returns ``predict(images uint8 (N,112,112,3)) -> (N, neurons)``.
    """
    import torch

    from .models.image_tensor import to_tensor

    torch.set_num_threads(threads)
    models = [m.float().eval() for m in models]

    def predict(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = to_tensor(images)
            return torch.stack([m(x) for m in models], 1).numpy()

    return predict


def loop_benchmark(models: Sequence[Any], rate_hz: float = 2.0, pool: int = 16, trials: int = 10,
                   threads: int = 2, compare_torch: bool = True, progress: bool = True,
                   spin_ms: float = DEFAULT_SPIN_MS) -> dict:
    """Simulate a closed loop at ``rate_hz`` (deadline 1/rate) for the engine and PyTorch eager.

    Per runner: latency percentiles and missed deadlines with ``pool`` candidates per trial, and
    the largest pool that meets the deadline at p99 (:func:`largest_pool`). ``spin_ms``: the
    engine workers' polling between calls (above the trial interval keeps them hot). Each runner
    is built when its turn comes and dropped after it, so no polling thread runs during another.
    """
    from .data.procedural import procedural

    deadline = 1.0 / rate_hz
    pools = [procedural(pool, 1, start=t * pool) for t in range(trials)]
    builders = {"engine": lambda: LoopPredictor(models, threads=threads, max_images=max(pool, 4096),
                                                spin_ms=spin_ms).predict}
    if compare_torch:
        builders["torch_eager"] = lambda: torch_predictor(models, threads)
    out = {"neurons": len(models), "deadline_ms": deadline * 1e3, "threads": threads, "pool": pool,
           "spin_ms": spin_ms}
    for name, build in builders.items():
        predict = build()
        predict(pools[0][:2])  # warm-up
        res = simulate_trials(predict, pools, deadline)
        res["largest_pool_at_p99"] = largest_pool(predict, deadline, trials=max(3, trials // 2), seed=2)
        del predict
        out[name] = res
        if progress:
            print(f"{name:<12} pool {pool}: p50 {res['p50_ms']:.0f} ms, p99 {res['p99_ms']:.0f} ms, missed "
                  f"{res['missed']}/{res['trials']}; largest pool meeting {deadline * 1e3:.0f} ms at p99: "
                  f"{res['largest_pool_at_p99']}")
    return out
