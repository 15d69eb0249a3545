"""The teacher of a ``compress`` run: the session's published compact models (the round trip), a
teacher fitted to its fit half (from scratch, or readouts on a trunk: one of the authors' shared
``.keras`` models or a trunk file of ``compactcortex trunk``), or a saved teacher file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.session import Session
from .recipe import DEFAULT_BACKBONE_FILTERS, Recipe

__all__ = ["RunTeacher", "published_models", "check_teacher", "resolve_teacher_backbone", "load_run_teacher",
           "DEFAULT_BACKBONE_FILTERS"]


@dataclass
class RunTeacher:
    """The session's teacher: images -> (N, chosen neurons), one neuron's callable, sizes."""

    kind: str                                 # "published", "fit" or the teacher file
    population: Callable                      # recentred images (N,3,112,112) -> (N, K)
    per_neuron: Callable[[int], Callable]     # neuron -> (images -> (N,))
    params: Callable[[int], int]              # neuron -> the teacher's parameter count
    published: dict[int, int]                 # neuron -> its published model's parameters


def published_models(root: Path, session: str) -> list:
    """The session's published compact models (loaded once per run: the round trip's teacher and
    every summary row's reference size); [] where there are none."""
    from ..models.published import load_published_session

    try:
        return load_published_session(root, session)
    except ValueError:
        return []


def check_teacher(spec: str, root: Path, session: str, neurons: list[int], published: list):
    """Checks of the teacher choice, before anything is written; a teacher file is loaded here
    (and returned), so that a corrupt one fails before the output folder is claimed."""
    if spec == "published":
        if not published:
            raise ValueError(f"session {session} has no published compact models under {root}")
        missing = [k for k in neurons if not 0 <= k < len(published)]
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




def load_run_teacher(spec: str, session: Session, neurons: list[int], out: Path, threads: int, recipe: Recipe,
                     published: list, progress: bool, backbone=None, loaded=None) -> RunTeacher:
    """The run's teacher. ``published``: :func:`published_models`; ``backbone``: the trunk (a
    loaded model) that ``spec="fit"`` fits readouts on, None for a teacher from scratch;
    ``loaded``: the teacher file ``spec``, already loaded by :func:`check_teacher`."""
    from ..engine.population import PopulationPredictor
    from ..engine.predictor import Predictor
    from ..fit.training import TrainConfig
    from ..fit.teacher import fit_teacher, load_teacher, save_teacher
    from ..fit.transfer import use_engine
    from ..models.transfer import TransferTeacher

    sizes = {k: m.num_parameters() for k, m in enumerate(published)}
    if spec == "published":
        chosen = {k: published[k] for k in neurons}
        pop = PopulationPredictor([chosen[k] for k in neurons], threads=threads)
        return RunTeacher("published", pop, lambda k: Predictor(chosen[k], threads=threads),
                          lambda k: chosen[k].num_parameters(), sizes)
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

    return RunTeacher("fit" if spec == "fit" else str(spec), population, one, lambda k: n_params, sizes)
