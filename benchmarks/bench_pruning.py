"""Pruning benchmark: the channel-statistics kernel, and our pruning against Torch-Pruning.

Two parts, in one process (``--skip-kernels`` / ``--skip-pruning`` run one of them):

(a) **Kernel speed and agreement.** ``channel_stats`` (one pass of the C++ engine, no maps
    stored) against ``channel_stats_torch`` (plain PyTorch, forward hooks, float64
    accumulation) run on a float32 copy of the model (the fair competitor) and on a float64
    copy (the reference), on the same real images, for a random-init (100,100,100,100,100)
    student and the published model (48,60,3,3,3), with 1 and 2 threads (``torch.set_num_threads``
    and the engine's ``threads``). Timings are interleaved: every round runs each competitor
    once in a seeded shuffled order after a 10 ms pause; the medians are reported, with the
    ratio ``median torch_f32 / median engine`` (> 1: the engine is faster). The engine time
    includes compiling the model (``channel_stats(model, ...)`` end to end). Agreement: for every
    statistic (mean and covariance of layer1..layer4 and readout), ``max |x - ref| / max |ref|``
    with the float64 PyTorch result as ``ref``.

(b) **Against the peer.** A student (default (32,32,32,32,32)) is distilled from the published
    model of ``--session`` neuron ``--neuron`` (the teacher; run by the C++ engine during
    training) on the session's fit-half images mixed half and half with procedural images;
    the distillation is checkpointed in ``benchmarks/results/`` and reused by reruns. It is
    then pruned by

    * ``ours``: ``prune_paper`` (layers 4..0, no re-training between layers) at each threshold;
    * Torch-Pruning's ``MetaPruner`` with L1 magnitude, L2 magnitude and Taylor (first order,
      from the gradient of the distillation loss on a few batches) importance, in modes
      ``layerwise`` (per-layer ratios that give exactly our filter counts: only the choice of
      filters differs), ``global`` (one global ratio over all layers, Torch-Pruning's own
      allocation, bisected so that the parameter count comes closest to ours) and optionally
      ``uniform`` (one local ratio for every layer, chosen likewise).

    Every pruned model (and a copy of the unpruned student, for reference) then gets the same
    fine-tuning (``fine_tune``: same steps, same image stream, same learning rate). Accuracy is
    the Pearson correlation with the teacher on the session's held-out test-half images (real
    images), predicted by the C++ engine; the correlation with the recorded responses is
    reported too.

    Torch-Pruning 1.6 maps the indices of a ``permute`` followed by ``flatten`` as if the flatten
    were channel-first, so on our (H, W, C)-flattened readout it silently keeps the wrong readout
    weights. Torch-Pruning is therefore given an equivalent view of the model whose readout
    weights are reordered to (C, H, W) and that flattens channel-first; the pruned view is
    converted back. Every Torch-Pruning result is checked: the filters it removed are removed
    from the original student by our own surgery (``remove_filters``) and the two models' outputs
    must agree (``check_rel_diff``), as must the parameter counts.

Outputs: ``benchmarks/results/bench_pruning_latest.json`` (written atomically, also while the run
progresses, with ``"status": "running"``) and ``benchmarks/results/pruning_accuracy_vs_params.png``;
``--quick`` writes ``bench_pruning_quick.json`` and ``pruning_accuracy_vs_params_quick.png``
instead, so a smoke run never replaces real results.

Run it from the repository root::

    python benchmarks/bench_pruning.py --quick       # smoke run, under 2 minutes
    python benchmarks/bench_pruning.py               # the real run (tens of minutes on 2 cores)
    python benchmarks/bench_pruning.py --plot-only   # redraw the figure from the JSON

The machine may be shared: compare timings only within one run; the load average is recorded.
"""
from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import json
import random
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import common
from compactcortex.compress import channel_stats, channel_stats_torch, prune_paper, remove_filters
from compactcortex.compress.stats import STAT_NAMES
from compactcortex.files import atomic_path
from compactcortex.fit import ImageStream, fine_tune
from compactcortex.models.compact import CompactModel

MAP = 28  # readout map size
FT_SEED = 1  # image stream of every fine-tuning (the distillation uses --seed)
TAYLOR_STEP0 = 10**6  # stream batches used for the Taylor gradients (never trained on)


