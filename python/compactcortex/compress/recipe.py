"""The compression recipe: every setting of a ``compress`` run, and its measured budget."""
from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Recipe", "DEFAULT_MINUTES_PER_NEURON", "DEFAULT_BACKBONE_FILTERS", "BACKENDS", "check_backend"]


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
    other_session_images: bool = False               # distil also on the data folder's other sessions' images
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


#: Filters (layers 0-2) of the shared compact model whose trunk ``--teacher fit`` uses by default
#: (measured best of 50/100/200 on 210325: ``benchmarks/teachers.py``).
DEFAULT_BACKBONE_FILTERS = 200


#: Where the neurons of a run can be compressed (:mod:`.backends`).
BACKENDS = ("local", "ray", "slurm")


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
