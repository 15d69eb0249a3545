"""Where training runs: ``device="cpu" | "cuda" | "cuda:N" | "auto"`` of the training and
compression functions.

On the CPU, students train on the C++ training kernels; on a CUDA device, through PyTorch
(cuDNN). ``"auto"`` takes CUDA device 0 where PyTorch can use one and otherwise the CPU, and
says so with a :class:`RuntimeWarning`. Asking for a CUDA device that cannot be used is a
:class:`DeviceUnavailable` error naming what is missing.
"""
from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    import torch

__all__ = ["DeviceUnavailable", "DEVICE_HELP", "check_device", "resolve_device", "cuda_unusable_reason"]

#: What a ``device`` argument may be (for help texts).
DEVICE_HELP = "'cpu', 'cuda', 'cuda:N' or 'auto' (a CUDA device where one is usable, else the CPU)"

Device = Union[str, "torch.device", None]


class DeviceUnavailable(ValueError):
    """A CUDA device was asked for and cannot be used (the message says why)."""


def check_device(device: Device) -> str:
    """The device as a normalised string (``"cpu"``, ``"auto"``, ``"cuda:N"``) without importing
    torch (for argument parsers); ValueError for anything else. None means ``"cpu"``."""
    text = "cpu" if device is None else str(device)
    if text in ("cpu", "auto"):
        return text
    m = re.fullmatch(r"cuda(?::(\d{1,4}))?", text)
    if m is None:
        raise ValueError(f"device must be {DEVICE_HELP}, got {text[:80]!r}")
    return f"cuda:{int(m.group(1) or 0)}"


def cuda_unusable_reason(index: int = 0) -> str | None:
    """Why CUDA device ``index`` cannot be used by PyTorch here, or None if it can."""
    import os

    import torch

    if torch.version.cuda is None:
        return f"this PyTorch ({torch.__version__}) was built without CUDA; install a CUDA build of torch"
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return "PyTorch finds no usable CUDA device (no NVIDIA driver or GPU" + (
            f"; CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ")")
    count = torch.cuda.device_count()
    if index >= count:
        return f"there is no CUDA device {index} (this machine has {count}: cuda:0..cuda:{count - 1})"
    return None


def resolve_device(device: Device = "cpu") -> "torch.device":
    """The ``torch.device`` to train on. ``"auto"``: CUDA device 0 if usable, else the CPU with a
    RuntimeWarning saying why. Raises :class:`DeviceUnavailable` for an unusable CUDA device and
    ValueError for an unknown name."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    spec = check_device(device)
    if spec == "cpu":
        return torch.device("cpu")
    index = 0 if spec == "auto" else int(spec[5:])
    reason = cuda_unusable_reason(index)
    if spec == "auto":
        if reason is None:
            return torch.device("cuda", 0)
        warnings.warn(f"device='auto': {reason}; training on the CPU", RuntimeWarning, stacklevel=2)
        return torch.device("cpu")
    if reason is not None:
        raise DeviceUnavailable(f"device {spec!r}: {reason}")
    return torch.device("cuda", index)