def machine_info() -> dict[str, Any]:
    """The shared machine description and the Torch-Pruning version (package and module)."""
    try:
        tp_dist = importlib.metadata.version("torch-pruning")
    except importlib.metadata.PackageNotFoundError:
        tp_dist = None
    try:
        import torch_pruning as tp
        tp_attr = getattr(tp, "__version__", None)
    except ImportError:
        tp_attr = None
    return common.machine_info(torch_pruning=tp_dist, torch_pruning_module_version=tp_attr)


# ----------------------------------------------------------------------------- (a) kernels

def stats_agreement(stats, ref) -> dict[str, dict[str, float]]:
    return {k: {"mean": common.max_rel_error(stats[k].mean, ref[k].mean),
                "cov": common.max_rel_error(stats[k].cov, ref[k].cov)} for k in STAT_NAMES}


def kernel_bench(args, images: np.ndarray, teacher: CompactModel, log: Callable[[str], None]) -> dict:
    torch.manual_seed(args.seed)
    student = CompactModel((100,) * 5).eval()
    models = {"student_100x5_random_init": student, "published_" + "x".join(map(str, teacher.nums_filters)): teacher}
    rng = random.Random(args.seed)
    out: dict[str, Any] = {"images": int(len(images)), "rounds": args.rounds, "f64_rounds": args.f64_rounds,
                           "settings": []}
    total = len(models) * len(args.threads) * args.rounds
    bar = tqdm(total=total, desc="kernels", unit="round")
    for mname, model in models.items():
        m32 = copy.deepcopy(model).float().eval()
        m64 = copy.deepcopy(model).double().eval()
        for th in args.threads:
            torch.set_num_threads(th)
            comps: dict[str, Callable[[np.ndarray], Any]] = {
                "engine": lambda x, th=th: channel_stats(model, x, threads=th),
                "torch_f32": lambda x: channel_stats_torch(m32, x),
                "torch_f64": lambda x: channel_stats_torch(m64, x),
            }
            for fn in comps.values():  # warm-up on a few images
                fn(images[:4])
            first: dict[str, Any] = {}  # each competitor's first result, for the agreement
            runners = {k: common.Runner(lambda k=k, fn=fn: first.setdefault(k, fn(images))) for k, fn in comps.items()}
            samples, failed = common.interleaved_rounds(
                runners, args.rounds, rng, include=lambda k, r: k != "torch_f64" or r < args.f64_rounds,
                on_round=lambda _: bar.update(1))
            if failed:
                raise RuntimeError(f"channel statistics failed: {failed}")
            med = common.medians(samples)
            ratio = common.ratios_to(med, "engine")
            ref = first["torch_f64"]
            setting = {
                "model": mname, "nums_filters": model.nums_filters, "threads": th,
                "median_s": med, "samples_s": samples,
                "ratio_torch_f32_over_engine": ratio["torch_f32"],
                "ratio_torch_f64_over_engine": ratio["torch_f64"],
                "agreement_vs_torch_f64": {"engine": stats_agreement(first["engine"], ref),
                                           "torch_f32": stats_agreement(first["torch_f32"], ref)},
            }
            setting["max_rel_diff"] = {c: max(max(d.values()) for d in setting["agreement_vs_torch_f64"][c].values())
                                       for c in ("engine", "torch_f32")}
            out["settings"].append(setting)
            log(f"  {mname:>28s} threads={th}: engine {med['engine']:.3f}s  torch_f32 {med['torch_f32']:.3f}s  "
                f"torch_f64 {med['torch_f64']:.3f}s  ratio f32/engine {setting['ratio_torch_f32_over_engine']:.1f}x  "
                f"max rel diff engine {setting['max_rel_diff']['engine']:.1e} torch_f32 {setting['max_rel_diff']['torch_f32']:.1e}")
    bar.close()
    return out


# ----------------------------------------------------------------------------- (b) Torch-Pruning

