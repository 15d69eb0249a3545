"""A ``compress`` run: stage 1 here, then every neuron's unit of work on a backend, and the
summary (JSON and the r-versus-parameters plot).

Recipe (see :class:`~compactcortex.compress.recipe.Recipe`; measured in
``benchmarks/population_distill.py`` and the README):

1. **Population distillation** (:mod:`.stage1`). All chosen neurons are distilled at once into
   one shared student (one trunk, a readout row per neuron;
   :func:`~compactcortex.fit.distill_population`): every training step serves every neuron, and
   the teacher (:mod:`.teachers`) runs once per image of a fixed pool.
2. **Per-neuron pruning** (:mod:`.neuron`). Each neuron's model is cut out of the shared student
   and pruned by the paper's procedure (layers 4, 3, 2, 1, 0 at the variance threshold),
   re-trained on that neuron's teacher after each layer, in several passes, then fine-tuned.
   Each neuron is a :class:`~compactcortex.compress.job.NeuronJob` run by
   :func:`~compactcortex.compress.job.compress_neuron` here, on Ray or on SLURM (:mod:`.backends`).

Distillation images are the session's fit-half images (shifted) mixed with procedural images
(with the recipe's ``other_session_images``, also the data folder's other sessions' images, never
a near copy of this session's: :mod:`compactcortex.data.natural`); the test half is only used for
the summary's held-out numbers and each neuron's ``r_teacher_trace``. Everything is resumable: the
shared student checkpoints while it trains, each re-training checkpoints, and a finished neuron's
result (``neurons/neuron<k>.json``) is reused when it was distilled with the same neurons.
"""
from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

from ..devices import check_device
from ..files import write_json
from .backends import run_neurons
from .job import NeuronJob
from .recipe import Recipe, check_backend
from .stage1 import _RUNS, session_run

__all__ = ["compress_session"]


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
    device: str = "cpu",
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
        device: where the students train: ``"cpu"`` (the C++ training kernels), ``"cuda"``,
            ``"cuda:N"`` or ``"auto"`` (:mod:`compactcortex.devices`); an unusable CUDA device
            fails before anything runs.

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
                     images_from, backbone, check_device(device))
    check_backend(backend)  # before stage 1, which may take long
    run = session_run(base, progress, train_shared=True)
    rows = run_neurons([replace(base, neuron=k) for k in run.chosen], backend, address=address,
                       cpus_per_task=cpus_per_task, slurm=slurm, progress=progress)
    summary = {"session": str(session), "teacher": run.teacher.kind,
               "teacher_backbone": run.trunk_file and run.trunk_file.name, "elapsed_s": time.perf_counter() - t0,
               "images": str(images_from or session), "recipe": asdict(run.recipe), "threads": run.threads,
               "neurons": rows}
    write_json(Path(out) / "summary.json", summary)
    _RUNS.clear()  # free the teacher and the data; a rerun starts from the files
    from ..plots.reports import plot_r_vs_params

    plot_r_vs_params(summary, Path(out) / "r_vs_params.png")
    return summary
