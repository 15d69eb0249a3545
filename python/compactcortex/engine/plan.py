"""Plan: a compact model's batchnorm-folded float32 weights, ready for the C++ engine.

This module never imports torch, so a stimulus-loop process can load a Plan and predict
without paying torch's start-up time and memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import PLAN_FORMAT, atomic_path, read_safetensors_meta
from ..constants import DATASET_MEAN, MAP_SIZE

__all__ = ["Plan"]


@dataclass(frozen=True, eq=False)
class Plan:
    """Folded float32 weights of one compact model (all arrays C-contiguous, read-only).

    Shapes, with ``n = nums_filters``:
        w0 (n0, 3, 5, 5), b0 (n0,): layer 0 with batchnorm folded in;
        dw[i] (n_i, 5, 5), pw[i] (n_{i+1}, n_i), pb[i] (n_{i+1},) for layers i+1 = 1..4;
        readout (28, 28, n4) in (H, W, C) order, readout_bias (float);
        mean (3,): pixel mean that uint8 inputs are recentred by.
    """

    nums_filters: tuple[int, int, int, int, int]
    w0: np.ndarray
    b0: np.ndarray
    dw: tuple[np.ndarray, ...]
    pw: tuple[np.ndarray, ...]
    pb: tuple[np.ndarray, ...]
    readout: np.ndarray
    readout_bias: float
    mean: tuple[float, float, float] = DATASET_MEAN
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = tuple(int(v) for v in self.nums_filters)
        if len(n) != 5 or min(n) < 1:
            raise ValueError(f"nums_filters must be 5 integers >= 1, got {self.nums_filters}")
        object.__setattr__(self, "nums_filters", n)
        expect = {"w0": (n[0], 3, 5, 5), "b0": (n[0],), "readout": (MAP_SIZE, MAP_SIZE, n[4])}
        for i in range(4):
            expect[f"dw{i + 1}"] = (n[i], 5, 5)
            expect[f"pw{i + 1}"] = (n[i + 1], n[i])
            expect[f"pb{i + 1}"] = (n[i + 1],)
        for name, shape in expect.items():
            arr = self._get(name)
            if tuple(arr.shape) != shape:
                raise ValueError(f"plan array {name!r} has shape {tuple(arr.shape)}, expected "
                                 f"{shape} for filters {n}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"plan array {name!r} holds NaN or infinity")
        for name in ("w0", "b0", "readout"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("dw", "pw", "pb"):
            object.__setattr__(self, name, tuple(_frozen(a) for a in getattr(self, name)))
        object.__setattr__(self, "readout_bias", float(self.readout_bias))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        if not np.isfinite(self.readout_bias):
            raise ValueError(f"plan readout_bias is {self.readout_bias}, not a finite number")
        if len(self.mean) != 3 or not all(np.isfinite(self.mean)):
            raise ValueError(f"plan mean must be 3 finite pixel values, got {self.mean}")

    def _get(self, name: str) -> np.ndarray:
        if name[:2] in ("dw", "pw", "pb") and name[2:].isdigit():
            return np.asarray(getattr(self, name[:2])[int(name[2:]) - 1])
        return np.asarray(getattr(self, name))

    def arrays(self) -> dict[str, np.ndarray]:
        """All weight arrays by name (w0, b0, dw1..4, pw1..4, pb1..4, readout)."""
        names = ["w0", "b0", "readout"] + [f"{p}{i}" for p in ("dw", "pw", "pb") for i in range(1, 5)]
        return {k: self._get(k) for k in names}

    def weights_tuple(self) -> tuple:
        """(nums_filters, w0, b0, dw, pw, pb, readout, readout_bias): a model as the C++ bindings take it."""
        return (self.nums_filters, self.w0, self.b0, list(self.dw), list(self.pw), list(self.pb), self.readout,
                self.readout_bias)

    def num_parameters(self) -> int:
        """Number of weights the engine multiplies (batchnorm folded away)."""
        return sum(a.size for a in self.arrays().values()) + 1

    def macs_per_image(self) -> int:
        """Multiply-accumulates per 112x112 image."""
        n = self.nums_filters
        return (112 * 112 * 75 * n[0]
                + 56 * 56 * (25 * n[0] + n[0] * n[1])
                + 28 * 28 * (25 * n[1] + n[1] * n[2] + 25 * n[2] + n[2] * n[3] + 25 * n[3] + n[3] * n[4])
                + 28 * 28 * n[4])

    def save(self, path: str | Path) -> None:
        """Write the plan to one safetensors file (atomically)."""
        from safetensors.numpy import save_file

        meta = {
            "format": PLAN_FORMAT,
            "nums_filters": json.dumps(list(self.nums_filters)),
            "readout_bias": repr(self.readout_bias),
            "mean": json.dumps(list(self.mean)),
            "provenance": json.dumps(self.provenance),
        }
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in self.arrays().items()}, str(tmp), metadata=meta)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Read a plan written by :meth:`save`. Raises ValueError naming the file and key."""
        from safetensors.numpy import load_file

        meta = read_safetensors_meta(path, PLAN_FORMAT)
        try:
            n = json.loads(meta["nums_filters"])
            bias = float(meta["readout_bias"])
            mean = json.loads(meta["mean"])
            prov = json.loads(meta.get("provenance", "{}"))
            t = load_file(str(path))
        except (KeyError, ValueError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: corrupt plan ({e})") from None
        try:
            return cls(
                nums_filters=n, w0=t["w0"], b0=t["b0"],
                dw=tuple(t[f"dw{i}"] for i in range(1, 5)),
                pw=tuple(t[f"pw{i}"] for i in range(1, 5)),
                pb=tuple(t[f"pb{i}"] for i in range(1, 5)),
                readout=t["readout"], readout_bias=bias, mean=mean, provenance=prov,
            )
        except KeyError as e:
            raise ValueError(f"{path}: missing array {e.args[0]!r}") from None
        except (ValueError, TypeError) as e:  # TypeError: metadata of the wrong kind, e.g. a number for a list
            raise ValueError(f"{path}: {e}") from None


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float32, order="C", copy=True)
    a.setflags(write=False)
    return a