class ChannelFirstView(nn.Module):
    """The same network as a CompactModel, with the readout reading a channel-first flatten.

    Torch-Pruning maps flatten indices channel-first and does not follow the permute before our
    (H, W, C) flatten, so it is given this equivalent view (readout weights reordered).
    """

    def __init__(self, model: CompactModel) -> None:
        super().__init__()
        self.m = copy.deepcopy(model).float().eval()
        n4 = model.nums_filters[4]
        with torch.no_grad():
            w = self.m.readout.weight.reshape(1, MAP, MAP, n4).permute(0, 3, 1, 2).reshape(1, -1).contiguous()
        self.m.readout.weight = nn.Parameter(w)
        self.bn_eps, self.mean, self.provenance = model.bn_eps, model.mean, dict(model.provenance)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m.readout(self.m.features(x).flatten(1)).squeeze(1)

    def owners(self) -> list[nn.Module]:
        """The conv whose output channels are the filters of layer 0..4."""
        return [self.m.layer0_conv] + [getattr(self.m, f"layer{i}_conv_point") for i in range(1, 5)]

    def to_compact(self) -> CompactModel:
        nums = [mod.out_channels for mod in self.owners()]
        state = {k: v.detach().clone() for k, v in self.m.state_dict().items()}
        state["readout.weight"] = state["readout.weight"].reshape(1, nums[4], MAP, MAP).permute(0, 2, 3, 1).reshape(1, -1).contiguous()
        out = CompactModel(nums, bn_eps=self.bn_eps, mean=self.mean)
        out.load_state_dict(state)
        out.provenance = self.provenance
        return out.eval()


def num_params(nums) -> int:
    n0, n1, n2, n3, n4 = nums
    p = 3 * 25 * n0 + n0 + 2 * n0
    for a, b in ((n0, n1), (n1, n2), (n2, n3), (n3, n4)):
        p += a * 25 + a * b + b + 2 * b
    return p + MAP * MAP * n4 + 1


def tp_importance(name: str):
    import torch_pruning as tp

    return {"l1": lambda: tp.importance.MagnitudeImportance(p=1),
            "l2": lambda: tp.importance.MagnitudeImportance(p=2),
            "taylor": lambda: tp.importance.TaylorImportance()}[name]()


def taylor_gradients(view: ChannelFirstView, teacher, stream: ImageStream, batches: int) -> None:
    """Accumulate the gradient of the distillation loss on ``batches`` stream batches (eval mode)."""
    view.eval()
    view.zero_grad(set_to_none=True)
    for i in range(batches):
        x = stream(TAYLOR_STEP0 + i)
        y = teacher(x)
        loss = torch.mean((view(x) - y) ** 2)
        loss.backward()


def tp_plan(view: ChannelFirstView, importance: str, example: torch.Tensor, **kw):
    """Run Torch-Pruning's selection on ``view`` without pruning: (filters per layer, removed indices)."""
    import torch_pruning as tp

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = tp.pruner.MetaPruner(view, example, importance=tp_importance(importance),
                                      ignored_layers=[view.m.readout], **kw)
    owners = {mod: l for l, mod in enumerate(view.owners())}
    nums = [mod.out_channels for mod in view.owners()]
    removed: dict[int, list[int]] = {}
    groups = []
    for group in pruner.step(interactive=True):
        for dep, idxs in group:
            if dep.target.module in owners and pruner.DG.is_out_channel_pruning_fn(dep.handler):
                removed[owners[dep.target.module]] = sorted(int(i) for i in idxs)
        groups.append(group)
    kept = [n - len(removed.get(l, [])) for l, n in enumerate(nums)]
    return kept, removed, groups


