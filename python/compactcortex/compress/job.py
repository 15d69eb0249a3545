"""The unit of work of a run: one neuron's :class:`NeuronJob` (plain values, JSON-able) and
:func:`compress_neuron`, which any process runs given the data and the run's folder."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..files import write_json
from .recipe import Recipe
from .stage1 import session_run

__all__ = ["NeuronJob", "compress_neuron"]


@dataclass(frozen=True)
class NeuronJob:
    """One neuron's compression as plain values (JSON via :meth:`to_dict`): a unit of work that
    any process can run with :func:`compress_neuron`, given the data and the output folder.

    ``neurons`` is the set distilled together in stage 1 (None: all of the session's); ``recipe``
    a :class:`Recipe` as a dict (its ``seed`` seeds every stage); ``device`` where students train
    (:mod:`compactcortex.devices`); the rest as for :func:`compress_session`.
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
    device: str = "cpu"

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
        row = session_run(job, progress, train_shared=False).compress(int(job.neuron))
        write_json(done, row)
    return row


def _finished_row(path: Path, job: NeuronJob) -> dict | None:
    """The saved row of ``job``'s neuron if it was distilled with the same neurons, else None."""
    if not path.is_file():
        return None
    row = json.loads(path.read_text())
    return row if row.get("distilled_with", "unknown") == job.distilled_with() else None
