"""Input checks and per-image repeat statistics shared by the accuracy metrics.

Responses come as ``(neurons, images, repeats)`` arrays in which missing repeats are NaN, so
images (and neurons) may have different numbers of valid repeats. Everything here is numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_NEEDS_REPEATS = (
    "noise correction needs the single-trial responses: pass responses of shape "
    "(neurons, images, repeats), with NaN for missing repeats, not repeat-averaged "
    "(neurons, images) responses"
)


@dataclass(frozen=True)
class RepeatStats:
    """Repeat-averaged responses and the trial-to-trial noise estimate of each neuron.

    Attributes:
        mean: (neurons, images) mean over the valid repeats of each image, in the units of the
            responses (e.g. spike counts); NaN where an image has no valid repeat.
        count: (neurons, images) number of valid (non-NaN) repeats n_i of each image.
        noise_var: (neurons,) pooled trial-to-trial variance sigma^2 (units squared): the
            unweighted mean, over the images with n_i >= 2, of the per-image sample variance
            (ddof=1); NaN for a neuron with no image that has at least 2 repeats.
        constant: (neurons,) True where every valid trial of the neuron has the same value.
    """

    mean: np.ndarray
    count: np.ndarray
    noise_var: np.ndarray
    constant: np.ndarray

    @property
    def valid(self) -> np.ndarray:
        """(neurons, images) True where an image has at least one valid repeat."""
        return self.count > 0


def as_trials(responses: np.ndarray) -> np.ndarray:
    """Check single-trial responses and return them as float64 (neurons, images, repeats).

    Raises:
        ValueError: if the array is 2-D (no repeats), not 3-D, empty, holds fewer than 2
            images, contains +-inf, or is entirely NaN.
    """
    r = np.asarray(responses, dtype=np.float64)
    if r.ndim == 2:
        raise ValueError(f"{_NEEDS_REPEATS}; got shape {r.shape}")
    if r.ndim != 3:
        raise ValueError(f"responses must have shape (neurons, images, repeats); got shape {r.shape}")
    if 0 in r.shape:
        raise ValueError(f"responses must not be empty; got shape {r.shape}")
    if r.shape[1] < 2:
        raise ValueError(f"need at least 2 images to measure variance across images; got shape {r.shape}")
    if np.isinf(r).any():
        raise ValueError("responses contain +-inf; use NaN only to pad missing repeats")
    if np.isnan(r).all():
        raise ValueError("responses are all NaN: there is no valid trial")
    return r


def as_matrix(values: np.ndarray, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Check a finite (neurons, images) array and return it as float64.

    Args:
        values: the array to check.
        name: its name in error messages.
        shape: the (neurons, images) shape it must have, if any.

    Raises:
        ValueError: if it is not 2-D, has the wrong shape, fewer than 2 images, or a non-finite
            value.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"{name} must have shape (neurons, images); got shape {v.shape}")
    if shape is not None and v.shape != shape:
        raise ValueError(f"{name} has shape {v.shape} but the responses have (neurons, images) = {shape}")
    if v.shape[0] == 0 or v.shape[1] < 2:
        raise ValueError(f"{name} needs at least 1 neuron and 2 images; got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} contain NaN or +-inf; every value must be finite")
    return v


def repeat_stats(trials: np.ndarray) -> RepeatStats:
    """Per-image means, repeat counts and the pooled noise variance of checked trials.

    Args:
        trials: (neurons, images, repeats) float64 from :func:`as_trials`.
    """
    ok = ~np.isnan(trials)
    count = ok.sum(axis=2)
    filled = np.where(ok, trials, 0.0)
    mean = np.divide(filled.sum(axis=2), count, out=np.full(count.shape, np.nan), where=count > 0)
    squares = np.where(ok, (trials - mean[..., None]) ** 2, 0.0).sum(axis=2)
    has_var = count >= 2
    image_var = np.divide(squares, count - 1, out=np.zeros(count.shape), where=has_var)
    n_var = has_var.sum(axis=1)
    noise_var = np.divide(image_var.sum(axis=1), n_var, out=np.full(n_var.shape, np.nan), where=n_var > 0)
    highest = np.max(trials, axis=(1, 2), where=ok, initial=-np.inf)
    constant = highest == np.min(trials, axis=(1, 2), where=ok, initial=np.inf)
    return RepeatStats(mean=mean, count=count, noise_var=noise_var, constant=constant)
