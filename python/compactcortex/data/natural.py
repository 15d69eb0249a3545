"""Natural images beyond a session's own: the other sessions' images in a data folder.

A teacher that is a model (a published compact model, a fitted ensemble) can label any image, so
a session's distillation need not stop at its 600 fit-half images: the data folder holds ~9,300
more distinct natural images of other sessions. They must never include the session's held-out images,
not even re-encoded or re-scaled copies, so candidates that nearly equal any image of the session
(grey 14x14 thumbnails correlated above ``threshold``) are dropped.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["thumbnails", "near_duplicates", "other_session_images", "NEAR_DUPLICATE_R"]

#: Thumbnail correlation above which two images count as the same picture. Distinct natural
#: images of these sessions correlate at most ~0.98 (measured between 190923, 201025, 210621
#: and all others: 1-2 pairs per session above 0.98), so 0.97 drops a few distinct images too,
#: which costs nothing, to be sure that no copy survives.
NEAR_DUPLICATE_R = 0.97


def thumbnails(images: np.ndarray) -> np.ndarray:
    """Grey 14x14 thumbnails (8x8 pixel blocks of (N, 112, 112, 3) images), zero mean and unit
    norm: (N, 196) float32; the dot product of two is their correlation."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (112, 112, 3):
        raise ValueError(f"images must be (N, 112, 112, 3), got {images.shape}")
    g = images.astype(np.float32).mean(-1)
    t = g.reshape(len(g), 14, 8, 14, 8).mean((2, 4)).reshape(len(g), -1)
    t -= t.mean(1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True) + 1e-6  # a flat image: all zeros, matches nothing
    return t


def near_duplicates(images: np.ndarray, of: np.ndarray, threshold: float = NEAR_DUPLICATE_R,
                    chunk: int = 2048) -> np.ndarray:
    """Boolean (N,): image i's thumbnail correlates above ``threshold`` with some image of ``of``,
    or equals one byte for byte."""
    t, ref = thumbnails(images), thumbnails(of)
    out = np.zeros(len(t), bool)
    for i in range(0, len(t), chunk):
        out[i:i + chunk] = (t[i:i + chunk] @ ref.T).max(1, initial=-1.0) > threshold
    exact = {_digest(im) for im in np.asarray(of)}
    out |= np.array([_digest(im) in exact for im in np.asarray(images)], bool)
    return out


def _digest(image: np.ndarray) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).digest()


def other_session_images(root: str | Path, session_images: np.ndarray, exclude: Iterable[str] = (),
                         threshold: float = NEAR_DUPLICATE_R) -> np.ndarray:
    """Every image under ``root/images/images_<name>.zip`` except those of the ``exclude`` sessions,
    of near-duplicates of ``session_images`` (all of the session's images: fit and test half) and
    of repeats among themselves; (N, 112, 112, 3) uint8 in a fixed order (by session name, then
    file order). Empty (0, 112, 112, 3) where there are none."""
    from .image_files import read_images
    from .session import data_dir

    folder = data_dir(root) / "images"
    skip = {str(s) for s in exclude}
    parts = [read_images(z) for z in sorted(folder.glob("images_*.zip")) if z.stem[len("images_"):] not in skip]
    if not parts:
        return np.zeros((0, 112, 112, 3), np.uint8)
    images = np.concatenate(parts)
    first: dict[bytes, int] = {}  # repeats across sessions (e.g. 210322 and 210325 share 600 images)
    for i, im in enumerate(images):
        first.setdefault(_digest(im), i)
    images = images[sorted(first.values())]
    return images[~near_duplicates(images, session_images, threshold)]
