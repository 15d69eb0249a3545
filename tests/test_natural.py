"""Other sessions' images as extra natural images: near-duplicates of a session's images never
pass, whatever was done to the copy; distinct images do."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from compactcortex.data.natural import near_duplicates, other_session_images, thumbnails
from compactcortex.data.session import Session, save_session


def _images(n: int, seed: int) -> np.ndarray:
    """Smooth random images (natural-like: most energy at low frequencies)."""
    rng = np.random.default_rng(seed)
    low = rng.normal(size=(n, 7, 7, 3))
    big = np.repeat(np.repeat(low, 16, 1), 16, 2) + 0.2 * rng.normal(size=(n, 112, 112, 3))
    return np.clip(128 + 50 * big, 0, 255).astype(np.uint8)


def _jpeg(im: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_thumbnails_are_unit_correlations():
    t = thumbnails(_images(5, 0))
    assert t.shape == (5, 196) and t.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1, atol=1e-5)
    assert np.abs(thumbnails(np.full((1, 112, 112, 3), 7, np.uint8))).max() == 0  # flat: matches nothing
    with pytest.raises(ValueError, match=r"\(N, 112, 112, 3\)"):
        thumbnails(np.zeros((2, 64, 64, 3), np.uint8))


def test_copies_are_caught_distinct_images_pass():
    ref = _images(20, 1)
    copies = np.stack([ref[0], _jpeg(ref[1], 40), np.clip(ref[2].astype(int) + 12, 0, 255).astype(np.uint8),
                       np.roll(ref[3], 1, axis=1)])
    others = _images(30, 2)
    assert near_duplicates(copies, ref).all()
    assert not near_duplicates(others, ref).any()


def test_other_session_images_exclude_the_session_and_its_copies(tmp_path):
    own, a, b = _images(12, 3), _images(10, 4), _images(8, 5)
    b[:3] = a[:3]                      # a repeat across two other sessions: kept once
    a[5] = _jpeg(own[7], 50)           # a re-encoded copy of one of the session's images: dropped
    for name, ims in (("100001", own), ("100002", a), ("100003", b)):
        save_session(Session(name, ims, np.zeros((1, len(ims)))), tmp_path)
    got = other_session_images(tmp_path, own, exclude=["100001"])
    assert got.dtype == np.uint8 and got.shape == (10 + 8 - 3 - 1, 112, 112, 3)
    assert not near_duplicates(got, own).any()
    np.testing.assert_array_equal(got[:5], a[:5])  # fixed order: by session, then file order
    assert other_session_images(tmp_path, own, exclude=["100001", "100002", "100003"]).shape == (0, 112, 112, 3)