def tp_prune(student: CompactModel, importance: str, mode: str, target_nums, teacher, stream: ImageStream,
             taylor_batches: int) -> tuple[CompactModel, dict]:
    """Prune ``student`` with Torch-Pruning to (about) ``target_nums`` filters / their parameter count."""
    view = ChannelFirstView(student)
    example = stream(TAYLOR_STEP0)[:2]
    if importance == "taylor":
        taylor_gradients(view, teacher, stream, taylor_batches)
    n = student.nums_filters
    target_params = num_params(target_nums)
    info: dict[str, Any] = {"mode": mode, "target_params": target_params}
    if mode == "layerwise":
        # int(n * (1 - ratio)) must give exactly k: a hair below (n - k) / n.
        ratios = {mod: (nl - k) / nl - 1e-9 for mod, nl, k in zip(view.owners(), n, target_nums)}
        kw = {"pruning_ratio": 0.0, "pruning_ratio_dict": ratios}
        info["ratios"] = [(nl - k) / nl for nl, k in zip(n, target_nums)]
    elif mode == "uniform":
        best = min((abs(num_params([max(1, int(nl * (1 - r))) for nl in n]) - target_params), r)
                   for r in np.linspace(0, 0.99, 991))
        kw = {"pruning_ratio": float(best[1])}
        info["ratio"] = float(best[1])
    elif mode == "global":
        # Bisection on the global channel ratio; a ratio that would empty a layer counts as too high.
        def params_at(r: float):
            kept, _, _ = tp_plan(view, importance, example, global_pruning=True, pruning_ratio=r)
            return (num_params(kept) if min(kept) >= 1 else -1), kept
        lo, hi = 0.0, 0.999
        tried = []
        for _ in range(22):
            mid = 0.5 * (lo + hi)
            p, kept = params_at(mid)
            tried.append((mid, p, kept))
            if p == -1 or p < target_params:
                hi = mid
            else:
                lo = mid
            if p == target_params:
                break
        valid = [t for t in tried if t[1] > 0]
        r = min(valid, key=lambda t: abs(t[1] - target_params))[0] if valid else 0.0
        kw = {"pruning_ratio": float(r), "global_pruning": True}
        info["ratio"] = float(r)
        info["bisection_trials"] = len(tried)
    else:
        raise ValueError(mode)
    kept, removed, groups = tp_plan(view, importance, example, **kw)
    if min(kept) < 1:
        raise RuntimeError(f"Torch-Pruning would remove every filter of a layer: {kept}")
    for g in groups:
        g.prune()
    pruned = view.to_compact()
    # Check: our surgery with the filters Torch-Pruning removed gives the same model.
    ref = student
    for layer in range(5):
        gone = set(removed.get(layer, []))
        if gone:
            ref = remove_filters(ref, layer, [j for j in range(student.nums_filters[layer]) if j not in gone])
    ref.eval()
    with torch.no_grad():
        x = stream(TAYLOR_STEP0 + 99)[:8]
        a, b = pruned(x).double().numpy(), ref(x).double().numpy()
    info.update({"nums_filters": pruned.nums_filters, "num_parameters": pruned.num_parameters(),
                 "planned_nums_filters": kept,
                 "check_rel_diff": common.max_rel_error(a, b),
                 "check_params_equal": pruned.num_parameters() == ref.num_parameters() == num_params(pruned.nums_filters),
                 "param_mismatch": (pruned.num_parameters() - target_params) / target_params})
    return pruned, info


# ----------------------------------------------------------------------------- (b) the run

