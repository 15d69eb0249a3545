"""Stage 1 of a run, shared by its neurons: the session's data and teacher, the shared student
distilled from it (saved in the run's folder), the teacher's test-half outputs; and each
neuron's stage 2 with its summary row (:meth:`SessionRun.compress`)."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data.session import load_session
from ..devices import resolve_device
from ..files import write_json
from ..metrics import pearson_r1
from ..models.compact import CompactModel
from ..models.image_tensor import to_tensor
from .neuron import prune_and_retrain
from .recipe import Recipe
from .teachers import check_teacher, load_run_teacher, published_models, resolve_teacher_backbone

if TYPE_CHECKING:
    from .job import NeuronJob

__all__ = ["SessionRun", "prepare_run", "session_run", "claim_folder"]


def _to_jsonable(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


class SessionRun:
    """A run's session-level state: data, teacher, stage 1's shared student, test-half outputs."""

    def __init__(self, job: NeuronJob, progress: bool, train_shared: bool) -> None:
        from ..engine.inputs import default_threads
        from ..fit.distill import distill_population, population_pool

        self.root, self.out, self.session = Path(job.root), Path(job.out), str(job.session)
        self.recipe = Recipe(**{**job.recipe, "filters": tuple(job.recipe["filters"])})
        self.threads = default_threads() if job.threads is None else int(job.threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        self.device = str(resolve_device(job.device))  # before anything runs: a missing GPU fails here
        recorded = load_session(self.root, job.images_from) if job.images_from else None
        self.data = load_session(self.root, self.session, images=job.images_from is None)
        image_source = recorded or self.data
        n_neurons = self.data.num_neurons
        self.chosen = list(range(n_neurons)) if job.neurons is None else [int(k) for k in job.neurons]
        self.all_neurons = job.neurons is None
        bad = [k for k in self.chosen if not 0 <= k < n_neurons]
        if bad or not self.chosen:
            raise ValueError(f"session {self.session}: no neuron(s) {bad or '(none chosen)'}; it has 0..{n_neurons - 1}")
        if len(set(self.chosen)) != len(self.chosen):
            raise ValueError(f"neurons listed twice: {sorted(k for k in set(self.chosen) if self.chosen.count(k) > 1)}")
        published = published_models(self.root, self.session)
        if job.teacher != "fit" and job.backbone not in (None, "auto"):
            raise ValueError(f"--backbone applies to --teacher fit only (the teacher here: {job.teacher[:200]!r})")
        # Every input is checked (files loaded) before the folder is claimed: a corrected rerun
        # must not be refused for the settings of one that never started.
        loaded = check_teacher(job.teacher, self.root, self.session, self.chosen, published)
        self.trunk_file = resolve_teacher_backbone(job.backbone, self.root) if job.teacher == "fit" else None
        backbone = None
        if self.trunk_file is not None:  # loaded once: checked here, fitted on below
            from ..fit.transfer import resolve_backbone

            backbone = resolve_backbone(self.trunk_file)
        claim_folder(self.out, {"session": self.session, "teacher": job.teacher, "images_from": job.images_from,
                                 "backbone": self.trunk_file and self.trunk_file.name, "recipe": asdict(self.recipe)})
        tag = "neurons_" + ("all" if job.neurons is None else "_".join(map(str, self.chosen)))
        work = self.out / "work"
        self.neuron_work = work / tag  # re-training checkpoints belong to this stage 1's student
        self.neuron_work.mkdir(parents=True, exist_ok=True)
        (self.out / "neurons").mkdir(exist_ok=True)
        torch.set_num_threads(self.threads)
        if job.teacher == "fit" and progress:
            print(f"teacher: readouts on the frozen trunk of {self.trunk_file}" if self.trunk_file else
                  f"teacher: from scratch (no shared compact model under {self.root}; --backbone names one)")
        self.teacher = load_run_teacher(job.teacher, self.data, self.chosen, self.out, self.threads, self.recipe,
                                        published, progress, backbone, loaded)
        self.fit = image_source.images[image_source.fit_indices]
        # What distillation and re-training draw their natural images from: the fit half, and with
        # the recipe's other_session_images the data folder's other sessions' images (never a near
        # copy of this session's, test half included). Pruning's statistics stay on the fit half.
        self.train_images = self.fit
        if self.recipe.other_session_images:
            from ..data.natural import other_session_images

            extra = other_session_images(self.root, image_source.images, exclude={self.session, image_source.name})
            self.train_images = np.concatenate([self.fit, extra])
        self.test = image_source.images[image_source.test_indices]
        # in batches: a 200-filter trunk in PyTorch holds ~23 MB of maps per image
        self.teacher_test = np.zeros((len(self.test), len(self.chosen)), np.float32)
        for i in range(0, len(self.test), _TEST_BATCH):
            y = self.teacher.population(to_tensor(self.test[i:i + _TEST_BATCH]))
            self.teacher_test[i:i + _TEST_BATCH] = np.asarray(y, np.float32).reshape(-1, len(self.chosen))
        self.same_images = job.images_from is None
        shared_path, ckpt = work / f"population_{tag}.safetensors", work / f"population_{tag}.ckpt"
        r = self.recipe
        if shared_path.is_file():
            self.shared = CompactModel.load(shared_path)
        elif train_shared:
            self.shared = distill_population(self.teacher.population, None, self.train_images, r.population_steps, r.batch,
                                             r.filters, r.pool_size, r.procedural_fraction, r.lr, r.seed,
                                             checkpoint=ckpt, progress=progress, device=self.device)
            self.shared.save(shared_path)
        else:
            raise ValueError(f"{shared_path}: stage 1 (the shared student) has not been run for this job; run "
                             "prepare_run(job) (compress_session does) before the neurons")
        self.pool = None
        if self.teacher.kind != "published":  # a fitted teacher runs in PyTorch: re-train on stage 1's pool
            self.pool = population_pool(self.teacher.population, None, self.train_images, r.pool_size, r.batch,
                                        r.procedural_fraction, r.seed, ckpt, progress)

    def compress(self, k: int) -> dict:
        """Stage 2 for neuron ``k``: cut it out, prune and re-train, save, evaluate; its summary row."""
        from ..engine.compile import compile
        from ..engine.predictor import Predictor
        from ..metrics import noise_corrected_r2

        if k not in self.chosen:
            raise ValueError(f"neuron {k} was not distilled in this run (its neurons: {self.chosen})")
        i, r, tch = self.chosen.index(k), self.recipe, self.teacher

        def r_teacher(m: CompactModel) -> float:  # recorded in the trace; decides nothing
            return pearson_r1(Predictor(compile(m), threads=self.threads).predict(self.test), self.teacher_test[:, i])

        compact, history = prune_and_retrain(self.shared.single_output(i), tch.per_neuron(k), self.fit, r,
                                             self.neuron_work, f"neuron{k}", seed=r.seed + 1000 * (k + 1),
                                             threads=self.threads, pool=self.pool, pool_column=i,
                                             evaluate=r_teacher, train_images=self.train_images,
                                             device=self.device)
        compact.provenance = {"session": self.session, "neuron": k, "teacher": tch.kind, "recipe": asdict(r),
                              "pruning": [{"layer": s.layer, "round": s.extra.get("round"),
                                           "filters": list(s.nums_filters), "explained": s.explained}
                                          for s in history]}
        compact.save(self.out / f"neuron{k}.safetensors")
        plan = compile(compact)
        plan.save(self.out / f"neuron{k}.plan")
        pred = Predictor(plan, threads=self.threads).predict(self.test)
        row = {"neuron": k, "distilled_with": None if self.all_neurons else list(self.chosen),
               "teacher_params": int(tch.params(k)), "compact_params": compact.num_parameters(),
               "compact_filters": list(compact.nums_filters), "published_params": tch.published.get(k),
               "r_teacher_test": pearson_r1(pred, self.teacher_test[:, i]), "r_test": None,
               "r_teacher_model_test": None, "r2er_test": None, "r2er_teacher_test": None,
               # where r with the teacher (held-out half) went: the shared student's neuron, then
               # after each pruned and re-trained layer; the final fine-tuning gives r_teacher_test
               "r_teacher_trace": [{"layer": s.layer, "round": s.extra.get("round"), "filters": list(s.nums_filters),
                                    "r": _to_jsonable(s.accuracy)} for s in history]}
        if self.same_images:
            data = self.data
            resp = data.responses[k, data.test_indices]
            row["r_test"] = pearson_r1(pred, resp)
            row["r_teacher_model_test"] = pearson_r1(self.teacher_test[:, i], resp)
            if data.raw is not None:
                raw = data.raw[k:k + 1, data.test_indices]
                row["r2er_test"] = float(noise_corrected_r2(raw, pred[None])[0])
                row["r2er_teacher_test"] = float(noise_corrected_r2(raw, self.teacher_test[None, :, i].astype(np.float64))[0])
        return {key: _to_jsonable(v) for key, v in row.items()}


_TEST_BATCH = 32  # test-half images per teacher call
_RUNS: dict[str, SessionRun] = {}  # the last run's state, reused by its neurons in this process


def prepare_run(job: NeuronJob, progress: bool = True) -> None:
    """Stage 1 of ``job``'s run (teacher, shared student), saved under its output folder; the
    neurons' :func:`compress_neuron` calls then start from it (in this process or any other)."""
    session_run(job, progress, train_shared=True)


def session_run(job: NeuronJob, progress: bool, train_shared: bool) -> SessionRun:
    key = job.session_key()
    if key not in _RUNS:
        run = SessionRun(job, progress, train_shared)
        _RUNS.clear()
        _RUNS[key] = run
    return _RUNS[key]


def claim_folder(out: Path, settings: dict) -> None:
    """Refuse an output folder written with other settings: its checkpoints would be trusted."""
    path = out / "settings.json"
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    if path.is_file():
        old = json.loads(path.read_text())
        if isinstance(old.get("recipe"), dict):  # fields added to Recipe since default to the old behaviour
            old["recipe"] = {**json.loads(json.dumps(asdict(Recipe()))), **old["recipe"]}
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{out} holds a run with other settings ({', '.join(diff)} differ); "
                             "use another --out, or delete it to start over")
        return
    write_json(path, settings)
