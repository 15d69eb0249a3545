"""The ``compactcortex`` command."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

__all__ = ["main"]

from .engine.inputs import MAX_THREADS as _THREADS


def _int_arg(lo: int, hi: int):
    """An argparse type: an integer in [lo, hi] (argparse then prints one line and exits 2)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, got {v}")
        return v
    parse.__name__ = "integer"
    return parse


def _float_arg(lo: float, hi: float, above: bool = False):
    """An argparse type: a finite number in [lo, hi] (or (lo, hi] with ``above``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (lo < v <= hi if above else lo <= v <= hi):  # also False for NaN
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {lo} and at most {hi}, got {text}")
        return v
    parse.__name__ = "number"
    return parse


def _cmd_predict(args: argparse.Namespace) -> int:
    from .files import atomic_path
    from .data.image_files import read_images
    from .engine.predictor import Predictor
    from .model_files import load_plan

    plan = load_plan(args.model)
    images = read_images(args.images)
    pred = Predictor(plan, threads=args.threads)
    out = pred.predict(images)
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out)
    print(f"{len(out)} predictions (float32, model output units) -> {args.out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import __version__
    from .files import atomic_path
    from .bench import PUBLISHED_FILTERS, compare_with_torch, random_published_like_model
    from .engine.compile import compile

    if args.model:
        from .model_files import load_plan
        from .models.published import load_published

        if Path(args.model).suffix != ".pt":
            raise SystemExit("bench --model takes an authors' .pt file (the torch side needs the module)")
        model = load_published(args.model)
        plan = load_plan(args.model)
        name = args.model
    else:
        model = random_published_like_model(PUBLISHED_FILTERS)
        plan = compile(model)
        name = f"random model with the published filter counts {PUBLISHED_FILTERS}"
    print(f"model: {name}\nfilters {plan.nums_filters}, {plan.num_parameters():,} weights, "
          f"{plan.macs_per_image() / 1e6:.1f}M multiply-adds per image")
    results = []
    print(f"{'threads':>7} {'batch':>5} {'engine ms/img':>14} {'torch ms/img':>13} {'speed-up':>9} {'max rel err':>12}")
    for threads in args.threads:
        for batch in args.batch:
            r = compare_with_torch(model, plan, threads, batch, args.rounds)
            results.append(r)
            print(f"{threads:>7} {batch:>5} {r['ms_per_image']['engine']:>14.3f} "
                  f"{r['ms_per_image']['torch_eager']:>13.3f} {r['speedup_vs_torch_eager']:>8.2f}x "
                  f"{r['max_rel_error_vs_torch']:>12.1e}")
    print(f"engine kernels: {results[0]['isa']}; speed-up = PyTorch eager time / engine time, medians of "
          f"{args.rounds} interleaved rounds")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"version": __version__, "model": name,
                                       "nums_filters": plan.nums_filters, "results": results}, indent=1))
        print(f"results -> {args.json}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .files import atomic_path
    from .evaluate import evaluate_published

    res = evaluate_published(args.data, args.session, threads=args.threads)
    fmt = lambda v: "   n/a" if v is None else f"{v:6.3f}"  # noqa: E731
    print(f"session {res['session']}: {len(res['neurons'])} published models, "
          f"{res['num_test_images']} test images (second half)")
    print(f"{'neuron':>6} {'r':>6} {'R2_ER':>6}")
    for n in res["neurons"]:
        print(f"{n['neuron']:>6} {fmt(n['r'])} {fmt(n['r2er'])}")
    print(f"{'median':>6} {fmt(res['median_r'])} {fmt(res['median_r2er'])}")
    if res["median_r2er"] is None:
        print("R2_ER needs single-trial responses (responses_raw), which this session lacks")
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(res, indent=1))
        print(f"results -> {args.json}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from .demo import DemoConfig, run_demo

    cfg = DemoConfig(**QUICK_DEMO) if args.quick else DemoConfig()
    for f in fields(DemoConfig):
        if getattr(args, f.name, None) is not None:
            setattr(cfg, f.name, getattr(args, f.name))
    summary = run_demo(args.out, cfg)
    print(f"\n{'neuron':>6} {'compact params':>14} {'R2_ER teacher':>13} {'R2_ER compact':>13} {'r vs truth':>10}")
    for r in summary["neurons"]:
        print(f"{r['neuron']:>6} {r['compact_params']:>14,} {r['r2er_teacher']:>13.2f} {r['r2er_compact']:>13.2f} "
              f"{r['r_compact_vs_truth']:>10.2f}")
    print(f"engine vs PyTorch eager: {summary['engine_speedup_vs_torch']:.1f}x; elapsed {summary['elapsed_s']:.0f} s")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


#: A tiny configuration for smoke tests (about a minute).
QUICK_DEMO = dict(neurons=2, population=6, test_images=60, initial_images=40, loop_rounds=1, images_per_round=20,
                  candidates=100, members=2, teacher_epochs=2, student_filters=6,
                  distill_steps=10, pool_size=64, batch=8, rounds=1, retrain_steps=4, final_steps=4, fresh_images=40)


def _cmd_data_digital(args: argparse.Namespace) -> int:
    from .data.digital import digital_population, save_digital_population

    pop = digital_population(args.neurons, args.images, args.repeats, args.seed, min_repeats=args.min_repeats)
    path = save_digital_population(pop, args.out, args.name)
    print(f"{args.neurons} model neurons x {args.images} images x up to {args.repeats} trials -> {args.out} "
          f"(session {args.name!r}; ground truth in {path}); median noise ceiling {np.median(pop.noise_ceiling):.2f}")
    return 0


def _cmd_loop_bench(args: argparse.Namespace) -> int:
    from .files import atomic_path
    from .stimulus_loop import loop_benchmark

    if args.data:
        from .models.published import load_published_session

        models = load_published_session(args.data, args.session)
        source = f"published models of session {args.session}"
    else:
        from .bench import random_published_like_model

        models = [random_published_like_model(seed=i) for i in range(args.random)]
        source = f"{args.random} random models with the published filter counts (48, 60, 3, 3, 3)"
    print(f"{source}: {len(models)} neurons; {args.rate:g} Hz -> {1e3 / args.rate:.0f} ms per trial")
    res = loop_benchmark(models, args.rate, args.pool, args.trials, args.threads, not args.no_torch,
                         spin_ms=args.spin_ms)
    if args.json:
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps({"source": source, **res}, indent=1))
    return 0


def _cmd_preferred(args: argparse.Namespace) -> int:
    from .analysis import preferred_stimuli, save_gallery
    from .data.procedural import procedural

    if args.model:
        from .models.compact import CompactModel
        from .models.published import load_published

        models = [load_published(m) if Path(m).suffix == ".pt" else CompactModel.load(m) for m in args.model]
        labels = [Path(m).stem for m in args.model]
    else:
        from .models.published import load_published_session

        session = load_published_session(args.data, args.session)
        models = [session[k] for k in args.neurons]
        labels = [f"{args.session} neuron {k}" for k in args.neurons]
    result = preferred_stimuli(models, n=args.n, steps=args.steps, pool=procedural(args.pool, seed=1),
                               init="pool" if args.from_pool else None)
    save_gallery(result, args.out, labels=labels)
    for label, r, b in zip(labels, result.responses, result.pool_best):
        print(f"{label}: synthesised {np.array2string(r, precision=2)} vs best of {args.pool} pool images {b:.2f}")
    print(f"gallery -> {args.out}")
    return 0


def _cmd_consolidation(args: argparse.Namespace) -> int:
    from .analysis import plot_consolidation, plot_filter_clusters, plot_filter_similarity
    from .analysis.consolidation import NULLS, cluster_filters, filter_similarity, summarise
    from .data.procedural import procedural
    from .files import write_json
    from .models.published import load_published_session

    models = load_published_session(args.data, args.session)
    images = procedural(args.images, seed=2) if args.images else None
    out = Path(args.out)
    sims = {kind: filter_similarity(models, kind) for kind in NULLS}
    clusters = cluster_filters(models, args.k)
    numbers = summarise(models, sims, clusters, images=images)
    write_json(out / f"consolidation_{args.session}.json", numbers)
    plot_filter_similarity(models, out / f"filter_similarity_{args.session}.png", similarities=list(sims.values()))
    plot_filter_clusters(models, out / f"filter_clusters_{args.session}.png", clusters=clusters)
    plot_consolidation(models, out / f"consolidation_{args.session}.png", images=images)
    print(json.dumps(numbers, indent=1))
    print(f"numbers and plots -> {out}")
    return 0


def _cmd_compress(args: argparse.Namespace) -> int:
    from .compress import Recipe, compress_session

    slurm = {k: v for k, v in (("slurm_partition", args.slurm_partition), ("timeout_min", args.slurm_time_min))
             if v is not None}
    summary = compress_session(args.data, args.session, args.out, args.teacher, args.neurons,
                               Recipe().scaled(args.minutes_per_neuron), args.threads, args.images_from,
                               args.backbone, backend=args.backend, address=args.address,
                               cpus_per_task=args.cpus_per_task, slurm=slurm)
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


def _cmd_trunk(args: argparse.Namespace) -> int:
    from .data.session import load_session
    from .fit.trunk import TrunkConfig, fit_trunk

    sessions = [load_session(args.data, s) for s in args.sessions]
    cfg = TrunkConfig(**{k: v for k, v in (("nums_filters", args.filters), ("epochs", args.epochs),
                                           ("max_minutes", args.max_minutes), ("seed", args.seed))
                         if v is not None})
    out = Path(args.out)
    ckpt = out.parent / f"{out.name}.work"
    _, info = fit_trunk(sessions, cfg, args.members, args.threads, ckpt, out)
    for k, m in enumerate(info["members"]):
        print(f"member {k}: held-out median r {m['held_out_median_r']:.3f} (epoch {m['best_epoch']}), "
              f"{m['minutes']:.1f} min")
    print(f"trunk of {sum(s.num_neurons for s in sessions)} neurons in {len(sessions)} sessions -> {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="compactcortex", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

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
    pr.add_argument("--threads", type=_int_arg(1, _THREADS), default=None, help="worker threads (default: all CPUs available)")
    pr.set_defaults(fn=_cmd_predict)

    be = sub.add_parser(
        "bench", help="time the engine against PyTorch eager",
        description="Time the C++ engine against PyTorch eager float32 on random recentred images, "
                    "interleaved; prints median milliseconds per image and the speed-up (PyTorch time "
                    "/ engine time). Without --model, uses a random model with the published filter "
                    "counts (48, 60, 3, 3, 3). For ONNX Runtime, OpenVINO and torch.compile, run "
                    "benchmarks/bench_inference.py.")
    be.add_argument("--model", help="an authors' .pt file (default: random published-size model)")
    be.add_argument("--threads", type=_int_arg(1, _THREADS), nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    be.add_argument("--batch", type=_int_arg(1, 100_000), nargs="+", default=[1, 64], help="batch sizes (default: 1 64)")
    be.add_argument("--rounds", type=_int_arg(1, 10_000), default=15, help="interleaved timing rounds (default: 15)")
    be.add_argument("--json", help="also write the results to this JSON file")
    be.set_defaults(fn=_cmd_bench)

    ev = sub.add_parser(
        "evaluate", help="accuracy of a session's published models on its held-out images",
        description="Run every published compact model of a session through the engine on the test "
                    "half of the session's images (the second half; the paper's split) and print, per "
                    "neuron, the Pearson r between predictions and repeat-averaged responses (spike "
                    "counts per 100 ms) and the noise-corrected R2_ER (Pospisil & Bair 2021) where "
                    "single-trial responses exist, and the medians.")
    ev.add_argument("--data", required=True,
                    help="a folder laid out like ../shared/data/v4 (compact_models/torch, images, "
                         "responses_repeat_averaged, responses_raw) or a clone of the authors' repository")
    ev.add_argument("--session", required=True, help="session id, e.g. 190923")
    ev.add_argument("--threads", type=_int_arg(1, _THREADS), default=None, help="engine threads (default: all CPUs available)")
    ev.add_argument("--json", help='also write {"session", "neurons": [{"neuron", "r", "r2er"}], "median_r", '
                                   '"median_r2er"} to this file')
    ev.set_defaults(fn=_cmd_evaluate)

    de = sub.add_parser(
        "demo", help="the whole pipeline on the embedded digital V4 population (the main job)",
        description="Record a digital V4 population (ground-truth model neurons, Poisson trials) in silico "
                    "with the paper's adaptive closed loop (fit a teacher ensemble, record the candidate images its "
                    "members disagree on most, refit), distil the neurons with the highest noise ceiling at once into one shared "
                    "student, cut out and prune each one's compact model (the paper's rule in several passes, "
                    "re-training after each layer; the recipe of compactcortex compress), evaluate them (R2_ER on "
                    "held-out trials, r against the ground truth on fresh images), time the engine against "
                    "PyTorch, and write OUT/report.md, OUT/summary.json, PNG plots and the compact models "
                    "(.safetensors and .plan). Rerunning with the same --out resumes. About 3.5 minutes on 2 "
                    "cores with the defaults.")
    de.add_argument("--out", default="demo_out", help="report folder (default: demo_out)")
    de.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (about a minute)")
    for name, typ, help_ in [("neurons", int, "neurons to distil and prune"), ("population", int, "model neurons recorded"),
                             ("test_images", int, "recorded test images (R2_ER on their held-out trials)"),
                             ("initial_images", int, "closed loop: random images recorded before the first fit"),
                             ("loop_rounds", int, "closed loop: rounds of choosing images"),
                             ("images_per_round", int, "closed loop: images chosen per round"),
                             ("candidates", int, "closed loop: candidate images to choose from"),
                             ("repeats", int, "trials per image"),
                             ("members", int, "teacher ensemble members"), ("teacher_epochs", int, "teacher epochs"),
                             ("student_filters", int, "filters per layer of the shared student before pruning"),
                             ("distill_steps", int, "distillation steps"), ("distill_lr", float, "distillation learning rate"),
                             ("pool_size", int, "teacher-labelled images of the distillation"),
                             ("rounds", int, "pruning passes over the layers"),
                             ("final_steps", int, "fine-tuning steps of each compact model at the end"),
                             ("batch", int, "images per step"),
                             ("threshold", float, "pruning: fraction of each layer's output variance kept"),
                             ("retrain_steps", int, "re-training steps after each pruned layer"),
                             ("threads", int, "CPU threads"), ("seed", int, "random seed")]:
        if name == "threshold":
            typ = _float_arg(0, 1, above=True)
        elif typ is float:
            typ = _float_arg(0, 1e3, above=True)
        elif name == "threads":
            typ = _int_arg(1, _THREADS)
        else:  # counts; zero is meaningful only for rounds and steps
            typ = _int_arg(0 if name in _DEMO_ZERO_OK else 1, 2**32 - 1 if name == "seed" else 10_000_000)
        de.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_)
    de.set_defaults(fn=_cmd_demo)

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
                         "(the 200-filter shared compact model under --data if there is one, else a teacher "
                         "from scratch), 'none' (from scratch), 'shared_compact_<N>', a .keras file, or a trunk "
                         "file of 'compactcortex trunk'")
    co.add_argument("--neurons", type=_int_arg(0, 1_000_000), nargs="+", default=None, help="neuron indices (default: all)")
    co.add_argument("--minutes-per-neuron", type=_float_arg(0, 1e6, above=True), default=None,
                    help="scale the training budget to about M minutes per neuron on 2 cores (the default recipe "
                         "took 2.2 for the 33 neurons of 190923)")
    co.add_argument("--threads", type=_int_arg(1, _THREADS), default=None, help="CPU threads (default: all available)")
    co.add_argument("--images-from", default=None,
                    help="another session whose images to use where SESSION has none here (e.g. 211022)")
    co.add_argument("--out", required=True, help="output folder (on storage every worker sees, for ray/slurm)")
    co.add_argument("--backend", choices=("local", "ray", "slurm"), default="local",
                    help="where the neurons run after stage 1: here (default), one Ray task each (extra [ray]), or "
                         "a SLURM job array through submitit (extra [slurm])")
    co.add_argument("--address", default=None, help="--backend ray: the cluster address (default: a running or new "
                                                     "local one)")
    co.add_argument("--cpus-per-task", type=_int_arg(1, 4096), default=None, help="--backend ray/slurm: CPUs per neuron (default 1)")
    co.add_argument("--slurm-partition", default=None, help="--backend slurm: the partition")
    co.add_argument("--slurm-time-min", type=_int_arg(1, 1_000_000), default=None, help="--backend slurm: the time limit per neuron (min)")
    co.set_defaults(fn=_cmd_compress)

    tr = sub.add_parser(
        "trunk", help="train a trunk (shared core) on many sessions: a backbone for teachers",
        description="Train one core with a factorised readout per neuron on the recordings of all --sessions "
                    "at once (each image scored against its own session's neurons), on the C++ training "
                    "kernels, keeping the epoch with the best median r on held-out images of every "
                    "session. The file serves --backbone FILE of compress --teacher fit. Checkpoints go "
                    "to OUT.work/; rerunning the same command resumes.")
    tr.add_argument("--data", required=True, help="a folder laid out like ../shared/data/v4")
    tr.add_argument("--sessions", required=True, nargs="+", help="the sessions to train on (each with images)")
    tr.add_argument("--out", required=True, help="the trunk file to write (safetensors)")
    tr.add_argument("--members", type=_int_arg(1, 100), default=1, help="trunks with different seeds (default 1)")
    tr.add_argument("--threads", type=_int_arg(1, _THREADS), default=None, help="CPU threads (default: all available)")
    tr.add_argument("--filters", type=_int_arg(1, 1024), nargs=5, default=None,
                    help="the core's filters n0..n4 (default 64 96 128 128 128)")
    tr.add_argument("--epochs", type=_int_arg(1, 10_000), default=None, help="passes over the data (default 12)")
    tr.add_argument("--max-minutes", type=_float_arg(0, 1e6, above=True), default=None,
                    help="stop each member after this much training time, keeping its best epoch")
    tr.add_argument("--seed", type=_int_arg(0, 2**31 - 1), default=None, help="random seed (default 0)")
    tr.set_defaults(fn=_cmd_trunk)

    lb = sub.add_parser(
        "loop-bench", help="simulate a closed-loop experiment (engine vs PyTorch)",
        description="Simulate a closed loop: at --rate Hz (deadline 1/rate s) predict every neuron's "
                    "response to a pool of candidate images (112x112 procedural images) and choose each "
                    "neuron's best; report latency percentiles (ms), missed deadlines, and the largest pool "
                    "per trial that meets the deadline at p99, for the engine and PyTorch eager.")
    lb.add_argument("--data", help="published data folder (with --session); default: random models")
    lb.add_argument("--session", default="190923")
    lb.add_argument("--random", type=_int_arg(1, 100_000), default=33, help="number of random models without --data")
    lb.add_argument("--rate", type=_float_arg(0, 10_000, above=True), default=2.0, help="trials per second (default 2)")
    lb.add_argument("--pool", type=_int_arg(1, 1_000_000), default=16, help="candidate images per trial (default 16)")
    lb.add_argument("--trials", type=_int_arg(1, 10_000_000), default=10)
    lb.add_argument("--threads", type=_int_arg(1, _THREADS), default=2)
    lb.add_argument("--spin-ms", type=_float_arg(0, 10_000), default=0.2,
                    help="engine workers poll this long between calls before sleeping (default 0.2; above "
                         "1000/rate keeps them hot between trials, at the cost of that CPU time)")
    lb.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    lb.add_argument("--json", help="write the results to this file")
    lb.set_defaults(fn=_cmd_loop_bench)

    st = sub.add_parser(
        "preferred", help="synthesise preferred stimuli (gradient ascent) and a PNG gallery",
        description="Synthesise images that drive each model hard: gradient ascent on the torch model with "
                    "jitter, blur, a norm bound and the valid pixel range, then rounded to uint8 and scored by "
                    "the engine (responses in the model's units, spike counts per 100 ms for the published "
                    "models). The gallery shows them beside the best of a pool of procedural images.")
    st.add_argument("--model", nargs="+", help="CompactModel .safetensors or authors' .pt files")
    st.add_argument("--data", default="../shared/data/v4", help="published data folder (without --model)")
    st.add_argument("--session", default="190923")
    st.add_argument("--neurons", type=_int_arg(0, 1_000_000), nargs="+", default=[0, 1, 2, 3])
    st.add_argument("--n", type=_int_arg(1, 10_000), default=2, help="images per neuron")
    st.add_argument("--steps", type=_int_arg(0, 10_000_000), default=200)
    st.add_argument("--pool", type=_int_arg(1, 10_000_000), default=500, help="procedural candidate images")
    st.add_argument("--from-pool", action="store_true", help="start from each neuron's best pool images")
    st.add_argument("--out", default="preferred_stimuli.png", help="gallery PNG")
    st.set_defaults(fn=_cmd_preferred)

    cs = sub.add_parser(
        "consolidation", help="analyse a session's published models: layer-0 filter sharing, layer-1 consolidation",
        description="How much the published compact models of a session share: similarity of layer-0 filters "
                    "across neurons against shuffled, phase-randomised and random surrogate filters, clusters of those filters, and the "
                    "consolidation of layer 1 (participation ratio, effective rank; also weighted by the input "
                    "RMS on procedural images). Writes OUT/consolidation_SESSION.json and three PNG plots.")
    cs.add_argument("--data", default="../shared/data/v4", help="published V4 data folder")
    cs.add_argument("--session", default="190923")
    cs.add_argument("--k", type=_int_arg(1, 10_000), default=16, help="clusters of layer-0 filters")
    cs.add_argument("--images", type=_int_arg(0, 100_000), default=32, help="procedural images for the input RMS (0: raw weights)")
    cs.add_argument("--out", default="benchmarks/results", help="output folder")
    cs.set_defaults(fn=_cmd_consolidation)

    da = sub.add_parser("data", help="data sets").add_subparsers(dest="data_command", required=True)
    sy = da.add_parser(
        "digital", help="write a digital V4 population",
        description="Write a digital V4 population in the published data layout: OUT/images/images_NAME.zip "
                    "(PNG), OUT/responses_repeat_averaged and OUT/responses_raw (spike counts per 100 ms bin; "
                    "raw trials NaN-padded), and OUT/digital/NAME.json (the ground-truth neurons).")
    sy.add_argument("--out", required=True, help="output folder")
    sy.add_argument("--neurons", type=_int_arg(1, 100_000), default=32)
    sy.add_argument("--images", type=_int_arg(1, 1_000_000), default=1200)
    sy.add_argument("--repeats", type=_int_arg(1, 10_000), default=10, help="trials per image (at most)")
    sy.add_argument("--min-repeats", type=_int_arg(1, 10_000), default=None, help="fewest trials per image (default: all equal)")
    sy.add_argument("--seed", type=_int_arg(0, 2**32 - 1), default=0)
    sy.add_argument("--name", default="digital", help="session name (default: digital)")
    sy.set_defaults(fn=_cmd_data_digital)
    return p


_DEMO_ZERO_OK = {"seed", "loop_rounds", "final_steps", "retrain_steps", "rounds"}


_MAX_ERROR_CHARS = 300


def main(argv: list[str] | None = None) -> int:
    """Run the command; a user error (bad value, unreadable or unwritable file) prints one line
    and returns 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, OSError) as e:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if len(text) > _MAX_ERROR_CHARS:  # a message quoting a huge argument or file content
            text = text[:_MAX_ERROR_CHARS - 3] + "..."
        print(f"compactcortex {args.command}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"compactcortex {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