def pruning_bench(args, task: common.PublishedNeuron, results: dict, save: Callable[[], None],
                  log: Callable[[str], None]) -> dict:
    torch.set_num_threads(args.train_threads)
    teacher_model, fit, test = task.model, task.fit, task.test
    teacher = common.EngineTeacher(teacher_model, args.train_threads)
    with torch.no_grad():
        x = ImageStream(fit, 8, 0.5, FT_SEED)(0)
        teacher_engine_vs_torch = common.max_rel_error(teacher(x).numpy(), teacher_model(x).double().numpy())
    student_test: list[np.ndarray] = []

    def evaluate_student(model: CompactModel) -> float:
        """Correlation with the unpruned student: how well pruning kept the pruned network's function."""
        return common.pearson(task.predict(model), student_test[0])

    out: dict[str, Any] = {
        "session": args.session, "neuron": args.neuron, "student_filters": args.filters,
        "distill_steps": args.distill_steps, "distill_lr": args.distill_lr, "batch": args.batch, "procedural_fraction": 0.5,
        "finetune_steps": args.finetune_steps, "finetune_lr": args.finetune_lr, "thresholds": args.thresholds,
        "importances": args.importances, "tp_modes": args.tp_modes, "taylor_batches": args.taylor_batches,
        "train_threads": args.train_threads, "stats_images": int(len(fit)), "test_images": int(len(test)),
        "teacher": {"nums_filters": teacher_model.nums_filters, "num_parameters": teacher_model.num_parameters(),
                    "r_recorded": common.pearson(task.teacher_test, task.recorded),
                    "engine_vs_torch_rel_diff": teacher_engine_vs_torch},
        "entries": [],
    }
    results["pruning"] = out

    if args.student:  # e.g. one neuron cut out of a population student (compactcortex compress's stage 1)
        student = CompactModel.load(args.student)
        if student.num_outputs > 1:
            student = student.single_output(args.student_output)
        out["distill"] = {"student_file": str(args.student), "output": args.student_output}
    else:
        student, out["distill"] = common.distill_student(task, teacher, args.outdir, args.filters,
                                                         args.distill_steps, args.batch, args.distill_lr, args.seed)
    student.eval()
    student_test.append(task.predict(student))
    out["student"] = {"nums_filters": student.nums_filters, "num_parameters": student.num_parameters(),
                      "r_teacher": task.r_teacher(student), "r_recorded": task.r_recorded(student)}
    log(f"student {student.nums_filters}: {student.num_parameters()} parameters, r(teacher) "
        f"{out['student']['r_teacher']:.4f}")
    save()

    stream = ImageStream(fit, args.batch, 0.5, FT_SEED)

    def finetune(model: CompactModel) -> dict:
        t = time.perf_counter()
        r = fine_tune(model, teacher, None, stream, args.finetune_steps, lr=args.finetune_lr, progress=False)
        model.eval()
        return {"finetune_seconds": time.perf_counter() - t, "finetune_final_loss": r["final_loss"]}

    n_jobs = 1 + len(args.thresholds) * (1 + len(args.importances) * len(args.tp_modes))
    bar = tqdm(total=n_jobs, desc="prune+fine-tune", unit="model")

    def record(entry: dict, model: CompactModel) -> None:
        if entry.get("r_teacher_pruned") is None:
            entry["r_teacher_pruned"] = task.r_teacher(model)
        entry["r_student_pruned"] = evaluate_student(model)
        entry.update(finetune(model))
        entry["r_teacher"] = task.r_teacher(model)
        entry["r_recorded"] = task.r_recorded(model)
        entry["r_student"] = evaluate_student(model)
        out["entries"].append(entry)
        save()
        bar.set_postfix_str(f"{entry['method']} {entry['num_parameters']} r={entry['r_teacher']:.3f}")
        bar.update(1)

    base = copy.deepcopy(student)
    record({"method": "unpruned", "threshold": None, "nums_filters": base.nums_filters,
            "num_parameters": base.num_parameters()}, base)

    for thr in args.thresholds:
        t = time.perf_counter()
        model, hist = prune_paper(copy.deepcopy(student), fit, threshold=thr, retrain=None, evaluate=task.r_teacher,
                                  threads=args.train_threads)
        entry = {"method": "ours", "threshold": thr, "nums_filters": model.nums_filters,
                 "num_parameters": model.num_parameters(), "prune_seconds": time.perf_counter() - t,
                 "history": common.history_rows(hist),
                 "r_teacher_pruned": hist[-1].accuracy}
        target = model.nums_filters
        record(entry, model)
        for imp in args.importances:
            for mode in args.tp_modes:
                t = time.perf_counter()
                pruned, info = tp_prune(student, imp, mode, target, teacher, stream, args.taylor_batches)
                entry = {"method": f"tp_{imp}_{mode}", "threshold": thr, **info,
                         "prune_seconds": time.perf_counter() - t}
                if info["check_rel_diff"] > 1e-4 or not info["check_params_equal"]:
                    log(f"WARNING: Torch-Pruning check failed for {entry['method']} at {thr}: {info}")
                record(entry, pruned)
    bar.close()
    return out


# ----------------------------------------------------------------------------- reporting

METHOD_STYLE = {"ours": ("C3", "o", "-"), "tp_l1": ("C0", "s", None), "tp_l2": ("C1", "^", None),
                "tp_taylor": ("C2", "D", None)}
