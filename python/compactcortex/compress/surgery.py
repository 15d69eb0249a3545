"""Physical removal of filters from a CompactModel (the model gets smaller, not masked)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..models.compact import CompactModel

__all__ = ["remove_filters"]


def remove_filters(model: CompactModel, layer: int, keep: Sequence[int]) -> CompactModel:
    """A new CompactModel without the filters of ``layer`` (0-4) that are not in ``keep``.

    Removing filter j of layer i removes its weights, bias and batchnorm entries in layer i, and
    what reads it: its depthwise kernel and pointwise column in layer i+1, or its slice of the
    readout after layer 4. The remaining weights are copied unchanged.
    """
    n = list(model.nums_filters)
    keep_idx = torch.as_tensor(sorted(int(k) for k in keep), dtype=torch.long)
    if not 0 <= layer <= 4:
        raise ValueError(f"layer must be 0-4, got {layer}")
    if len(keep_idx) == 0 or keep_idx.min() < 0 or keep_idx.max() >= n[layer] or len(set(keep_idx.tolist())) != len(keep_idx):
        raise ValueError(f"keep must be distinct filter indices of layer {layer} (0..{n[layer] - 1}), at least one")
    n[layer] = len(keep_idx)
    out = CompactModel(n, bn_eps=model.bn_eps, mean=model.mean)
    out.provenance = dict(model.provenance)
    own = "layer0_conv" if layer == 0 else f"layer{layer}_conv_point"
    state = {}
    for key, value in model.state_dict().items():
        v = value
        if key.startswith((own + ".", f"layer{layer}_bn.")) and v.dim() >= 1:
            v = v[keep_idx]
        elif layer < 4 and key == f"layer{layer + 1}_conv_depth.weight":
            v = v[keep_idx]
        elif layer < 4 and key == f"layer{layer + 1}_conv_point.weight":
            v = v[:, keep_idx]
        elif layer == 4 and key == "readout.weight":
            v = v.reshape(1, 28, 28, -1)[..., keep_idx].reshape(1, -1)
        state[key] = v.clone()
    out.to(next(model.parameters()).dtype).load_state_dict(state)
    out.backend, out.engine_threads = model.backend, model.engine_threads
    for i, m in enumerate(model.filter_masks()):  # other layers keep their masks
        kept = m[keep_idx] if i == layer else m
        out.set_filter_mask(i, None if bool(kept.all()) or not kept.any() else kept)
    return out.train(model.training)
