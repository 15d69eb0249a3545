"""``device=`` of the training functions: names are checked, an unusable CUDA device is an error
that says what is missing, ``auto`` falls back to the CPU and says so, and the CPU path is the
same computation as before (the same losses and weights, step for step)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from compactcortex.devices import DeviceUnavailable, check_device, cuda_unusable_reason, resolve_device
from compactcortex.fit.distill import ImageStream, fine_tune
from compactcortex.models.compact import CompactModel

HAVE_CUDA = cuda_unusable_reason() is None


def test_device_names_are_checked():
    assert [check_device(d) for d in (None, "cpu", "auto", "cuda", "cuda:3")] == ["cpu", "cpu", "auto", "cuda:0", "cuda:3"]
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", "cuda:12345", ""):
        with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'auto'"):
            check_device(bad)
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(HAVE_CUDA, reason="this machine has a usable CUDA device")
def test_without_a_gpu_cuda_is_refused_and_auto_falls_back():
    reason = cuda_unusable_reason()
    with pytest.raises(DeviceUnavailable, match="device 'cuda:0': ") as e:
        resolve_device("cuda")
    assert reason in str(e.value)
    with pytest.warns(RuntimeWarning, match="device='auto': .*training on the CPU"):
        assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(not HAVE_CUDA, reason="needs a usable CUDA device")
def test_a_missing_device_index_is_named():
    n = torch.cuda.device_count()
    with pytest.raises(DeviceUnavailable, match=f"no CUDA device {n} "):
        resolve_device(f"cuda:{n}")


def _train(device, steps=6, seed=0):
    torch.manual_seed(seed)
    student = CompactModel((4, 5, 3, 3, 2))
    teacher = CompactModel((3, 3, 3, 3, 3)).eval()
    images = np.random.default_rng(seed).integers(0, 256, (20, 112, 112, 3), dtype=np.uint8)
    info = fine_tune(student, teacher, None, ImageStream(images, 8, 0.5, seed), steps, lr=1e-3, progress=False,
                     device=device)
    return student, info


def test_cpu_device_is_the_default_computation():
    a, ia = _train("cpu")
    b, ib = _train(None)
    assert ia == ib and np.isfinite(ia["final_loss"])
    for (na, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(pa, pb), na


@pytest.mark.skipif(not HAVE_CUDA, reason="needs a usable CUDA device")
def test_cuda_training_returns_the_student_on_the_cpu_close_to_the_cpu_result():
    gpu, ig = _train("cuda")
    cpu, ic = _train("cpu")
    assert next(gpu.parameters()).device.type == "cpu"
    assert abs(ig["final_loss"] - ic["final_loss"]) <= 1e-2 * max(1.0, abs(ic["final_loss"]))


def test_auto_trains_somewhere_and_says_where_it_fell_back():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, info = _train("auto", steps=2)
    assert np.isfinite(info["final_loss"])
    assert HAVE_CUDA or any("training on the CPU" in str(w.message) for w in caught)
