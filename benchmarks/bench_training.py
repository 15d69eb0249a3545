"""Training speed of the compact model: the C++ training kernels against PyTorch, in one process.

One full Adam step (forward, mean-squared-error loss, backward, update) at batch 32 for:
students of 24 and 100 filters per layer, and a 100-filter student with 75% of every layer's
filters masked (and, for reference, the physically smaller 25-filter model it equals).
Competitors: ``engine`` (``CompactModel(backend="engine")``), PyTorch eager in the default
layout (``torch_eager``) and channels_last (``torch_cl``), ``torch.compile`` of the step's
forward and loss (``torch_compile``) and bf16 autocast with channels_last (``torch_bf16``).
Also the input-gradient step of preferred stimuli (eval mode, frozen weights, d output / d image,
batch 8) for ``engine`` and ``torch_eager``.

For every thread count (1, 2) the competitors are timed in R interleaved rounds, in an order
shuffled with a seeded RNG; a ``torch.mm`` of two 1024x1024 float32 matrices is timed in the
same rounds and gives the matrix-multiply rate, so each step's multiply-adds (counted from the
filter counts, masked filters excluded) become a fraction of it. Reported: median ms per step,
images/s, ``engine images/s / competitor images/s`` (> 1: the engine is faster). Nothing here
asserts on timings; compare only numbers from one run.

    python benchmarks/bench_training.py            # full, ~10 minutes on 2 cores
    python benchmarks/bench_training.py --quick    # smoke test
    python benchmarks/bench_training.py --profile 5 # the engine's step phase by phase (5 steps)

Writes ``benchmarks/results/bench_training_<UTC timestamp>.json`` and ``..._latest.json``.
"""
from __future__ import annotations

import argparse
import random
import time
from datetime import datetime, timezone

import numpy as np
import torch

import common
from common import Runner
from compactcortex.compress.surgery import remove_filters
from compactcortex.models.compact import CompactModel

SIZES = (112, 56, 28, 28, 28)
SAMPLE_S = 0.05  # a timed sample: the mean of as many calls as last about this long


def step_macs(filters, input_grad: bool = False) -> int:
    """Multiply-adds per image of a training step (forward, weight and input-of-layer gradients;
    layer 0 has no input gradient) or, with ``input_grad``, of the preferred-stimulus step
    (forward and input gradients only, no weight gradients)."""
    n = filters
    conv0 = SIZES[0] ** 2 * n[0] * 75
    rest = sum(SIZES[l] ** 2 * n[l - 1] * (25 + n[l]) for l in range(1, 5)) + 28 * 28 * n[4]
    return 2 * (conv0 + rest) if input_grad else 2 * conv0 + 3 * rest


def student(filters, masked: bool, backend: str, seed: int = 0) -> CompactModel:
    torch.manual_seed(seed)
    m = CompactModel(filters, backend=backend).train()
    if masked:  # keep every 4th filter
        for layer, n in enumerate(filters):
            m.set_filter_mask(layer, np.arange(n) % 4 == 0)
    return m


def make_step(kind: str, filters, masked: bool, x: torch.Tensor, y: torch.Tensor):
    """A callable running one Adam step of competitor ``kind``."""
    if kind == "engine_physical":  # the masked student after remove_filters
        m = student(filters, True, "torch")
        for layer in range(5):
            m = remove_filters(m, layer, np.flatnonzero(np.arange(filters[layer]) % 4 == 0))
        m.backend = "engine"
        m.train()
    else:
        m = student(filters, masked, "engine" if kind == "engine" else "torch")
    xs = x
    if kind in ("torch_cl", "torch_bf16", "torch_compile"):
        m = m.to(memory_format=torch.channels_last)
        xs = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(m.parameters(), lr=1e-4)
    loss_fn = lambda: torch.mean((m(xs) - y) ** 2)  # noqa: E731
    if kind == "torch_compile":
        loss_fn = torch.compile(loss_fn)
    if kind == "torch_bf16":
        def loss_fn():
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return torch.mean((m(xs).float() - y) ** 2)

    def step():
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step.model = m
    return step


