"""The compression pipeline: a session's teacher -> one compact model per neuron, with a summary.

Recipe (see :class:`Recipe`; measured in ``benchmarks/population_distill.py`` and the README):

1. **Population distillation.** All chosen neurons are distilled at once into one shared
   student (one trunk, a readout row per neuron; :func:`~compactcortex.fit.distill_population`):
   every training step serves every neuron, and the teacher runs once per image of a fixed pool.
2. **Per-neuron pruning.** Each neuron's model is cut out of the shared student
   (:meth:`CompactModel.single_output`) and pruned by the paper's procedure (``prune_paper``:
   layers 4, 3, 2, 1, 0 at the variance threshold), re-trained on that neuron's teacher after
   each layer, in several passes (a shared trunk spreads a neuron over many filters; each pass
   concentrates it further), then fine-tuned once more.

Distillation images are the session's fit-half images (shifted) mixed with procedural images;
the test half is only used for the summary's held-out numbers. Everything is resumable: the
shared student checkpoints while it trains, each re-training checkpoints, and a finished neuron's
result (``neurons/neuron<k>.json``) is reused as it is.
"""
from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..files import atomic_path, write_json
from ..data.session import Session, load_session
from ..models.compact import CompactModel
from ..models.image_tensor import to_tensor

__all__ = ["Recipe", "NeuronJob", "compress_session", "compress_neuron", "prepare_run", "prune_and_retrain", "resolve_teacher_backbone", "DEFAULT_BACKBONE_FILTERS"]


@dataclass
class Recipe:
    """The settings of :func:`compress_session`; the defaults are the best measured recipe."""

    filters: tuple[int, ...] = (64, 96, 64, 64, 64)  # the shared student's filters per layer
    population_steps: int = 4000                     # steps of the shared student
    pool_size: int = 32768                           # teacher-labelled images it trains on
    batch: int = 32
    lr: float = 2e-3
    retrain_steps: int = 40                          # per pruned layer, on the neuron's teacher
    retrain_lr: float = 5e-4
    threshold: float = 0.9                           # prune_paper's variance threshold ...
    rounds: int = 3                                  # ... applied in this many passes over the layers
    final_steps: int = 200                           # fine-tuning of the compact model at the end
    procedural_fraction: float = 0.5
    seed: int = 0
    teacher_members: int = 4                         # --teacher fit: ensemble members (readouts) ...
    teacher_epochs: int = 20                         # ... and epochs from scratch (early-stopped)

    def scaled(self, minutes_per_neuron: float | None) -> "Recipe":
        """This recipe with its budget (steps and pool) scaled to ``minutes_per_neuron`` on 2 cores.

        The defaults take about :data:`DEFAULT_MINUTES_PER_NEURON` minutes per neuron (amortised:
        the shared stage divided over a 33-neuron session, plus each neuron's own stage); the
        budget scales in proportion, never below a quarter of the defaults. Only an estimate:
        the shared stage's share per neuron shrinks as the session grows.
        """
        if minutes_per_neuron is None:
            return self
        if not minutes_per_neuron > 0:
            raise ValueError(f"minutes per neuron must be > 0, got {minutes_per_neuron}")
        f = max(0.25, float(minutes_per_neuron) / DEFAULT_MINUTES_PER_NEURON)
        return Recipe(**{**asdict(self), "population_steps": max(1, int(self.population_steps * f)),
                         "pool_size": max(self.batch, int(self.pool_size * f)),
                         "retrain_steps": max(1, int(self.retrain_steps * f)),
                         "final_steps": max(1, int(self.final_steps * f))})


#: Measured cost of the default Recipe on 2 cores (session 190923, 33 neurons; see the README).
DEFAULT_MINUTES_PER_NEURON = 2.2


