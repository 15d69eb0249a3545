"""CompactModel's ``backend="engine"``: forward and backward through the C++ training kernels.

One :class:`torch.autograd.Function` wraps ``compactcortex._engine.Trainer`` (``csrc/train``):
the forward pass returns the model's (N,) output and keeps a tape of the feature maps; the
backward pass fills the gradient of every parameter (and of the input when it requires one).
PyTorch's optimisers then update the parameters as usual. Filter masks are passed as the kept
filters' indices, so masked filters cost nothing and get exactly zero gradient.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:
    from .compact import CompactModel

__all__ = ["PARAM_NAMES", "engine_usable", "engine_forward", "phase_profile"]

#: The parameters in the order of the C++ Trainer (csrc/train/trainer.hpp).
PARAM_NAMES = (
    ["layer0_conv.weight", "layer0_conv.bias", "layer0_bn.weight", "layer0_bn.bias"]
    + [f"layer{i}_{part}" for i in range(1, 5) for part in
       ("conv_depth.weight", "conv_point.weight", "conv_point.bias", "bn.weight", "bn.bias")]
    + ["readout.weight", "readout.bias"]
)

# One Trainer (thread pool and reusable workspaces) per model and readout size.
_trainers: "weakref.WeakKeyDictionary[CompactModel, dict]" = weakref.WeakKeyDictionary()


def _batchnorms(model: "CompactModel") -> list[torch.nn.BatchNorm2d]:
    return [model.layer0_bn] + [getattr(model, f"layer{i}_bn") for i in range(1, 5)]


def engine_usable(model: "CompactModel", x: torch.Tensor) -> bool:
    """Whether the engine kernels can run this model on ``x``: CPU float32 throughout, ReLUs, and
    batchnorm with a float momentum in one training mode. Otherwise the model runs its plain
    PyTorch path (CUDA tensors, float64, ...)."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or not model.relu:
        return False
    w = model.layer0_conv.weight
    if w.device.type != "cpu" or w.dtype != torch.float32:
        return False
    bns = _batchnorms(model)
    return not any(bn.momentum is None or not bn.track_running_stats or bn.training != model.training for bn in bns)


def _trainer(model: "CompactModel", outputs: int):
    from .. import _engine

    threads = model.engine_threads or torch.get_num_threads()
    by_outputs = _trainers.setdefault(model, {})
    t = by_outputs.get(outputs)
    if t is None or tuple(t.filters) != model.nums_filters or t.threads != threads:
        t = _engine.Trainer(list(model.nums_filters), threads, outputs=outputs)
        by_outputs[outputs] = t
    return t


@contextmanager
def phase_profile(model: "CompactModel") -> Iterator[dict[str, float]]:
    """Where the engine's training passes of ``model`` spend their time, inside the ``with`` block.

    Yields a dict filled when the block ends: wall seconds of each phase of the forward and
    backward passes run in the block ("prepare", "forward layer0" .. "forward layer4", "forward
    readout", "backward readout", "backward layer4" .. "backward layer0", "finish"), summed over
    the model's trainers (one per readout size). Run a step before the block: a trainer is made
    by the first pass of each readout size, and only trainers that exist when the block starts
    are profiled.
    """
    trainers = list(_trainers.get(model, {}).values())
    if not trainers:
        raise ValueError("phase_profile: run a training step of this model on the engine backend first")
    for t in trainers:
        t.reset_phases()
        t.profile = True
    result: dict[str, float] = {}
    try:
        yield result
    finally:
        for t in trainers:
            t.profile = False
            for name, seconds in t.phases().items():
                result[name] = result.get(name, 0.0) + seconds


class _CompactFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, model, squeeze, x, *params):  # noqa: D102 - see engine_forward
        bns = _batchnorms(model)
        running = [t for bn in bns for t in (bn.running_mean, bn.running_var)]
        active = [np.flatnonzero(m.numpy()).astype(np.int32) for m in model.filter_masks()]
        k = params[-1].shape[0]  # readout.bias (K,)
        trainer = _trainer(model, k)
        out = torch.empty((x.shape[0],) if k == 1 and squeeze else (x.shape[0], k), dtype=torch.float32)
        tape = trainer.forward(x.detach().contiguous(), [p.detach().contiguous() for p in params], running,
                               active, [float(bn.eps) for bn in bns], float(bns[0].momentum), model.training, out)
        if model.training:
            for bn in bns:
                bn.num_batches_tracked.add_(1)
        ctx.tape, ctx.filters = tape, list(model.nums_filters)
        ctx.shapes = [p.shape for p in params]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        wanted = ctx.needs_input_grad[3:]
        grads = [torch.empty(s, dtype=torch.float32) for s in ctx.shapes] if any(wanted) else None
        dx = torch.empty((ctx.tape.count, 3, 112, 112), dtype=torch.float32) if ctx.needs_input_grad[2] else None
        ctx.tape.backward(grad_out.detach().float().contiguous(), grads, dx, ctx.filters)
        ctx.tape = None  # frees the feature maps at once
        if grads is None:
            return (None, None, dx, *[None] * len(wanted))
        return (None, None, dx, *[g if w else None for g, w in zip(grads, wanted)])


def engine_forward(model: "CompactModel", x: torch.Tensor,
                   readout: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """The model's (N,) or (N, K) output on recentred images x (N, 3, 112, 112), through the C++ kernels.

    In training mode the batchnorm uses batch statistics and updates its running statistics
    (PyTorch's momentum rule), exactly as the PyTorch path does.

    ``readout``: (weight (K, 28*28*n4) in (H, W, C) order, bias (K,)) used instead of the model's
    own readout (which it then need not have); any tensors, e.g. computed from a factorised
    readout's parameters, so that their gradients flow back through them. Output (N, K).
    """
    state = dict(model.named_parameters())
    trunk = [state[name] for name in PARAM_NAMES[:-2]]
    if readout is None:
        return _CompactFunction.apply(model, True, x, *trunk, state["readout.weight"], state["readout.bias"])
    return _CompactFunction.apply(model, False, x, *trunk, *readout)