def phase_profile_of(filters, masked: bool, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """Milliseconds per engine step in each phase of the C++ passes, and outside them."""
    from compactcortex.models.engine_backend import phase_profile

    step = make_step("engine", filters, masked, x, y)
    for _ in range(2):  # makes the trainer, warms the workspaces
        step()
    t0 = time.perf_counter()
    with phase_profile(step.model) as phases:
        for _ in range(steps):
            step()
    total = 1e3 * (time.perf_counter() - t0) / steps
    ms = {name: 1e3 * s / steps for name, s in phases.items()}
    ms["outside the passes (autograd, loss, Adam)"] = total - sum(ms.values())
    return {"ms_per_step": total, "phases_ms": ms}


def make_input_grad_step(kind: str, filters, x: torch.Tensor):
    m = student(filters, False, "engine" if kind == "engine" else "torch").eval().requires_grad_(False)

    def step():
        xi = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(m(xi).sum(), xi)
        return g
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 threads, 100 filters, 3 rounds")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (its compilation takes minutes)")
    ap.add_argument("--profile", type=int, metavar="STEPS", default=0,
                    help="instead: where the engine's step spends its time, phase by phase, over STEPS steps")
    args = ap.parse_args()
    threads_list = [2] if args.quick else [1, 2]
    rounds = 3 if args.quick else args.rounds
    students = {"24": ((24,) * 5, False), "100": ((100,) * 5, False), "100_masked75": ((100,) * 5, True)}
    if args.quick:
        students = {"100": students["100"]}
    rng = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 112, 112, generator=rng) * 60
    y = torch.randn(args.batch, generator=rng)
    results = {"machine": common.machine_info(), "batch": args.batch,
               "torch": torch.__version__, "time": datetime.now(timezone.utc).isoformat(), "settings": []}
    if args.profile:
        profile(args, students, threads_list, x, y, results)
        return
    for threads in threads_list:
        torch.set_num_threads(threads)
        jobs = {}
        for name, (filters, masked) in students.items():
            kinds = ["engine", "torch_eager", "torch_cl", "torch_bf16"] + ([] if args.no_compile else ["torch_compile"])
            if masked:
                kinds = ["engine", "engine_physical", "torch_cl"]
            for kind in kinds:
                jobs[(name, kind)] = Runner(make_step(kind, filters, masked, x, y))
        for kind in ("engine", "torch_eager"):
            jobs[("input_grad_100", kind)] = Runner(make_input_grad_step(kind, (100,) * 5, x[:8]))
        jobs[("matmul", "torch")] = common.matmul_runner(threads)
        print(f"threads {threads}: warming up {len(jobs)} competitors (torch.compile compiles here)", flush=True)
        for job in jobs.values():
            common.warm_up(job, sample_s=SAMPLE_S, max_calls=100)
        samples, failed = common.interleaved_rounds(
            jobs, rounds, random.Random(threads), on_round=lambda r: print(f"  round {r}/{rounds}", flush=True))
        if failed:
            raise RuntimeError(f"competitors failed: {failed}")
        med = common.medians(samples)
        flops = common.matmul_flops(med[("matmul", "torch")])
        rows = []
        for (name, kind), t in med.items():
            if name == "matmul":
                continue
            images = 8 if name.startswith("input_grad") else args.batch
            filters, masked = students.get(name, ((100,) * 5, False))
            active = tuple(n // 4 for n in filters) if masked else filters
            macs = step_macs(active, input_grad=name.startswith("input_grad"))
            ips = images / t
            rows.append({"student": name, "competitor": kind, "ms_per_step": 1e3 * t, "images_per_s": ips,
                         "matmul_fraction": 2 * macs * ips / flops,
                         "engine_ratio": t / med[(name, "engine")]})
        results["settings"].append({"threads": threads, "matmul_gflops": flops / 1e9, "rows": rows})
        print(f"\nthreads {threads}, batch {args.batch}, matmul {flops / 1e9:.0f} GFLOP/s")
        print(f"{'student':>15} {'competitor':>16} {'ms/step':>9} {'img/s':>8} {'of matmul':>9} {'engine x':>8}")
        for r in rows:
            print(f"{r['student']:>15} {r['competitor']:>16} {r['ms_per_step']:9.1f} {r['images_per_s']:8.1f} "
                  f"{r['matmul_fraction']:9.1%} {r['engine_ratio']:8.2f}")
    stamp = common.utc_stamp()
    for path in (common.RESULTS / f"bench_training_{stamp}.json", common.RESULTS / "bench_training_latest.json"):
        common.write_json(path, results)
    print(f"\nwrote {common.RESULTS / 'bench_training_latest.json'}")


def profile(args, students, threads_list, x, y, results) -> None:
    for threads in threads_list:
        torch.set_num_threads(threads)
        for name, (filters, masked) in students.items():
            p = phase_profile_of(filters, masked, x, y, args.profile)
            results["settings"].append({"threads": threads, "student": name, **p})
            print(f"\nstudent {name}, threads {threads}, batch {args.batch}: {p['ms_per_step']:.1f} ms per step")
            for phase, ms in p["phases_ms"].items():
                print(f"  {phase:>42} {ms:8.1f} ms {ms / p['ms_per_step']:6.1%}")
    stamp = common.utc_stamp()
    for path in (common.RESULTS / f"bench_training_profile_{stamp}.json",
                 common.RESULTS / "bench_training_profile_latest.json"):
        common.write_json(path, results)
    print(f"\nwrote {common.RESULTS / 'bench_training_profile_latest.json'}")


if __name__ == "__main__":
    main()