MODE_LINE = {"layerwise": "--", "global": ":", "uniform": "-."}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pr = results["pruning"]
    entries = [e for e in pr["entries"] if e["method"] != "unpruned"]
    methods = list(dict.fromkeys(e["method"] for e in entries))
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.4), sharey=False)
    panels = [(axes[0], "r_teacher", f"after {pr['finetune_steps']} fine-tuning steps",
               "Pearson r with the teacher (test-half images)"),
              (axes[1], "r_teacher_pruned", "right after pruning (no fine-tuning)",
               "Pearson r with the teacher (test-half images)"),
              (axes[2], "r_student_pruned", "right after pruning: agreement with the unpruned student",
               "Pearson r with the unpruned student (test-half images)")]
    for ax, key, title, ylabel in panels:
        if not all(key in e for e in entries):
            ax.set_visible(False)
            continue
        for m in methods:
            es = sorted((e for e in entries if e["method"] == m), key=lambda e: e["num_parameters"])
            fam = "ours" if m == "ours" else m.rsplit("_", 1)[0]
            mode = None if m == "ours" else m.rsplit("_", 1)[1]
            color, marker, ls = METHOD_STYLE.get(fam, ("k", "x", "-"))
            label = "ours (prune_paper)" if m == "ours" else f"Torch-Pruning {fam[3:].upper() if fam != 'tp_taylor' else 'Taylor'} ({mode})"
            ax.plot([e["num_parameters"] for e in es], [e[key] for e in es], color=color, marker=marker,
                    ls=ls or MODE_LINE.get(mode, "--"), mfc="none" if mode == "global" else color, label=label, lw=1.4)
            if m == "ours" and key == "r_teacher":
                for e in es:
                    ax.annotate(f"{e['threshold']:g}", (e["num_parameters"], e[key]), textcoords="offset points",
                                xytext=(4, -12), fontsize=7, color=color)
        st = pr["student"]
        unp = [e for e in pr["entries"] if e["method"] == "unpruned"]
        ax.plot([st["num_parameters"]], [1.0 if key == "r_student_pruned" else st["r_teacher"]], "k*", ms=12,
                label=f"unpruned student {tuple(st['nums_filters'])}")
        if unp and key == "r_teacher":
            ax.plot([unp[0]["num_parameters"]], [unp[0]["r_teacher"]], "*", color="0.5", ms=10,
                    label="unpruned student + same fine-tuning")
        tparams = pr["teacher"]["num_parameters"]
        xs = [e["num_parameters"] for e in pr["entries"]] + [tparams]
        ax.set_xlim(min(xs) / 1.15, max(xs) * 1.15)
        ax.axvline(tparams, color="0.4", ls=":", lw=1)
        right = tparams >= max(e["num_parameters"] for e in pr["entries"])
        ax.annotate(f"teacher (published {tuple(pr['teacher']['nums_filters'])})\n{tparams} params",
                    (tparams, 0.02), xycoords=("data", "axes fraction"), fontsize=7, color="0.3",
                    xytext=(-3 if right else 3, 0), textcoords="offset points", ha="right" if right else "left")
        ax.set_xscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3, which="both")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=5, frameon=False)
    fig.suptitle(f"Pruning a distilled student of session {pr['session']} neuron {pr['neuron']}: "
                 f"{pr['finetune_steps']} fine-tuning steps at lr {pr['finetune_lr']:g} for every model", fontsize=11)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=130, format="png")
    finally:
        plt.close(fig)