def prune_and_retrain(model: CompactModel, teacher: Callable, images: np.ndarray, recipe: Recipe,
                      work: Path | None = None, name: str = "model", seed: int = 0,
                      threads: int | None = None, pool=None, pool_column: int = 0) -> tuple[CompactModel, list]:
    """One neuron's stage 2: ``prune_paper`` in ``recipe.rounds`` passes, then a final fine-tuning.

    ``teacher`` maps recentred images to this neuron's responses (N,); ``images`` (N,112,112,3)
    uint8 are the fit-half images (statistics, and mixed with procedural images for re-training).
    With ``pool`` (the stage-1 :class:`~compactcortex.fit.TargetPool`), re-training draws its
    batches and targets (column ``pool_column``) from it instead of running the teacher: for a
    teacher slower than the engine (a fitted one runs in PyTorch) that is most of the cost.
    With ``work``, every re-training checkpoints to ``work/<name>_train<i>.ckpt``, so a killed
    run resumes (pruning itself is deterministic given the weights). Returns (compact, history).
    """
    from ..fit.distill import ImageStream, fine_tune
    from .prune import prune_paper

    calls = itertools.count()  # the re-trainings in order, each with its own image stream

    def retrain(m: CompactModel, steps: int = recipe.retrain_steps) -> CompactModel:
        c = next(calls)
        if pool is None:
            stream = ImageStream(images, recipe.batch, recipe.procedural_fraction, seed + c)
        else:
            def stream(step: int, offset: int = (seed + c) * 1_000_003):
                x, y = pool(offset + step)
                return x, (y if y.dim() == 1 else y[:, pool_column])
        fine_tune(m, teacher, None, stream, steps, lr=recipe.retrain_lr, desc=name, progress=False,
                  checkpoint=None if work is None else Path(work) / f"{name}_train{c}.ckpt")
        return m

    compact, history = prune_paper(model.eval(), images, recipe.threshold, retrain=retrain, threads=threads,
                                   rounds=recipe.rounds)
    return retrain(compact, recipe.final_steps).eval(), history


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (images,) vectors (NaN if one is constant): metrics.pearson_r on one row."""
    from ..metrics import pearson_r

    return float(pearson_r(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0])


@dataclass
class _Teacher:
    """The session's teacher: images -> (N, chosen neurons), one neuron's callable, sizes."""

    kind: str                                 # "published", "fit" or the teacher file
    population: Callable                      # recentred images (N,3,112,112) -> (N, K)
    per_neuron: Callable[[int], Callable]     # neuron -> (images -> (N,))
    params: Callable[[int], int]              # neuron -> the teacher's parameter count
    published: dict[int, int]                 # neuron -> its published model's parameters


def _published_params(root: Path, session: str) -> dict[int, int]:
    from ..models.published import load_published_session

    try:
        return {k: m.num_parameters() for k, m in enumerate(load_published_session(root, session))}
    except ValueError:
        return {}


def _check_teacher(spec: str, root: Path, session: str, neurons: list[int], published: dict[int, int]):
    """Checks of the teacher choice, before anything is written; a teacher file is loaded here
    (and returned), so that a corrupt one fails before the output folder is claimed."""
    if spec == "published":
        if not published:
            raise ValueError(f"session {session} has no published compact models under {root}")
        missing = [k for k in neurons if k not in published]
        if missing:
            raise ValueError(f"session {session}: no published model for neuron(s) {missing} "
                             f"(models exist for 0..{len(published) - 1})")
    elif spec != "fit":
        if not Path(spec).is_file():
            raise ValueError(f"--teacher {spec[:200]!r}: not 'published', 'fit' or an existing teacher file")
        from ..fit.teacher import load_teacher

        return load_teacher(spec)
    return None


def resolve_teacher_backbone(backbone: str | None, root: Path) -> Path | None:
    """The trunk ``--teacher fit`` builds on: ``"auto"`` finds the shared compact model with
    :data:`DEFAULT_BACKBONE_FILTERS` filters under ``root`` (None where there is none: a teacher
    from scratch), ``"none"``/None means from scratch, ``"shared_compact_<N>"`` or a path name one."""
    from ..models.keras_files import shared_model_filters, shared_model_path

    if backbone is None or backbone == "none":
        return None
    if backbone == "auto":
        try:
            return shared_model_path(root, DEFAULT_BACKBONE_FILTERS)
        except ValueError:
            return None
    if (filters := shared_model_filters(backbone)) is not None:
        return shared_model_path(root, filters)
    if not Path(backbone).is_file():
        raise ValueError(f"--backbone {backbone[:200]!r}: not 'auto', 'none', 'shared_compact_<N>' or an existing .keras or "
                         "trunk file")
    return Path(backbone)


#: Filters (layers 0-2) of the shared compact model whose trunk ``--teacher fit`` uses by default
#: (measured best of 50/100/200 on 210325: ``benchmarks/teachers.py``).
DEFAULT_BACKBONE_FILTERS = 200


def _load_teacher(spec: str, root: Path, session: Session, neurons: list[int], out: Path, threads: int,
                  recipe: Recipe, published: dict[int, int], progress: bool, backbone: Path | None,
                  loaded=None) -> _Teacher:
    """The run's teacher; ``loaded``: the teacher file ``spec``, already loaded by _check_teacher."""
    from ..engine.population import PopulationPredictor
    from ..engine.predictor import Predictor
    from ..fit.training import TrainConfig
    from ..fit.teacher import fit_teacher, load_teacher, save_teacher
    from ..fit.transfer import use_engine
    from ..models.transfer import TransferTeacher

    if spec == "published":
        from ..models.published import load_published_session

        models = load_published_session(root, session.name)
        chosen = {k: models[k] for k in neurons}
        pop = PopulationPredictor([chosen[k] for k in neurons], threads=threads)
        return _Teacher("published", pop, lambda k: Predictor(chosen[k], threads=threads),
                        lambda k: chosen[k].num_parameters(), published)
    if spec == "fit":
        path = out / "teacher.safetensors"
        if path.is_file():
            ens = load_teacher(path)
        else:
            cfg = TrainConfig(epochs=recipe.teacher_epochs, seed=recipe.seed)
            ens = fit_teacher(session, recipe.teacher_members, config=cfg, checkpoint_dir=out / "work" / "teacher",
                              progress=progress, backbone=backbone)
            save_teacher(ens, path)
    else:
        ens = loaded if loaded is not None else load_teacher(spec)
    if ens.num_neurons != session.num_neurons:
        raise ValueError(f"the teacher predicts {ens.num_neurons} neurons, session {session.name} has "
                         f"{session.num_neurons}")
    ens.eval()
    if isinstance(ens, TransferTeacher):
        use_engine(ens, threads)  # the trunk's maps from the C++ engine: the pool's labelling
    n_params = sum(p.numel() for p in ens.parameters())

    def population(x):
        with torch.no_grad():
            return ens(torch.as_tensor(x))[:, neurons]

    def one(k):
        return lambda x: population(x)[:, neurons.index(k)]

    return _Teacher("fit" if spec == "fit" else str(spec), population, one, lambda k: n_params, published)


