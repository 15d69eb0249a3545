"""compile(model) -> Plan: fold batchnorm into the convolutions and drop dead channels."""
from __future__ import annotations

import numpy as np
import torch

from ..models.compact import CompactModel
from .plan import Plan

__all__ = ["compile"]


def _bn_scale_shift(bn: torch.nn.BatchNorm2d, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode batchnorm as y = x * scale + shift (float64)."""
    var = bn.running_var.detach().double().numpy()
    if np.any(var + eps <= 0):
        raise ValueError("batchnorm running_var + eps must be > 0 for every channel")
    scale = bn.weight.detach().double().numpy() / np.sqrt(var + eps)
    shift = bn.bias.detach().double().numpy() - bn.running_mean.detach().double().numpy() * scale
    return scale, shift


def compile(model: CompactModel, drop_dead_channels: bool = True) -> Plan:  # noqa: A001
    """Fold a :class:`CompactModel` (eval-mode batchnorm) into a float32 :class:`Plan`.

    Folding is done in float64. With ``drop_dead_channels``, a channel whose folded incoming
    weights are all zero and whose bias is <= 0 outputs exactly 0 after its ReLU (a pruned
    filter); it is removed together with the weights that read it in the next layer, so the
    Plan is physically smaller and computes the same function. Masked filters
    (``model.set_filter_mask``) are such channels. A model without readout (a trunk, layers
    0-4) compiles with a zero readout, for :class:`~compactcortex.engine.features.TrunkFeatures`
    (there pass ``drop_dead_channels=False`` to keep every layer-4 channel in place).
    """
    if not isinstance(model, CompactModel):
        raise TypeError(f"compile() expects a CompactModel, got {type(model).__name__}")
    if not model.relu:
        raise ValueError("compile() needs a model with ReLUs (the engine's kernels apply them); this one is linear "
                         "(e.g. the authors' linear_from_ensemble_model): run it with PyTorch")
    trunk_only = not hasattr(model, "readout")  # a trunk (layers 0-4): a zero readout
    if not trunk_only and model.num_outputs != 1:
        raise ValueError(f"compile() takes a per-neuron model; this one has {model.num_outputs} outputs "
                         "(cut one out with model.single_output(k))")
    n = list(model.nums_filters)
    eps = model.bn_eps
    d = lambda t: t.detach().double().cpu().numpy()  # noqa: E731

    s, t = _bn_scale_shift(model.layer0_bn, eps[0])
    w0 = d(model.layer0_conv.weight) * s[:, None, None, None]
    b0 = d(model.layer0_conv.bias) * s + t
    dw, pw, pb = [], [], []
    for i in range(1, 5):
        s, t = _bn_scale_shift(getattr(model, f"layer{i}_bn"), eps[i])
        dw.append(d(getattr(model, f"layer{i}_conv_depth").weight)[:, 0])
        point = getattr(model, f"layer{i}_conv_point")
        pw.append(d(point.weight)[:, :, 0, 0] * s[:, None])
        pb.append(d(point.bias) * s + t)
    if trunk_only:
        readout, bias = np.zeros((28, 28, n[4])), 0.0
    else:
        readout = d(model.readout.weight).reshape(28, 28, n[4])
        bias = float(d(model.readout.bias)[0])
    # A masked filter outputs 0: zero weights and bias in front of its ReLU.
    for l, m in enumerate(model.filter_masks()):
        off = ~m.numpy()
        if l == 0:
            w0[off], b0[off] = 0.0, 0.0
        else:
            pw[l - 1][off], pb[l - 1][off] = 0.0, 0.0

    if drop_dead_channels:
        # Layer l's outgoing weights: w0 (layer 0) or pw[l-1]; its readers: dw[l], pw[l] (or readout).
        for l in range(5):
            w_in = w0.reshape(n[0], -1) if l == 0 else pw[l - 1]
            b_in = b0 if l == 0 else pb[l - 1]
            keep = np.any(w_in != 0, axis=1) | (b_in > 0)
            if keep.all():
                continue
            if not keep.any():
                keep[np.argmax(b_in)] = True  # the architecture needs >= 1 channel; its output is 0
            if l == 0:
                w0, b0 = w0[keep], b0[keep]
            else:
                pw[l - 1], pb[l - 1] = pw[l - 1][keep], pb[l - 1][keep]
            if l < 4:
                dw[l], pw[l] = dw[l][keep], pw[l][:, keep]
            else:
                readout = readout[:, :, keep]
            n[l] = int(keep.sum())

    return Plan(
        nums_filters=tuple(n), w0=w0, b0=b0, dw=tuple(dw), pw=tuple(pw), pb=tuple(pb),
        readout=readout, readout_bias=bias, mean=model.mean,
        provenance=dict(model.provenance, compiled_from_filters=list(model.nums_filters)),
    )
