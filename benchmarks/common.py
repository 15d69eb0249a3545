"""What the benchmarks share: paths, the machine description, JSON output, the interleaved timing
loop, random models and images, error measures, and the published-neuron teacher setup.

Every script in ``benchmarks/`` imports it as ``import common`` (``python benchmarks/x.py`` puts
this folder on ``sys.path``) and keeps only what it alone measures. Torch is imported inside the
functions that need it, so that ``--help`` is quick and ``bench_procedural.py`` times its work
before torch is loaded (only :func:`machine_info`, called at its end, imports it).
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import io
import logging
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterable

import numpy as np

import compactcortex as cc
from compactcortex.constants import PUBLISHED_FILTERS
from compactcortex.models.random import random_published_like_model
from compactcortex.files import write_json as _write_json
from compactcortex.metrics import pearson_r

if TYPE_CHECKING:
    import torch

    from compactcortex.data.session import Session
    from compactcortex.models.compact import CompactModel

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATA = REPO / ".." / "shared" / "data" / "v4"  # the V4 data beside the repository

IMAGE = 112
PIXEL_STD = 60.0  # spread of the random recentred pixels
MATMUL_N = 1024
# Idle gap before each timed sample, so that threads of the previous competitor that spin-wait
# after their call (OpenMP, ONNX Runtime) do not eat into the next competitor's time.
PAUSE_S = 0.01
SAMPLE_S = 0.02  # a timed sample lasts about this long (see calls_per_sample)
# CPU features that decide which engine kernels and peer code paths run.
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16",
             "amx_tile", "amx_bf16", "amx_int8")


# --- paths, arguments, output ------------------------------------------------------------------


def published_model_path(data: str | os.PathLike, session: str, neuron: int) -> Path:
    """The published PyTorch compact model of ``session`` neuron ``neuron`` in the data folder."""
    return Path(data) / "compact_models" / "torch" / f"compact_model_{session}_neuron{neuron}.pt"


def repo_relative(path: Path) -> str:
    """``path`` relative to the repository where it lies inside it, else as given."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def parse_filters(text: str) -> tuple[int, ...]:
    """argparse type: one integer (every layer) or 5 comma-separated integers >= 1."""
    v = [int(s) for s in text.split(",")]
    if len(v) == 1:
        v = v * 5
    if len(v) != 5 or min(v) < 1:
        raise argparse.ArgumentTypeError("filters: one integer or 5 comma-separated integers >= 1")
    return tuple(v)


