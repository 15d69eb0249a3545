"""Reading stimulus images from a .npy file, a folder of image files, or a zip of them."""
from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np

from ..constants import IMAGE_SIZE
from ..files import ZIP_ERRORS, read_zip_member

__all__ = ["read_images", "decode_rgb", "IMAGE_SUFFIXES", "MAX_DECODE_PIXELS", "MAX_IMAGE_FILE_BYTES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: Largest image decoded (pixels): 8192^2 RGB is 192 MB. The size is read from the file's header
#: before decoding, so a small file declaring more is refused without allocating it.
MAX_DECODE_PIXELS = 8192 * 8192
#: Largest image file read into memory (bytes), e.g. a zip member whose declared size is huge.
MAX_IMAGE_FILE_BYTES = 256 * 2**20


class _Refused(ValueError):
    """decode_rgb's own refusals (already labelled), told apart from Pillow's ValueErrors."""


def decode_rgb(source: str | Path | bytes, label: str, resize: bool = False) -> np.ndarray:
    """One image file as (112, 112, 3) uint8 RGB.

    Args:
        source: a path, or the file's bytes.
        label: how error messages name the image (its path, or the container and member).
        resize: scale other sizes to 112x112 (Pillow's bilinear filter, antialiased when
            shrinking); otherwise an image of another size is an error.

    Raises:
        ValueError: unreadable or corrupt file, more than MAX_DECODE_PIXELS pixels, or (without
            ``resize``) not 112x112 — all checked from the header, before decoding.
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow's bomb warning: the size is checked right here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        with im:
            w, h = im.size
            if w * h > MAX_DECODE_PIXELS:
                raise _Refused(f"{label}: {w}x{h} pixels, more than the {MAX_DECODE_PIXELS:,} accepted")
            if not resize and (w, h) != (IMAGE_SIZE, IMAGE_SIZE):
                raise _Refused(f"{label}: image is {w}x{h}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
            rgb = im.convert("RGB")
            if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
                rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
            return np.asarray(rgb, np.uint8)
    except _Refused:
        raise
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, struct.error ... for bad files
        raise ValueError(f"{label}: cannot decode image ({type(e).__name__}: {e})") from None


def read_images(path: str | Path) -> np.ndarray:
    """Load stimulus images as an array of shape (N, 112, 112, 3).

    ``path`` may be:
      * a ``.npy`` file holding (N, 112, 112, 3) or (N, 3, 112, 112) images (returned as stored:
        uint8 raw pixels, or float recentred pixels);
      * a folder of image files, or a ``.zip`` of them (read without unpacking), taken in
        sorted name order and decoded to uint8 RGB with Pillow.

    Raises:
        ValueError: missing path, no images, an unreadable or corrupt file, or an image that is
            not 112x112.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images = [decode_rgb(p, f"{path}: image {p.name!r}") for p in files]
    elif path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"{path}: not a readable .npy file ({e})") from None
        ok = arr.ndim == 4 and arr.shape[1:] in ((IMAGE_SIZE, IMAGE_SIZE, 3), (3, IMAGE_SIZE, IMAGE_SIZE))
        if not ok:
            raise ValueError(f"{path}: expected shape (N,112,112,3) or (N,3,112,112), got {arr.shape}")
        if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8):
            return arr.astype(arr.dtype.newbyteorder("="), copy=False)  # big-endian files too
        if arr.dtype != np.uint8:
            raise ValueError(f"{path}: images of dtype {arr.dtype}; expected uint8 raw pixels or "
                             f"float32/float64 recentred pixels")
        return arr
    elif path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = sorted(n for n in zf.namelist()
                               if not n.endswith("/") and Path(n).suffix.lower() in IMAGE_SUFFIXES)
                images = [decode_rgb(read_zip_member(zf, n, MAX_IMAGE_FILE_BYTES, f"{path}: member {n!r}"),
                                     f"{path}: image {n!r}") for n in names]
        except ZIP_ERRORS as e:
            raise ValueError(f"{path}: corrupt, truncated or unsupported zip ({type(e).__name__}: {e})") from None
    else:
        raise ValueError(f"{path}: expected a .npy file, a .zip of images or a folder of images")
    if not images:
        raise ValueError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return np.stack(images)
