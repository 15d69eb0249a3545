"""compress's unit of work in other processes: subprocess workers, Ray and SLURM (submitit) backends."""
import pytest

import compactcortex as cc
from helpers import TINY_RECIPE

# Re-training long enough that a worker can be caught (and killed) in the middle of a neuron.
RECIPE = {**TINY_RECIPE, "retrain_steps": 6}
NEURONS = [3, 0]


@pytest.fixture(scope="module")
def local_rows(v4, tmp_path_factory):
    """The rows of an undisturbed run in this process: what every other backend must reproduce."""
    from compactcortex.compress import Recipe, compress_session

    out = tmp_path_factory.mktemp("local")
    return compress_session(v4, "190923", out, "published", NEURONS, Recipe(**RECIPE), threads=1,
                            progress=False)["neurons"]

WORKER = """
import json, sys
from compactcortex.compress import compress_neuron
print(json.dumps(compress_neuron(json.loads(sys.argv[1]))))
"""


def test_compress_neuron_is_a_unit_of_work_for_other_processes(v4, tmp_path, local_rows):
    """Stage 1 here, then each neuron in worker processes: two at once on the same neuron take
    turns (one trains, the other returns its saved row), and the rows match a local run's."""
    import json
    import subprocess
    import sys
    from dataclasses import asdict

    from compactcortex.compress import NeuronJob, Recipe, compress_neuron, prepare_run

    job = NeuronJob(str(v4), "190923", 3, str(tmp_path / "jobs"), neurons=tuple(NEURONS), recipe=asdict(Recipe(**RECIPE)),
                    threads=1)
    with pytest.raises(ValueError, match="stage 1 .* has not been run"):
        compress_neuron(job)
    prepare_run(job, progress=False)
    spec = json.dumps(job.to_dict())
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, spec], stdout=subprocess.PIPE, text=True)
               for _ in range(2)]
    rows = [json.loads(w.communicate(timeout=600)[0].strip().splitlines()[-1]) for w in workers]
    assert all(w.returncode == 0 for w in workers)
    assert rows[0] == rows[1]
    model = tmp_path / "jobs" / "neuron3.safetensors"
    cc.CompactModel.load(model)  # whole, not interleaved writes
    # idempotent: the finished neuron is read back, not trained again
    before = model.stat().st_mtime_ns
    assert compress_neuron(job.to_dict()) == rows[0] and model.stat().st_mtime_ns == before
    # the same job run locally, in one process, gives the same row
    assert local_rows[0] == rows[0]
    with pytest.raises(ValueError, match="neuron 5 was not distilled"):
        compress_neuron({**job.to_dict(), "neuron": 5})


@pytest.mark.parametrize("backend", ["ray", "slurm"])
def test_cluster_backends_give_the_local_rows(v4, tmp_path, backend, local_rows):
    """Ray tasks (a local cluster started here) and a submitit job array (its local executor)
    run the same unit of work: the same rows as the local backend, in the same order."""
    pytest.importorskip("ray" if backend == "ray" else "submitit")
    from compactcortex.compress import Recipe, compress_session

    kw = dict(teacher="published", neurons=NEURONS, recipe=Recipe(**RECIPE), threads=1, progress=False)
    options = {"cluster": "local", "timeout_min": 10} if backend == "slurm" else None
    if backend == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        remote = compress_session(v4, "190923", tmp_path / backend, **kw, backend=backend, cpus_per_task=1,
                                  slurm=options)
    finally:
        if backend == "ray":
            ray.shutdown()
    assert remote["neurons"] == local_rows
    assert [r["neuron"] for r in remote["neurons"]] == NEURONS


def test_ray_retries_a_killed_worker(v4, tmp_path, local_rows):
    """A Ray worker killed (SIGKILL) while it compresses a neuron: the task is retried and
    resumes, and the rows equal an undisturbed local run's."""
    ray = pytest.importorskip("ray")
    import os
    import signal
    import threading
    import time
    from pathlib import Path

    from compactcortex.compress import Recipe, compress_session

    kw = dict(teacher="published", neurons=NEURONS, recipe=Recipe(**RECIPE), threads=1, progress=False)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    killed = []

    def kill_one_worker():  # the first process that Ray titled after our task, once it has started on a neuron
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if list((tmp_path / "ray" / "neurons").glob("*.lock")):
                for proc in Path("/proc").iterdir():
                    try:
                        cmd = (proc / "cmdline").read_bytes()
                    except OSError:
                        continue
                    if proc.name.isdigit() and b"ray::compress_neuron" in cmd:
                        os.kill(int(proc.name), signal.SIGKILL)
                        killed.append(int(proc.name))
                        break
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    try:
        remote = compress_session(v4, "190923", tmp_path / "ray", **kw, backend="ray", cpus_per_task=1)
    finally:
        killer.join()
        ray.shutdown()
    assert killed, "no worker was seen running compress_neuron"
    assert remote["neurons"] == local_rows
