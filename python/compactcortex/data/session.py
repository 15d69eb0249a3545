"""Recording sessions in the published V4 layout (``../shared/data/v4`` or the authors' repository).

Layout, under a root folder (the authors' repository keeps the same folders under
``data_V4_responses/``)::

    images/images_<session>.zip                    image0001.jpg ... (flat or in one subfolder)
    responses_repeat_averaged/responses_<session>.npy   (neurons, images) float64
    responses_raw/responses_<session>.npy                (neurons, images, repeats), NaN-padded

Responses are spike counts per 100 ms bin; image ``i`` is the ``i``-th image file in sorted
name order.
"""
from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_path, checked_name, open_regular
from ..constants import IMAGE_SIZE
from .image_files import IMAGE_SUFFIXES, read_images

__all__ = ["Session", "load_session", "save_session", "data_dir", "list_sessions"]

_SUBDIRS = ("", "data_V4_responses")


@dataclass
class Session:
    """One recording session.

    Attributes:
        name: session identifier, e.g. ``"190923"``.
        images: (N, 112, 112, 3) uint8 RGB stimuli, in recorded order.
        responses: (neurons, N) float64 repeat-averaged spike counts per 100 ms bin.
        raw: (neurons, N, repeats) float64 single-trial counts, NaN-padded, or None.
    """

    name: str
    images: np.ndarray
    responses: np.ndarray
    raw: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.name = checked_name(self.name, "session name")
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"session {self.name}: images must be (N,112,112,3), got {self.images.shape}")
        if self.responses.ndim != 2 or self.responses.shape[1] != n:
            raise ValueError(f"session {self.name}: responses must be (neurons, {n}) for {n} images, "
                             f"got {self.responses.shape}")
        if self.raw is not None and (self.raw.ndim != 3 or self.raw.shape[:2] != self.responses.shape):
            raise ValueError(f"session {self.name}: raw responses must be {self.responses.shape + ('repeats',)}, "
                             f"got {self.raw.shape}")

    @property
    def num_neurons(self) -> int:
        return self.responses.shape[0]

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def fit_indices(self) -> np.ndarray:
        """The paper's split for held-out sessions: the first half of the images fits a mapping..."""
        return np.arange(self.num_images // 2)

    @property
    def test_indices(self) -> np.ndarray:
        """... and the second half tests it."""
        return np.arange(self.num_images // 2, self.num_images)


def data_dir(root: str | Path) -> Path:
    """The folder holding images/ and responses_* folders inside ``root``."""
    root = Path(root)
    for sub in _SUBDIRS:
        if (root / sub / "responses_repeat_averaged").is_dir():
            return root / sub
    raise ValueError(f"{root}: no responses_repeat_averaged folder (looked in {root} and {root / 'data_V4_responses'})")


def list_sessions(root: str | Path) -> list[str]:
    """Sessions that have repeat-averaged responses under ``root``."""
    return sorted(p.stem.removeprefix("responses_") for p in (data_dir(root) / "responses_repeat_averaged").glob("responses_*.npy"))


def _load_npy(path: Path) -> np.ndarray:
    with open_regular(path, str(path)) as f:  # a FIFO or device would block np.load
        try:
            return np.load(f, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"{path}: not a readable .npy file ({e})") from None


def load_session(root: str | Path, session: str | int, images: bool = True) -> Session:
    """Load ``session`` from a folder laid out like ``../shared/data/v4`` or the authors' repository.

    ``images=False``: the responses alone, with black placeholder images (for a session whose
    images are not here, e.g. 211022, used with another session's images).

    Raises:
        ValueError: the session is missing, a file is truncated or corrupt, or the arrays'
            shapes disagree with each other or with the number of images.
    """
    name = checked_name(session, "session")
    d = data_dir(root)
    resp_path = d / "responses_repeat_averaged" / f"responses_{name}.npy"
    if not resp_path.is_file():
        known = ", ".join(list_sessions(root)) or "none"
        raise ValueError(f"{d}: no session {name} (sessions here: {known})")
    img_path = d / "images" / f"images_{name}.zip"
    if images and not img_path.is_file():
        raise ValueError(f"{img_path}: missing; session {name} has responses but no images here")
    responses = _load_npy(resp_path)
    raw_path = d / "responses_raw" / f"responses_{name}.npy"
    raw = _load_npy(raw_path) if raw_path.is_file() else None
    if images:
        images = read_images(img_path)  # decoded straight from the zip
    else:
        if responses.ndim != 2:
            raise ValueError(f"{resp_path}: shape {responses.shape}, expected (neurons, images)")
        images = np.zeros((responses.shape[1], 112, 112, 3), np.uint8)
    if responses.ndim != 2 or responses.shape[1] != len(images):
        raise ValueError(f"{resp_path}: shape {responses.shape} does not match the {len(images)} images of {img_path.name}")
    if raw is not None and (raw.ndim != 3 or raw.shape[:2] != responses.shape):
        raise ValueError(f"{raw_path}: shape {raw.shape} does not match the repeat-averaged {responses.shape}")
    return Session(name, images, responses.astype(np.float64), None if raw is None else raw.astype(np.float64))


def save_session(session: Session, root: str | Path, image_format: str = "png") -> None:
    """Write ``session`` under ``root`` in the published layout (files written atomically).

    Images go into ``images/images_<name>.zip`` as ``image0001.<image_format>`` ...; PNG keeps
    the pixels exact (the published zips hold JPEGs).
    """
    from PIL import Image

    if f".{image_format}" not in IMAGE_SUFFIXES:
        raise ValueError(f"image_format must be one of {IMAGE_SUFFIXES}, got {image_format!r}")
    root = Path(root)
    with atomic_path(root / "images" / f"images_{session.name}.zip") as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for i, im in enumerate(session.images):
                buf = io.BytesIO()
                Image.fromarray(im).save(buf, format=image_format.upper().replace("JPG", "JPEG"))
                zf.writestr(f"image{i + 1:04d}.{image_format}", buf.getvalue())
    arrays = {"responses_repeat_averaged": session.responses, "responses_raw": session.raw}
    for folder, arr in arrays.items():
        if arr is None:
            continue
        with atomic_path(root / folder / f"responses_{session.name}.npy") as tmp:
            with open(tmp, "wb") as f:
                np.save(f, arr)