def _to_jsonable(v):
    return None if v is None or (isinstance(v, float) and not np.isfinite(v)) else v


@dataclass(frozen=True)
class NeuronJob:
    """One neuron's compression as plain values (JSON via :meth:`to_dict`): a unit of work that
    any process can run with :func:`compress_neuron`, given the data and the output folder.

    ``neurons`` is the set distilled together in stage 1 (None: all of the session's); ``recipe``
    a :class:`Recipe` as a dict (its ``seed`` seeds every stage); the rest as for
    :func:`compress_session`.
    """

    root: str
    session: str
    neuron: int
    out: str
    teacher: str = "published"
    neurons: tuple[int, ...] | None = None
    recipe: dict = field(default_factory=lambda: asdict(Recipe()))
    threads: int | None = None
    images_from: str | None = None
    backbone: str | None = "auto"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "NeuronJob":
        """The job of :meth:`to_dict`; ValueError for unknown fields or a neuron that is not an
        integer (1.7 or True are not neurons)."""
        d = dict(d)
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"NeuronJob: unknown field(s) {str(unknown)[:200]}")
        is_index = lambda v: type(v) is int and v >= -1  # noqa: E731  (-1: the session-level job)
        if not is_index(d.get("neuron")):
            raise ValueError(f"NeuronJob: neuron must be an integer, got {str(d.get('neuron'))[:40]!r}")
        if d.get("neurons") is not None:
            if not (isinstance(d["neurons"], (list, tuple)) and all(is_index(k) and k >= 0 for k in d["neurons"])):
                raise ValueError(f"NeuronJob: neurons must be a list of integers >= 0, got {str(d['neurons'])[:80]}")
            d["neurons"] = tuple(d["neurons"])
        return cls(**d)

    def distilled_with(self) -> list[int] | None:
        """The neurons of stage 1 as a finished neuron's row records them (None: all)."""
        return None if self.neurons is None else list(self.neurons)

    def session_key(self) -> str:
        """What every neuron of one run shares (all fields but ``neuron``)."""
        return json.dumps({**self.to_dict(), "neuron": None}, sort_keys=True)