def args_dict(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed arguments for the JSON (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def command_line(argv: Iterable[str] | None = None) -> str:
    """The command as run: the script's name and its arguments (``argv`` when given)."""
    return " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else list(argv)))


def utc_now() -> str:
    """The time now, ISO 8601 UTC to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def utc_stamp() -> str:
    """The time now as a file-name stamp, e.g. 20261201T202954Z."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays (at any depth) turned into Python values."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (the package's writer); returns the path."""
    return _write_json(path, jsonable(obj))


# --- the machine ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _cpu_fields() -> dict[str, str]:
    """lscpu's fields (model name, flags), else /proc/cpuinfo's; {} where neither answers."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=True,
                              env={**os.environ, "LC_ALL": "C"}).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}
        return {"model": fields.get("Model name", ""), "flags": fields.get("Flags", "")}
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return {}
    first = lambda key: next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith(key)), "")  # noqa: E731
    return {"model": first("model name"), "flags": first("flags")}


def cpu_model() -> str | None:
    """The CPU's model name (lscpu, else /proc/cpuinfo, else ``platform.processor()``)."""
    return _cpu_fields().get("model") or platform.processor() or None


def cpu_flags() -> list[str]:
    """Those of :data:`CPU_FLAGS` that the CPU reports."""
    have = set(_cpu_fields().get("flags", "").split())
    return [f for f in CPU_FLAGS if f in have]


def load_average() -> list[float] | None:
    """The 1/5/15-minute load averages (None where the platform has none)."""
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def machine_info(**extra: Any) -> dict[str, Any]:
    """Platform, CPU (model, flags, cores), engine ISAs and package versions, plus ``extra``."""
    import torch

    cpus = os.cpu_count()
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpus": cpus,
        "cpu_count": cpus,  # the same: earlier results name it either way
        "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "engine_isas": cc.available_isas(),
        "compactcortex": cc.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        **extra,
    }


# --- timing --------------------------------------------------------------------------------------


@dataclass
class Runner:
    """A competitor bound to its inputs: ``call()`` runs it once."""

    call: Callable[[], Any]
    output: Callable[[], Any] | None = None  # the outputs of the last call, where kept apart
    info: dict[str, Any] = field(default_factory=dict)  # goes to the JSON
    calls: int = 1  # consecutive calls per timed sample (see warm_up)


def error_text(e: BaseException) -> str:
    """An exception as one short line for the JSON."""
    return f"{type(e).__name__}: {e}"[:2000]


def time_calls(fn: Callable[[], Any], calls: int = 1, sync: Callable[[], None] | None = None) -> float:
    """Mean wall seconds per call over ``calls`` consecutive calls (``sync()`` before and after)."""
    if sync:
        sync()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    if sync:
        sync()
    return (time.perf_counter() - t0) / calls


def calls_per_sample(seconds_per_call: float, sample_s: float = SAMPLE_S, max_calls: int = 10) -> int:
    """Calls that last about ``sample_s`` (1 to ``max_calls``), so fast calls are not timer noise."""
    return max(1, min(max_calls, math.ceil(sample_s / max(seconds_per_call, 1e-9))))


def warm_up(runner: Runner, min_calls: int = 2, min_s: float = 0.2, sample_s: float = SAMPLE_S,
            max_calls: int = 10, sync: Callable[[], None] | None = None) -> None:
    """Call at least ``min_calls`` times and ``min_s`` seconds; set ``runner.calls`` from the pace."""
    t0 = time.perf_counter()
    calls = 0
    while calls < min_calls or time.perf_counter() - t0 < min_s:
        runner.call()
        calls += 1
    if sync:
        sync()
    runner.calls = calls_per_sample((time.perf_counter() - t0) / calls, sample_s, max_calls)


def interleaved_rounds(runners: dict[Hashable, Runner], rounds: int | None, rng: random.Random, *,
                       seconds: float | None = None, min_rounds: int = 3, pause_s: float = PAUSE_S,
                       sync: Callable[[], None] | None = None,
                       include: Callable[[Hashable, int], bool] | None = None,
                       on_round: Callable[[int], None] | None = None,
                       ) -> tuple[dict[Hashable, list[float]], dict[Hashable, str]]:
    """Time competitors in the same process, interleaved round by round.

    Each round takes one sample of every runner (``include(name, round)`` where given), in an
    order shuffled by ``rng``, each after a ``pause_s`` idle gap; a sample is the mean seconds
    per call over ``runner.calls`` calls. Runs ``rounds`` rounds or, with ``seconds``, until that
    budget is spent (at least ``min_rounds``). A runner that raises is dropped. Returns (samples
    of each runner that did not fail, the error of each that did).
    """
    samples: dict[Hashable, list[float]] = {name: [] for name in runners}
    failed: dict[Hashable, str] = {}
    deadline = None if seconds is None else time.perf_counter() + seconds
    done = 0

    def more() -> bool:
        return done < rounds if deadline is None else done < min_rounds or time.perf_counter() < deadline

    while more():
        order = [k for k in runners if k not in failed and (include is None or include(k, done))]
        rng.shuffle(order)
        for name in order:
            time.sleep(pause_s)
            try:
                samples[name].append(time_calls(runners[name].call, runners[name].calls, sync))
            except Exception as e:  # noqa: BLE001 - drop the competitor, keep timing the rest
                failed[name] = error_text(e)
        done += 1
        if on_round:
            on_round(done)
    return {k: v for k, v in samples.items() if k not in failed}, failed


def medians(samples: dict[Hashable, list[float]]) -> dict[Hashable, float]:
    """The median sample of every runner that has samples."""
    return {k: statistics.median(v) for k, v in samples.items() if v}


def ratios_to(median_s: dict[Hashable, float], reference: Hashable) -> dict[Hashable, float]:
    """Median time of each runner / that of ``reference`` (> 1: the reference is faster)."""
    return {k: t / median_s[reference] for k, t in median_s.items()}


def matmul_runner(threads: int) -> Runner:
    """``torch.mm`` of two fixed 1024x1024 float32 matrices: the CPU's matrix-multiply rate."""
    import torch

    gen = torch.Generator().manual_seed(0)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    out = torch.empty(MATMUL_N, MATMUL_N)
    torch.set_num_threads(threads)
    return Runner(lambda: torch.mm(a, b, out=out), lambda: out.numpy())


def matmul_flops(median_s: float) -> float:
    """FLOP/s of the :func:`matmul_runner` product from its median seconds."""
    return 2 * MATMUL_N**3 / median_s


# --- models, images, accuracy ----------------------------------------------------------------


def model_or_random(path: Path) -> tuple[CompactModel, dict[str, Any]]:
    """The published model at ``path`` (float32), or a random published-like one where it is absent."""
    import torch

    if path.is_file():
        model = cc.load_published(path, dtype=torch.float32)
        return model, {"path": str(path.resolve()), "source": "published", "filters": list(model.nums_filters)}
    note = f"{path} not found: using a random CompactModel{PUBLISHED_FILTERS} with random batchnorm statistics"
    return random_published_like_model(PUBLISHED_FILTERS, seed=0).float(), {
        "path": None, "source": "random", "filters": list(PUBLISHED_FILTERS), "note": note}


def published_like_filters(count: int, seed: int, data: Path = DATA) -> tuple[list[tuple[int, ...]], str]:
    """Filter counts drawn (with replacement) from the published models, or from their ranges."""
    files = sorted((data / "compact_models" / "nums_filters").glob("*.npy"))
    rng = np.random.default_rng(seed)
    if files:
        rows = [tuple(int(v) for v in np.load(f)) for f in files]
        picks = rng.integers(0, len(rows), count)
        return [rows[i] for i in picks], f"drawn from {len(rows)} published nums_filters files"
    # Ranges of the published models: n0 15-58, n1 3-77 (median 56), n2-n4 mostly 3-14.
    out = [(int(rng.integers(30, 59)), int(rng.integers(10, 78)), int(rng.choice([3, 3, 3, 4, 7])),
            int(rng.integers(3, 15)), int(rng.choice([3, 3, 3, 4, 11]))) for _ in range(count)]
    return out, "random published-like ranges (published nums_filters files not found)"


def random_images(rng: np.random.Generator, n: int, nchw: bool = False) -> np.ndarray:
    """``n`` random recentred float32 images (normal, std PIXEL_STD), NHWC or NCHW."""
    shape = (n, 3, IMAGE, IMAGE) if nchw else (n, IMAGE, IMAGE, 3)
    return rng.normal(0.0, PIXEL_STD, shape).astype(np.float32)


def export_onnx(model: torch.nn.Module, folder: Path) -> tuple[Path | None, str | None, dict[str, Any]]:
    """Export to ONNX with a dynamic batch axis: the dynamo exporter, else the TorchScript one.

    Returns (path or None, the errors as one line or None, exporter info for the JSON).
    """
    import torch

    path = folder / "compact_model.onnx"
    example = (torch.zeros(2, 3, IMAGE, IMAGE),)
    axes = {"x": {0: "batch"}, "y": {0: "batch"}}
    errors: dict[str, str] = {}
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    for dynamo in (True, False):
        exporter = "dynamo" if dynamo else "torchscript"
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(model, example, str(path), input_names=["x"], output_names=["y"],
                                  dynamic_axes=axes, dynamo=dynamo)
        except Exception as e:  # noqa: BLE001 - any exporter failure is reported, then the next one tried
            errors[exporter] = f"{type(e).__name__}: {e}"
            continue
        return path, None, {"exporter": exporter, "seconds": time.perf_counter() - t0, "errors": errors}
    return None, "; ".join(f"{k}: {v}" for k, v in errors.items()), {"exporter": None, "errors": errors}


def max_rel_error(output: Any, reference: Any, axis: int | None = None) -> float:
    """max |output - reference| / max |reference|; with ``axis``, the scale is taken along it
    (e.g. ``axis=0`` of (images, models): each model against its own output scale). A zero
    scale leaves the error absolute."""
    ref = np.asarray(reference, np.float64)
    out = np.asarray(output, np.float64).reshape(ref.shape)
    scale = np.abs(ref).max(axis=axis, keepdims=axis is not None)
    return float((np.abs(out - ref) / np.where(scale > 0, scale, 1.0)).max())


def test_half_score(session: "Session", pred_test: np.ndarray) -> dict[str, float]:
    """Median r (and R2_ER where raw repeats exist) over neurons of (test-half images, neurons)
    predictions of ``session``."""
    from compactcortex.metrics import noise_corrected_r2

    idx = session.test_indices
    out = {"r_median": float(np.nanmedian(pearson_r(session.responses[:, idx], pred_test.T)))}
    if session.raw is not None:
        out["r2er_median"] = float(np.nanmedian(noise_corrected_r2(session.raw[:, idx], pred_test.T)))
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two 1-D series (``compactcortex.metrics.pearson_r``); NaN if constant or not finite."""
    a, b = np.asarray(a, np.float64).reshape(1, -1), np.asarray(b, np.float64).reshape(1, -1)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan")
    return float(pearson_r(a, b)[0])


# --- one published neuron as the teacher ----------------------------------------------------------


class EngineTeacher:
    """A CompactModel run by the C++ engine, as a teacher callable: (N,3,112,112) recentred -> (N,)."""

    def __init__(self, model: CompactModel, threads: int) -> None:
        self.predictor = cc.Predictor(model, threads=threads)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.from_numpy(self.predictor.predict(x.detach().contiguous()))


@dataclass
class PublishedNeuron:
    """A published model of one neuron, its session's fit and test halves, and the teacher's test outputs."""

    session: Session
    neuron: int
    path: Path  # the published .pt file
    model: CompactModel
    fit: np.ndarray  # fit-half images
    test: np.ndarray  # test-half images
    recorded: np.ndarray  # the neuron's recorded responses to the test half
    teacher_test: np.ndarray  # the published model's predictions on the test half
    threads: int  # engine threads for the test-half predictions

    def predict(self, model: CompactModel) -> np.ndarray:
        """``model``'s predictions on the test half (C++ engine)."""
        return cc.Predictor(model, threads=self.threads).predict(self.test)

    def r_teacher(self, model: CompactModel) -> float:
        """Pearson r of ``model`` with the teacher on the test half."""
        return pearson(self.predict(model), self.teacher_test)

    def r_recorded(self, model: CompactModel) -> float:
        """Pearson r of ``model`` with the recorded responses on the test half."""
        return pearson(self.predict(model), self.recorded)


def published_neuron(data: Path, session: str, neuron: int, threads: int) -> PublishedNeuron:
    """Load ``session`` and the published model of ``neuron``; predict the test half with ``threads``."""
    from compactcortex.data import load_session

    s = load_session(data, session)
    path = published_model_path(data, session, neuron)
    model = cc.load_published(path)
    test = s.images[s.test_indices]
    return PublishedNeuron(s, neuron, path, model, s.images[s.fit_indices], test, s.responses[neuron, s.test_indices],
                           cc.Predictor(model, threads=threads).predict(test), threads)


def distill_path(outdir: Path, session: str, neuron: int, filters: Iterable[int], steps: int, batch: int,
                 lr: float, seed: int) -> Path:
    """The distillation checkpoint, named by its settings (shared by bench_pruning and roundtrip_published)."""
    f = "x".join(str(v) for v in filters)
    return outdir / f"distill_{session}_neuron{neuron}_f{f}_steps{steps}_b{batch}_lr{lr:g}_seed{seed}.ckpt"


def distill_student(task: PublishedNeuron, teacher: EngineTeacher, outdir: Path, filters: tuple[int, ...],
                    steps: int, batch: int, lr: float, seed: int) -> tuple[CompactModel, dict[str, Any]]:
    """Distil a student from ``teacher`` on the fit half mixed half and half with procedural images,
    checkpointed (resumed) under :func:`distill_path`. Returns it (eval mode) and its JSON record."""
    from compactcortex.fit import distill

    ckpt = distill_path(outdir, task.session.name, task.neuron, filters, steps, batch, lr, seed)
    t0 = time.perf_counter()
    student = distill(teacher, None, task.fit, steps=steps, batch=batch, nums_filters=filters,
                      procedural_fraction=0.5, lr=lr, seed=seed, checkpoint=ckpt, progress=True).eval()
    return student, {"checkpoint": repo_relative(ckpt), "seconds_this_run": time.perf_counter() - t0,
                     "final_loss": student.provenance.get("final_loss")}


def history_rows(history: Iterable[Any]) -> list[dict[str, Any]]:
    """``prune_paper``'s history for the JSON (``r_teacher``: its ``evaluate``, here r with the teacher)."""
    return [{"layer": s.layer, "nums_filters": list(s.nums_filters), "num_parameters": s.num_parameters,
             "explained": s.explained, "r_teacher": s.accuracy} for s in history]
