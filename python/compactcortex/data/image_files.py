"""Reading stimulus images from a .npy file, a folder of image files, or a zip of them."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np

from ..constants import IMAGE_SIZE

__all__ = ["read_images", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


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
    from PIL import Image

    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")

    def decode(name: str, data: bytes) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:
            raise ValueError(f"{path}: cannot decode image {name!r} ({e})") from None
        if arr.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"{path}: image {name!r} is {arr.shape[1]}x{arr.shape[0]}, "
                             f"expected {IMAGE_SIZE}x{IMAGE_SIZE}")
        return arr

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        images = [decode(p.name, p.read_bytes()) for p in files]
    elif path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except Exception as e:
            raise ValueError(f"{path}: not a readable .npy file ({e})") from None
        ok = arr.ndim == 4 and arr.shape[1:] in ((IMAGE_SIZE, IMAGE_SIZE, 3), (3, IMAGE_SIZE, IMAGE_SIZE))
        if not ok:
            raise ValueError(f"{path}: expected shape (N,112,112,3) or (N,3,112,112), got {arr.shape}")
        return arr
    elif path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = sorted(n for n in zf.namelist()
                               if not n.endswith("/") and Path(n).suffix.lower() in IMAGE_SUFFIXES)
                images = [decode(n, zf.read(n)) for n in names]
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise ValueError(f"{path}: corrupt or truncated zip ({e})") from None
    else:
        raise ValueError(f"{path}: expected a .npy file, a .zip of images or a folder of images")
    if not images:
        raise ValueError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return np.stack(images)
