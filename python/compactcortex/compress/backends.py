"""Where the neurons of a run are compressed: here, as Ray tasks, or as a SLURM job array.

Every backend runs the same unit of work, :func:`~compactcortex.compress.job.compress_neuron`
on a JSON-able :class:`~compactcortex.compress.job.NeuronJob`, after stage 1 has been saved
to the run's output folder (shared storage on a cluster). The scheduling is Ray's or SLURM's
(through submitit), not ours: retries, placement and queues are theirs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .job import NeuronJob, compress_neuron
from .recipe import BACKENDS, check_backend

__all__ = ["BACKENDS", "check_backend", "run_neurons"]


def run_neurons(jobs: Sequence[NeuronJob], backend: str = "local", *, address: str | None = None,
                cpus_per_task: int | None = None, slurm: dict | None = None, progress: bool = True) -> list[dict]:
    """Each job's summary row, in the order of ``jobs``.

    Args:
        backend: ``"local"`` (one after another in this process), ``"ray"`` (one Ray task per
            neuron; extra ``[ray]``) or ``"slurm"`` (a submitit job array; extra ``[slurm]``).
        address: Ray cluster address (default: connect to the running cluster, or start a local one).
        cpus_per_task: CPUs each neuron's task reserves (Ray, SLURM; default: the job's ``threads``
            or 1); the task's engine and training use that many threads.
        slurm: submitit executor parameters, e.g. ``{"slurm_partition": "cpu", "timeout_min": 120}``;
            ``{"cluster": "local"}`` runs the array as local processes (for tests).
    """

    check_backend(backend)
    if not jobs:
        return []
    cpus = int(cpus_per_task or jobs[0].threads or 1)
    if cpus < 1:
        raise ValueError(f"cpus_per_task must be >= 1, got {cpus}")
    if backend == "local":
        bar = tqdm(jobs, desc="compress", unit="neuron", disable=not progress)
        rows = []
        for job in bar:
            rows.append(compress_neuron(job))
            bar.set_postfix(params=rows[-1]["compact_params"])
        return rows
    specs = [{**job.to_dict(), "threads": cpus} for job in jobs]
    return _on_ray(specs, address, cpus, progress) if backend == "ray" else _on_slurm(specs, cpus, slurm or {})


def _on_ray(specs: list[dict], address: str | None, cpus: int, progress: bool) -> list[dict]:

    try:
        import ray
    except ImportError:
        raise ValueError("backend 'ray' needs Ray: pip install 'compactcortex[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, configure_logging=False, log_to_driver=False)
    # A task whose worker process dies is retried (Ray's max_retries); an exception in the job
    # itself is not: it names a problem that a retry would meet again.
    task = ray.remote(num_cpus=cpus, max_retries=3)(compress_neuron)
    refs = {task.remote(spec): i for i, spec in enumerate(specs)}
    rows: list[dict | None] = [None] * len(specs)
    pending = list(refs)
    with tqdm(total=len(specs), desc="compress (ray)", unit="neuron", disable=not progress) as bar:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                rows[refs[ref]] = ray.get(ref)
                bar.update()
    return rows


def _on_slurm(specs: list[dict], cpus: int, options: dict) -> list[dict]:

    try:
        import submitit
    except ImportError:
        raise ValueError("backend 'slurm' needs submitit: pip install 'compactcortex[slurm]'") from None
    options = dict(options)
    folder = Path(specs[0]["out"]) / "work" / "submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=options.pop("cluster", None))
    executor.update_parameters(cpus_per_task=cpus, **options)
    array = executor.map_array(compress_neuron, specs)
    return [job.result() for job in array]