class _SessionRun:
    """A run's session-level state: data, teacher, stage 1's shared student, test-half outputs."""

    def __init__(self, job: NeuronJob, progress: bool, train_shared: bool) -> None:
        from ..engine.frontend import default_threads
        from ..fit.distill import distill_population, population_pool

        self.root, self.out, self.session = Path(job.root), Path(job.out), str(job.session)
        self.recipe = Recipe(**{**job.recipe, "filters": tuple(job.recipe["filters"])})
        self.threads = default_threads() if job.threads is None else int(job.threads)
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        recorded = load_session(self.root, job.images_from) if job.images_from else None
        self.data = _session_or_responses(self.root, self.session, job.images_from)
        image_source = recorded or self.data
        n_neurons = self.data.num_neurons
        self.chosen = list(range(n_neurons)) if job.neurons is None else [int(k) for k in job.neurons]
        self.all_neurons = job.neurons is None
        bad = [k for k in self.chosen if not 0 <= k < n_neurons]
        if bad or not self.chosen:
            raise ValueError(f"session {self.session}: no neuron(s) {bad or '(none chosen)'}; it has 0..{n_neurons - 1}")
        if len(set(self.chosen)) != len(self.chosen):
            raise ValueError(f"neurons listed twice: {sorted(k for k in set(self.chosen) if self.chosen.count(k) > 1)}")
        published = _published_params(self.root, self.session)
        if job.teacher != "fit" and job.backbone not in (None, "auto"):
            raise ValueError(f"--backbone applies to --teacher fit only (the teacher here: {job.teacher[:200]!r})")
        # Every input is checked (files loaded) before the folder is claimed: a corrected rerun
        # must not be refused for the settings of one that never started.
        loaded = _check_teacher(job.teacher, self.root, self.session, self.chosen, published)
        self.trunk_file = resolve_teacher_backbone(job.backbone, self.root) if job.teacher == "fit" else None
        if self.trunk_file is not None:
            from ..fit.transfer import resolve_backbone

            resolve_backbone(self.trunk_file)
        _claim_folder(self.out, {"session": self.session, "teacher": job.teacher, "images_from": job.images_from,
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
        self.teacher = _load_teacher(job.teacher, self.root, self.data, self.chosen, self.out, self.threads,
                                     self.recipe, published, progress, self.trunk_file, loaded)
        self.fit = image_source.images[image_source.fit_indices]
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
            self.shared = distill_population(self.teacher.population, None, self.fit, r.population_steps, r.batch,
                                             r.filters, r.pool_size, r.procedural_fraction, r.lr, r.seed,
                                             checkpoint=ckpt, progress=progress)
            self.shared.save(shared_path)
        else:
            raise ValueError(f"{shared_path}: stage 1 (the shared student) has not been run for this job; run "
                             "prepare_run(job) (compress_session does) before the neurons")
        self.pool = None
        if self.teacher.kind != "published":  # a fitted teacher runs in PyTorch: re-train on stage 1's pool
            self.pool = population_pool(self.teacher.population, None, self.fit, r.pool_size, r.batch,
                                        r.procedural_fraction, r.seed, ckpt, progress)

    def compress(self, k: int) -> dict:
        """Stage 2 for neuron ``k``: cut it out, prune and re-train, save, evaluate; its summary row."""
        from ..engine.compile import compile
        from ..engine.predictor import Predictor
        from ..metrics import noise_corrected_r2

        if k not in self.chosen:
            raise ValueError(f"neuron {k} was not distilled in this run (its neurons: {self.chosen})")
        i, r, tch = self.chosen.index(k), self.recipe, self.teacher
        compact, history = prune_and_retrain(self.shared.single_output(i), tch.per_neuron(k), self.fit, r,
                                             self.neuron_work, f"neuron{k}", seed=r.seed + 1000 * (k + 1),
                                             threads=self.threads, pool=self.pool, pool_column=i)
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
               "r_teacher_test": _pearson(pred, self.teacher_test[:, i]), "r_test": None,
               "r_teacher_model_test": None, "r2er_test": None, "r2er_teacher_test": None}
        if self.same_images:
            data = self.data
            resp = data.responses[k, data.test_indices]
            row["r_test"] = _pearson(pred, resp)
            row["r_teacher_model_test"] = _pearson(self.teacher_test[:, i], resp)
            if data.raw is not None:
                raw = data.raw[k:k + 1, data.test_indices]
                row["r2er_test"] = float(noise_corrected_r2(raw, pred[None])[0])
                row["r2er_teacher_test"] = float(noise_corrected_r2(raw, self.teacher_test[None, :, i].astype(np.float64))[0])
        return {key: _to_jsonable(v) for key, v in row.items()}


_TEST_BATCH = 32  # test-half images per teacher call
_RUNS: dict[str, _SessionRun] = {}  # the last run's state, reused by its neurons in this process


def prepare_run(job: NeuronJob, progress: bool = True) -> None:
    """Stage 1 of ``job``'s run (teacher, shared student), saved under its output folder; the
    neurons' :func:`compress_neuron` calls then start from it (in this process or any other)."""
    _session_run(job, progress, train_shared=True)


def _session_run(job: NeuronJob, progress: bool, train_shared: bool) -> _SessionRun:
    key = job.session_key()
    if key not in _RUNS:
        run = _SessionRun(job, progress, train_shared)
        _RUNS.clear()
        _RUNS[key] = run
    return _RUNS[key]


def compress_neuron(job: NeuronJob | dict, progress: bool = False) -> dict:
    """Compress one neuron (stage 2) and return its summary row (see :func:`compress_session`).

    Idempotent: a finished neuron's saved row (``out/neurons/neuron<k>.json``) is returned as it
    is when it was distilled with the same neurons (its ``distilled_with``; otherwise it is
    recomputed from this job's stage 1), and an interrupted one resumes from its checkpoints. Workers on the same neuron take turns
    (an exclusive lock on ``neuron<k>.lock``; a killed worker's lock is released by the system).
    Needs stage 1 on disk: :func:`prepare_run` (or :func:`compress_session`) first.
    """
    import fcntl

    job = NeuronJob.from_dict(job) if isinstance(job, dict) else job
    folder = Path(job.out) / "neurons"
    done = folder / f"neuron{int(job.neuron)}.json"
    if (row := _finished_row(done, job)) is not None:
        return row
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"neuron{int(job.neuron)}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (row := _finished_row(done, job)) is not None:  # another worker finished it while we waited
            return row
        row = _session_run(job, progress, train_shared=False).compress(int(job.neuron))
        write_json(done, row)
    return row


def _finished_row(path: Path, job: NeuronJob) -> dict | None:
    """The saved row of ``job``'s neuron if it was distilled with the same neurons, else None."""
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    return row if row.get("distilled_with", "unknown") == job.distilled_with() else None


def compress_session(
    root: str | Path,
    session: str,
    out: str | Path,
    teacher: str = "published",
    neurons: Sequence[int] | None = None,
    recipe: Recipe | None = None,
    threads: int | None = None,
    images_from: str | None = None,
    backbone: str | None = "auto",
    progress: bool = True,
    backend: str = "local",
    address: str | None = None,
    cpus_per_task: int | None = None,
    slurm: dict | None = None,
) -> dict:
    """Compress every chosen neuron of ``session`` into a compact model; returns the summary.

    Stage 1 (:func:`prepare_run`) here, then one :func:`compress_neuron` per neuron on
    ``backend`` (``"local"``, ``"ray"`` or ``"slurm"``; ``address``, ``cpus_per_task`` and
    ``slurm`` as for :func:`~compactcortex.compress.backends.run_neurons`).

    Args:
        root: data folder laid out like ``../shared/data/v4`` or the authors' repository.
        session: the session (its responses, and published models for ``teacher="published"``).
        out: output folder: ``neuron<k>.safetensors`` and ``.plan`` per neuron, ``summary.json``,
            ``r_vs_params.png``, and ``work/`` (checkpoints; safe to delete when done).
        teacher: ``"published"`` (the session's published compact models: the round trip),
            ``"fit"`` (a teacher fitted to the session's fit half), or a saved teacher file.
        backbone: for ``teacher="fit"``: the pretrained trunk its readouts are fitted on (see
            :func:`resolve_teacher_backbone`; default ``"auto"``: the shared compact model under
            ``root`` if there is one, else a teacher from scratch).
        neurons: which neurons (default: all of the session's).
        recipe: :class:`Recipe` (default: the defaults).
        images_from: another session whose images stand in where ``session`` has none here
            (then ``r_test``, ``r_teacher_model_test`` and ``r2er_test`` are null).

    Returns:
        ``{"session", "teacher", "elapsed_s", "recipe", "neurons": [{"neuron", "teacher_params",
        "compact_params", "compact_filters", "published_params", "r_teacher_test", "r_test",
        "r_teacher_model_test", "r2er_test", "r2er_teacher_test"}]}`` (also written to
        ``out/summary.json``; ``r2er_teacher_test`` is the teacher's own R2_ER).
    """
    t0 = time.perf_counter()
    recipe = recipe or Recipe()
    base = NeuronJob(str(root), str(session), -1, str(out), teacher,
                     None if neurons is None else tuple(int(k) for k in neurons), asdict(recipe), threads,
                     images_from, backbone)
    from .backends import check_backend, run_neurons

    check_backend(backend)  # before stage 1, which may take long
    run = _session_run(base, progress, train_shared=True)
    rows = run_neurons([replace(base, neuron=k) for k in run.chosen], backend, address=address,
                       cpus_per_task=cpus_per_task, slurm=slurm, progress=progress)
    summary = {"session": str(session), "teacher": run.teacher.kind,
               "teacher_backbone": run.trunk_file and run.trunk_file.name, "elapsed_s": time.perf_counter() - t0,
               "images": str(images_from or session), "recipe": asdict(run.recipe), "threads": run.threads,
               "neurons": rows}
    write_json(Path(out) / "summary.json", summary)
    _RUNS.clear()  # free the teacher and the data; a rerun starts from the files
    from ..report_plots import plot_r_vs_params

    plot_r_vs_params(summary, Path(out) / "r_vs_params.png")
    return summary


def _claim_folder(out: Path, settings: dict) -> None:
    """Refuse an output folder written with other settings: its checkpoints would be trusted."""
    path = out / "settings.json"
    settings = json.loads(json.dumps(settings))  # tuples -> lists, as read back
    if path.is_file():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{out} holds a run with other settings ({', '.join(diff)} differ); "
                             "use another --out, or delete it to start over")
        return
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(settings, indent=1))


def _session_or_responses(root: Path, session: str, images_from: str | None) -> Session:
    """The session; with ``images_from``, its responses alone may do (no images needed)."""
    if images_from is None:
        return load_session(root, session)
    from ..data.session import data_dir

    path = data_dir(root) / "responses_repeat_averaged" / f"responses_{session}.npy"
    if not path.is_file():
        return load_session(root, session)  # raises the session-not-found error
    resp = np.load(path, allow_pickle=False)
    blank = np.zeros((resp.shape[1], 112, 112, 3), np.uint8)
    return Session(session, blank, resp.astype(np.float64))
