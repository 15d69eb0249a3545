"""The main job: the paper's pipeline end to end on the embedded digital V4 population.

Record ground-truth model neurons in silico with the paper's adaptive closed loop (a few rounds
of fitting a teacher ensemble and recording the candidate images its members disagree on most),
distil a few neurons at once into one shared student, cut out and prune each neuron's compact
model (the paper's rule, with re-training; the recipe of ``compactcortex compress``), evaluate
against held-out trials (R2_ER) and against the ground truth on fresh images, time the compact
models' engine against PyTorch, and write a report folder. Every stage's result is saved
atomically and reused by a rerun with the same ``--out``, so an interrupted demo resumes.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_path, write_json

__all__ = ["DemoConfig", "run_demo"]


def _opt(default, help: str):
    """A field with its command-line help."""
    return field(default=default, metadata={"help": help})


@dataclass
class DemoConfig:
    """Sizes of the demo (each field's ``metadata["help"]`` is its ``--option``'s help). The defaults finish within 10 minutes on 2 CPU cores (213 s measured on
    this project's quiet 2-core Intel Xeon, 2026-12-01).

    The recipe is :class:`compactcortex.compress.Recipe`'s (population distillation,
    pruning in ``rounds`` passes, a final fine-tuning), with smaller sizes: the paper's students
    have 100 filters per layer and are distilled for far longer.
    """

    neurons: int = _opt(3, "neurons distilled and pruned (those with the highest noise ceiling)")
    population: int = _opt(16, "model neurons recorded (the teacher fits all of them)")
    test_images: int = _opt(400, "recorded once, never trained on: R2_ER on their held-out trials")
    initial_images: int = _opt(200, "closed loop: images recorded at random before the first fit")
    loop_rounds: int = _opt(3, "closed loop: rounds of choosing images")
    images_per_round: int = _opt(200, "closed loop: images chosen per round by ensemble disagreement")
    candidates: int = _opt(3000, "closed loop: procedural candidate images to choose from")
    repeats: int = _opt(10, "trials per image")
    seed: int = _opt(0, "random seed")
    members: int = _opt(2, "teacher ensemble members")
    teacher_epochs: int = _opt(10, "teacher epochs")
    student_filters: int = _opt(32, "filters per layer of the shared student before pruning")
    distill_steps: int = _opt(600, "steps of the shared student (every step serves every neuron)")
    distill_lr: float = _opt(2e-3, "distillation learning rate")
    pool_size: int = _opt(4096, "teacher-labelled images the shared student trains on")
    batch: int = _opt(16, "images per step")
    threshold: float = _opt(0.9, "pruning: fraction of each layer's output variance kept")
    rounds: int = _opt(2, "pruning passes over the layers")
    retrain_steps: int = _opt(40, "re-training steps after each pruned layer")
    final_steps: int = _opt(150, "fine-tuning steps of each compact model at the end")
    fresh_images: int = _opt(200, "new images on which compact models meet the ground truth")
    threads: int | None = _opt(None, "CPU threads (default: all available)")


def _stage(path: Path, make, load, save):
    """Load ``path`` if an earlier run saved it, else make the result and save it atomically."""
    if path.exists():
        return load(path)
    result = make()
    save(result, path)
    return result


def run_demo(out: str | Path, cfg: DemoConfig | None = None, progress: bool = True) -> dict:
    """Run the demo into folder ``out``; returns the summary (also ``out/summary.json``)."""
    import torch

    from .bench import compare_with_torch
    from .data.digital import digital_population, noise_ceiling
    from .data.procedural import procedural
    from .data.session import Session
    from .engine.compile import compile
    from .engine.predictor import Predictor
    from .compress import Recipe, prune_and_retrain
    from .fit import TrainConfig, fit_teacher, load_teacher, save_teacher
    from .fit.closed_loop import Rig, closed_loop
    from .fit.distill import distill_population
    from .metrics import noise_corrected_r2, pearson_r1
    from .models.compact import CompactModel

    cfg = cfg or DemoConfig()
    out = Path(out)
    t0 = time.perf_counter()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    say = print if progress else (lambda *a, **k: None)

    say("[1/7] digital V4 population: ground-truth model neurons and an in-silico rig")
    truth = digital_population(cfg.population, 2, seed=cfg.seed).neurons
    budget = cfg.test_images + cfg.initial_images + cfg.loop_rounds * cfg.images_per_round
    rig = Rig(truth.rates, budget, seed=cfg.seed)
    test_images = procedural(cfg.test_images, seed=cfg.seed + 7919)
    raw = rig.record(test_images, cfg.repeats)  # the rig's first call: the same trials on a rerun
    test = Session("digital_test", test_images, raw.mean(axis=2), raw)
    ceiling = noise_ceiling(truth.rates(test_images), np.full(cfg.test_images, cfg.repeats))
    neurons = [int(k) for k in np.argsort(-ceiling, kind="stable")[:cfg.neurons]]

    say(f"[2/7] closed loop: {cfg.initial_images} random images, then {cfg.loop_rounds} rounds of "
        f"{cfg.images_per_round} chosen by ensemble disagreement among {cfg.candidates} candidates")

    def fit(session):
        return fit_teacher(session, cfg.members, np.arange(session.num_images),
                           config=TrainConfig(epochs=cfg.teacher_epochs, seed=cfg.seed), progress=False)

    fresh = procedural(cfg.fresh_images, seed=cfg.seed + 104729)
    teacher_path = out / "models" / "teacher.safetensors"
    loop_path = out / "data" / "closed_loop.json"
    if teacher_path.is_file() and loop_path.is_file():
        teacher, loop = load_teacher(teacher_path), json.loads(loop_path.read_text())
        with np.load(out / "data" / "recorded.npz", allow_pickle=False) as z:
            s = Session("closed_loop", z["images"], z["raw"].mean(axis=2), z["raw"])
    else:
        candidates = procedural(cfg.candidates, seed=cfg.seed + 15485863)
        teacher, s, history = closed_loop(rig, cfg.loop_rounds, cfg.images_per_round, candidates, fit, fresh,
                                          cfg.initial_images, cfg.repeats, "active", seed=cfg.seed,
                                          checkpoint_dir=out / "work" / "loop", progress=progress)
        loop = {"rounds": history}
        (out / "data").mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "data" / "recorded.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, images=s.images, raw=s.raw)
        save_teacher(teacher, teacher_path)
        write_json(loop_path, loop)
    fit_images = s.images
    teacher_params = sum(p.numel() for p in teacher.parameters())
    teacher_test = teacher.predict(test.images).T  # (neurons, test images)
    truth_fresh, teacher_fresh = truth.rates(fresh), teacher.predict(fresh).T

    def r2er(k, pred):
        return float(noise_corrected_r2(test.raw[k:k + 1], pred[None])[0])

    def engine_pred(model, images):
        return Predictor(compile(model), threads=cfg.threads).predict(images).astype(np.float64)

    say(f"[3/7] distil neurons {neurons} at once into one {cfg.student_filters}-filter shared student")
    shared = _stage(out / "models" / "shared_student.safetensors",
                    lambda: distill_population(teacher, neurons, fit_images, cfg.distill_steps, cfg.batch,
                                               (cfg.student_filters,) * 5, cfg.pool_size, lr=cfg.distill_lr,
                                               seed=cfg.seed, checkpoint=out / "work" / "shared_student.pt",
                                               progress=progress),
                    CompactModel.load, lambda m, p: m.save(p))
    recipe = Recipe(batch=cfg.batch, retrain_steps=cfg.retrain_steps, threshold=cfg.threshold, rounds=cfg.rounds,
                    final_steps=cfg.final_steps, seed=cfg.seed)
    rows, compacts = [], []
    for i, k in enumerate(neurons):
        student = shared.single_output(i)
        say(f"[4/7] neuron {k} ({i + 1}/{len(neurons)}): prune (threshold {cfg.threshold}, {cfg.rounds} passes) "
            "and re-train")

        def make_compact(student=student, k=k):
            compact, history = prune_and_retrain(student, lambda x, k=k: teacher(x)[:, k], fit_images, recipe,
                                                 out / "work", f"neuron{k}", seed=cfg.seed + 1000 * (k + 1),
                                                 threads=cfg.threads)
            compact.provenance = {**student.provenance, "pruning": [
                {"layer": h.layer, "round": h.extra.get("round"), "nums_filters": list(h.nums_filters),
                 "params": h.num_parameters, "explained": h.explained} for h in history]}
            return compact

        compact = _stage(out / "models" / f"compact_n{k}.safetensors", make_compact, CompactModel.load,
                         lambda m, p: m.save(p))
        compile(compact).save(out / "models" / f"compact_n{k}.plan")
        pred_student, pred_compact = engine_pred(student, test.images), engine_pred(compact, test.images)
        rows.append({
            "neuron": k,
            "noise_ceiling": float(ceiling[k]),
            "teacher_params": int(teacher_params),
            "student_params": student.num_parameters(),
            "compact_params": compact.num_parameters(),
            "compact_filters": list(compact.nums_filters),
            "r2er_teacher": r2er(k, teacher_test[k]),
            "r2er_student": r2er(k, pred_student),
            "r2er_compact": r2er(k, pred_compact),
            "r_compact_vs_teacher": pearson_r1(teacher_test[k], pred_compact),
            "r_teacher_vs_truth": pearson_r1(truth_fresh[k], teacher_fresh[k]),
            "r_compact_vs_truth": pearson_r1(truth_fresh[k], engine_pred(compact, fresh)),
        })
        compacts.append((compact, pred_compact))

    say("[5/7] engine vs PyTorch eager on the compact models")
    speed = [compare_with_torch(m, compile(m), cfg.threads or 1, 64, rounds=5, progress=False) for m, _ in compacts]
    summary = {
        "neurons": rows,
        "engine_speedup_vs_torch": float(np.median([r["speedup_vs_torch_eager"] for r in speed])),
        "engine_ms_per_image": float(np.median([r["ms_per_image"]["engine"] for r in speed])),
        "torch_ms_per_image": float(np.median([r["ms_per_image"]["torch_eager"] for r in speed])),
        "closed_loop": loop["rounds"],
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "config": asdict(cfg),
    }
    say("[6/7] plots")
    from .plots.reports import plot_closed_loop

    plot_closed_loop({"active": [loop["rounds"]]}, out / "closed_loop.png")
    say("[7/7] report")
    _write_report(out, summary, compacts, test, teacher_test)
    return summary


def _write_report(out: Path, summary: dict, compacts, test, teacher_test) -> None:
    from .plots.reports import plot_accuracy_vs_params, plot_layer0_filters, plot_predicted_vs_measured

    plot_accuracy_vs_params(summary["neurons"], out / "accuracy_vs_params.png")
    plot_predicted_vs_measured([r["neuron"] for r in summary["neurons"]], [p for _, p in compacts],
                               test.responses, out / "predicted_vs_measured.png")
    plot_layer0_filters([m for m, _ in compacts], [r["neuron"] for r in summary["neurons"]], out / "layer0_filters.png")
    write_json(out / "summary.json", summary)
    lines = ["# compactcortex demo", "",
             "The paper's pipeline on the embedded digital V4 population: closed-loop recording and teacher "
             "ensemble -> distilled student -> pruned compact model, per neuron. R2_ER: noise-corrected R2 on "
             "the held-out trials of test images never trained on; r vs truth: correlation with the "
             "ground-truth neuron on fresh images.", "",
             "| round | recorded images | median r2 of the teacher with the truth (all neurons) |", "|---|---|---|",
             *[f"| {h['round']} | {h['images']} | {h['r2_truth_median']:.3f} |" for h in summary["closed_loop"]], "",
             "| neuron | noise ceiling | teacher params | student params | compact params | compact filters "
             "| R2_ER teacher | R2_ER student | R2_ER compact | r compact vs truth |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["neurons"]:
        lines.append(f"| {r['neuron']} | {r['noise_ceiling']:.2f} | {r['teacher_params']:,} | {r['student_params']:,} | "
                     f"{r['compact_params']:,} | {tuple(r['compact_filters'])} | {r['r2er_teacher']:.2f} | "
                     f"{r['r2er_student']:.2f} | {r['r2er_compact']:.2f} | {r['r_compact_vs_truth']:.2f} |")
    lines += ["", f"Engine vs PyTorch eager on the compact models (batch 64): {summary['engine_speedup_vs_torch']:.1f}x "
              f"({summary['engine_ms_per_image']:.3f} vs {summary['torch_ms_per_image']:.3f} ms per image).",
              f"Elapsed: {summary['elapsed_s']:.0f} s.", "",
              "![closed loop](closed_loop.png)", "",
              "![accuracy vs parameters](accuracy_vs_params.png)", "",
              "![predicted vs measured](predicted_vs_measured.png)", "",
              "![layer-0 filters](layer0_filters.png)", ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