def print_tables(results: dict) -> None:
    k = results.get("kernels")
    if k:
        print(f"\n(a) channel statistics on {k['images']} images: median seconds over {k['rounds']} rounds "
              f"(torch_f64: {k['f64_rounds']})")
        print(f"{'model':>30s} {'thr':>3s} {'engine':>8s} {'torch32':>8s} {'torch64':>8s} {'t32/eng':>7s} "
              f"{'t64/eng':>7s} {'maxrel eng':>10s} {'maxrel t32':>10s}")
        for s in k["settings"]:
            m = s["median_s"]
            print(f"{s['model']:>30s} {s['threads']:>3d} {m['engine']:8.3f} {m['torch_f32']:8.3f} {m['torch_f64']:8.3f} "
                  f"{s['ratio_torch_f32_over_engine']:6.1f}x {s['ratio_torch_f64_over_engine']:6.1f}x "
                  f"{s['max_rel_diff']['engine']:10.1e} {s['max_rel_diff']['torch_f32']:10.1e}")
    p = results.get("pruning")
    if p and p.get("entries"):
        t = p["teacher"]
        print(f"\n(b) teacher {tuple(t['nums_filters'])}: {t['num_parameters']} params, r(recorded) {t['r_recorded']:.4f}; "
              f"student {tuple(p['student']['nums_filters'])}: {p['student']['num_parameters']} params, "
              f"r(teacher) {p['student']['r_teacher']:.4f}, r(recorded) {p['student']['r_recorded']:.4f}")
        print("r: Pearson r with the teacher on the test-half images right after pruning ('r pruned') and after "
              "fine-tuning ('r +ft'); 'rS': with the unpruned student (after pruning / after fine-tuning); "
              "'r rec': with the recorded responses after fine-tuning; 'mism': parameter count relative to ours")
        print(f"{'method':>20s} {'thr':>5s} {'filters':>22s} {'params':>7s} {'mism':>6s} {'r pruned':>8s} "
              f"{'r +ft':>7s} {'rS pr':>7s} {'rS +ft':>7s} {'r rec':>7s}")
        for e in p["entries"]:
            mism = e.get("param_mismatch")
            print(f"{e['method']:>20s} {'' if e['threshold'] is None else format(e['threshold'], 'g'):>5s} "
                  f"{str(tuple(e['nums_filters'])):>22s} {e['num_parameters']:7d} "
                  f"{'' if mism is None else format(mism, '+.1%'):>6s} {e['r_teacher_pruned']:8.4f} "
                  f"{e['r_teacher']:7.4f} {e.get('r_student_pruned', float('nan')):7.4f} "
                  f"{e.get('r_student', float('nan')):7.4f} {e['r_recorded']:7.4f}")


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See the module docstring (head benchmarks/bench_pruning.py) for the method.")
    ap.add_argument("--quick", action="store_true", help="smoke run (< 2 min): tiny sizes, writes *_quick outputs")
    ap.add_argument("--skip-kernels", action="store_true",
                    help="skip part (a); the kernel numbers already in the JSON are kept (marked as carried over)")
    ap.add_argument("--skip-pruning", action="store_true",
                    help="skip part (b); the pruning numbers already in the JSON are kept (marked as carried over)")
    ap.add_argument("--plot-only", action="store_true", help="redraw the figure from the JSON and print the tables")
    ap.add_argument("--data", type=Path, default=common.DATA, help="V4 data folder (default ../shared/data/v4)")
    ap.add_argument("--session", default="190923")
    ap.add_argument("--neuron", type=int, default=0)
    ap.add_argument("--outdir", type=Path, default=common.RESULTS)
    ap.add_argument("--seed", type=int, default=0)
    g = ap.add_argument_group("(a) kernels")
    g.add_argument("--images", type=int, default=256, help="images for the statistics (default 256)")
    g.add_argument("--rounds", type=int, default=5, help="timed rounds (default 5)")
    g.add_argument("--f64-rounds", type=int, default=2, help="rounds that include the float64 PyTorch run (default 2)")
    g.add_argument("--threads", type=lambda s: [int(v) for v in s.split(",")], default=[1, 2], help="default 1,2")
    g = ap.add_argument_group("(b) pruning")
    g.add_argument("--filters", type=common.parse_filters, default=(32,) * 5, help="student filters: N or n0,..,n4 (default 32)")
    g.add_argument("--student", type=Path, default=None,
                   help="start from this CompactModel file instead of distilling one (a population student: "
                        "its output --student-output, which must be the teacher's neuron)")
    g.add_argument("--student-output", type=int, default=0)
    g.add_argument("--distill-steps", type=int, default=1200, help="default 1200")
    g.add_argument("--distill-lr", type=float, default=1e-3, help="distillation learning rate (default 1e-3, distill's)")
    g.add_argument("--batch", type=int, default=16)
    g.add_argument("--finetune-steps", type=int, default=50, help="fine-tuning after every pruning (default 50)")
    g.add_argument("--finetune-lr", type=float, default=3e-4,
                   help="fine-tuning learning rate (default 3e-4, fine_tune's)")
    g.add_argument("--thresholds", type=lambda s: [float(v) for v in s.split(",")], default=[0.7, 0.8, 0.9, 0.95, 0.99])
    g.add_argument("--importances", type=lambda s: s.split(","), default=["l1", "l2", "taylor"], help="l1,l2,taylor")
    g.add_argument("--tp-modes", type=lambda s: s.split(","), default=["layerwise", "global"],
                   help="Torch-Pruning ratio modes: layerwise,global,uniform (default layerwise,global)")
    g.add_argument("--taylor-batches", type=int, default=4)
    g.add_argument("--train-threads", type=int, default=1, help="torch and engine threads for training (default 1)")
    g.add_argument("--eval-threads", type=int, default=2)
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.rounds, args.f64_rounds, args.threads = 16, 2, 1, [1, 2]
        args.filters = (8,) * 5 if args.filters == (32,) * 5 else args.filters
        args.distill_steps, args.finetune_steps, args.batch = 4, 2, 8
        args.thresholds, args.taylor_batches = [0.8, 0.95], 1
    for m in args.tp_modes:
        if m not in ("layerwise", "global", "uniform"):
            ap.error(f"unknown --tp-modes entry {m!r}")
    for m in args.importances:
        if m not in ("l1", "l2", "taylor"):
            ap.error(f"unknown --importances entry {m!r}")
    suffix = "_quick" if args.quick else ""
    json_path = args.outdir / ("bench_pruning_quick.json" if args.quick else "bench_pruning_latest.json")
    png_path = args.outdir / f"pruning_accuracy_vs_params{suffix}.png"

    if args.plot_only:
        results = json.loads(json_path.read_text())
        print_tables(results)
        if results.get("pruning", {}).get("entries"):
            plot(results, png_path)
            print(f"figure: {png_path}")
        return 0

    if not args.skip_pruning and importlib.util.find_spec("torch_pruning") is None:
        ap.error("torch-pruning is missing: pip install torch-pruning")

    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "benchmark": "bench_pruning", "status": "running", "quick": args.quick,
        "started_utc": common.utc_now(), "command": common.command_line(argv),
        "machine": machine_info(), "load_average_start": common.load_average(),
    }
    save = lambda: common.write_json(json_path, results)  # noqa: E731
    log = lambda s: tqdm.write(s)  # noqa: E731

    task = common.published_neuron(args.data, args.session, args.neuron, args.eval_threads)
    results["teacher_file"] = str(task.path)

    if (args.skip_kernels or args.skip_pruning) and json_path.is_file():
        # Keep the numbers of a skipped part from the previous run in the file (marked as such).
        try:
            prev = json.loads(json_path.read_text())
        except (OSError, json.JSONDecodeError):
            prev = {}
        for part, skipped in (("kernels", args.skip_kernels), ("pruning", args.skip_pruning)):
            if skipped and prev.get(part):
                origin = {"carried_over_from_run_started_utc": prev.get("started_utc"),
                          "carried_over_run_status": prev.get("status"),
                          "carried_over_load_average_start": prev.get("load_average_start")}
                results[part] = {**origin, **prev[part]}  # a part carried over before keeps its origin
    if not args.skip_kernels:
        log(f"(a) channel statistics: {args.images} images, threads {args.threads}")
        t = time.perf_counter()
        results["kernels"] = kernel_bench(args, task.session.images[:args.images], task.model, log)
        results["kernels"]["seconds"] = time.perf_counter() - t
        save()
    if not args.skip_pruning:
        log(f"(b) pruning: student {args.filters}, distillation {args.distill_steps} steps, "
            f"fine-tuning {args.finetune_steps} steps")
        t = time.perf_counter()
        pruning_bench(args, task, results, save, log)
        results["pruning"]["seconds"] = time.perf_counter() - t
    results["status"] = "complete"
    results["seconds"] = time.perf_counter() - t_start
    results["load_average_end"] = common.load_average()
    save()
    print_tables(results)
    if results.get("pruning", {}).get("entries"):
        plot(results, png_path)
        print(f"\nfigure: {png_path}")
    print(f"results: {json_path}  ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
