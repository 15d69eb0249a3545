"""Reading stimulus images from a .npy file, a folder of image files, or a zip of them."""
from __future__ import annotations

import io
import os
import threading
import warnings
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..constants import IMAGE_SIZE
from ..files import ZIP_ERRORS, Refused, open_regular, read_bounded, read_zip_member

__all__ = ["read_images", "decode_rgb", "IMAGE_SUFFIXES", "MAX_DECODE_PIXELS", "MAX_IMAGE_FILE_BYTES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
#: The formats decoded, whatever a file's suffix says (Pillow would open many more: GIF, PSD, EPS
#: through Ghostscript ...); a file's content, not its name, picks among these.
_FORMATS = ("JPEG", "PNG", "BMP", "TIFF")
#: Largest image decoded (pixels): 8192^2 RGB is 256 MB as Pillow holds it (4 bytes a pixel). The
#: size is read from the file's header before decoding, so a small file declaring more is
#: refused without allocating it.
MAX_DECODE_PIXELS = 8192 * 8192
#: Largest image file read into memory (bytes), e.g. a zip member whose declared size is huge.
MAX_IMAGE_FILE_BYTES = 256 * 2**20
#: 8-bit modes these formats open in, converted by Pillow (alpha dropped, not composited; CMYK,
#: YCbCr and LAB by Pillow's formulas; ICC profiles ignored). Not "La" (TIFF's premultiplied
#: grey + alpha), which Pillow cannot convert to RGB.
_RGB_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB"})
#: Integer modes read as 16-bit values: Pillow gives "I;16*" for 16-bit grey PNG/TIFF (older Pillow
#: "I"), and "I" for 32-bit TIFF, accepted only when its values fit 0..65535.
_INT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
_MODES = _RGB_MODES | _INT_MODES | {"F"}
_MACOS_METADATA = "__MACOSX"  # zips made by macOS: AppleDouble "._name" files, not images


# ---- decoding ------------------------------------------------------------------------------

_lock = threading.Lock()
_strict_depth = 0
_saved_truncated_flag = False


@contextmanager
def _no_truncated_images() -> Iterator[None]:
    """Hold ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` False while any decode here runs (a library may
    set it globally; Pillow then pads a truncated image with grey), and restore it after."""
    global _strict_depth, _saved_truncated_flag
    from PIL import ImageFile

    with _lock:
        if _strict_depth == 0:
            _saved_truncated_flag, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        _strict_depth += 1
    try:
        yield
    finally:
        with _lock:
            _strict_depth -= 1
            if _strict_depth == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _saved_truncated_flag


def _brief(e: BaseException) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):  # its text names a BytesIO object, not the file
        return f"not a {', '.join(_FORMATS[:-1])} or {_FORMATS[-1]} file"
    text = str(e)
    return f"{type(e).__name__}: {text[:200] + '...' if len(text) > 200 else text}"


def decode_rgb(source: str | os.PathLike | bytes, label: str, resize: bool = False,
               out: np.ndarray | None = None) -> np.ndarray:
    """One image file as (112, 112, 3) uint8 RGB.

    Accepted: JPEG, PNG, BMP and TIFF content (whatever the suffix; GIF, WebP ... are refused),
    first frame (page) only. Pixels become 8-bit RGB as follows:

    * 8-bit modes (bilevel, grey, palette, RGB, CMYK, YCbCr, LAB) as Pillow converts them;
      alpha (LA, PA, RGBA) is dropped, not composited; ICC profiles are ignored;
    * 16-bit grey (PNG, TIFF): ``round(v * 255 / 65535)``; 32-bit integer grey (TIFF): the same,
      if every value lies in 0..65535, else refused;
    * 32-bit float grey (TIFF): ``round(v * 255)`` if every value is finite and in [0, 1], else
      refused;
    * 16-bit-per-channel colour PNG/TIFF: Pillow keeps each value's high byte (``v // 256``, at
      most 1 below the rounded value);
    * any other mode (e.g. TIFF's premultiplied grey + alpha, "La") is refused, naming it.

    The EXIF orientation is applied first, so the size check and the resize see the image
    upright. Truncated files are refused, whatever ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES``
    says; a JPEG is decoded twice for that (its truncation before an end marker is otherwise
    silent: see _check_jpeg_complete).

    Args:
        source: a path (a regular file: FIFOs, devices, sockets and folders are refused before
            being opened), or the file's bytes.
        label: how error messages name the image (its path, or the container and member).
        resize: scale other sizes to 112x112 (Pillow's bilinear filter, antialiased when
            shrinking); otherwise an image of another size is an error.
        out: a (112, 112, 3) uint8 array to decode into (returned); default a new one.

    Raises:
        ValueError: not a regular file, larger than MAX_IMAGE_FILE_BYTES, more than
            MAX_DECODE_PIXELS pixels or (without ``resize``) not 112x112 (both checked from the
            header, before decoding), corrupt or truncated (including a JPEG whose scan data
            stops early before an end marker), or an unsupported mode or out-of-range values.
            Messages start with ``label``.
    """
    from PIL import Image

    if not isinstance(source, bytes):
        with open_regular(source, label) as f:
            source = read_bounded(f, MAX_IMAGE_FILE_BYTES, label)
    if out is None:
        out = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    elif out.shape != (IMAGE_SIZE, IMAGE_SIZE, 3) or out.dtype != np.uint8:
        raise ValueError(f"out must be a ({IMAGE_SIZE}, {IMAGE_SIZE}, 3) uint8 array, got {out.shape} {out.dtype}")
    try:
        with _no_truncated_images(), warnings.catch_warnings():
            # Pillow's bomb warning: the size is checked in _decode_into. Its other warnings concern
            # metadata (corrupt EXIF tags ...), not pixels, and stay warnings.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            _decode_into(source, label, resize, out)
    except Refused:
        raise
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, struct.error ... for bad files
        raise ValueError(f"{label}: cannot decode image ({_brief(e)})") from None
    return out


def _decode_into(data: bytes, label: str, resize: bool, out: np.ndarray) -> None:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=_FORMATS) as im:
        w, h = im.size
        if w * h > MAX_DECODE_PIXELS:
            raise Refused(f"{label}: {w}x{h} pixels, more than the {MAX_DECODE_PIXELS:,} accepted")
        method = _upright(im)
        if method in (Image.TRANSPOSE, Image.TRANSVERSE, Image.ROTATE_90, Image.ROTATE_270):
            w, h = h, w
        if not resize and (w, h) != (IMAGE_SIZE, IMAGE_SIZE):
            raise Refused(f"{label}: image is {w}x{h}, expected {IMAGE_SIZE}x{IMAGE_SIZE}")
        if im.mode not in _MODES:
            raise Refused(f"{label}: pixel mode {im.mode!r} is not supported")
        im.load()  # the whole image, so that truncation raises here
        if im.format in ("JPEG", "MPO"):
            _check_jpeg_complete(data, im, label)
        img = _to_8bit(im, label)
    if method is not None:
        img = img.transpose(method)
    if img.size != (IMAGE_SIZE, IMAGE_SIZE):
        img = img.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    out[...] = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def _upright(im) -> int | None:
    """The transpose that makes ``im`` upright from its EXIF Orientation tag (0x0112), or None:
    PIL.ImageOps.exif_transpose's table, applied later to the 8-bit copy (which lacks the tag)."""
    from PIL import Image

    return {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
            6: Image.ROTATE_270, 7: Image.TRANSVERSE, 8: Image.ROTATE_90}.get(im.getexif().get(0x0112))


def _to_8bit(im, label: str):
    """``im`` (loaded) with 8-bit channels, as decode_rgb documents: grey ("L") or "RGB" (grey
    stays one channel until after the resize: a third of the work and memory)."""
    from PIL import Image

    if im.mode in _INT_MODES or im.mode == "F":
        w, h = im.size
        grey = np.empty((h, w), np.uint8)
        rows = max(1, 2**20 // w)  # in strips of rows: a float copy of the whole would double the memory
        for y in range(0, h, rows):
            a = np.asarray(im.crop((0, y, w, min(y + rows, h))))
            if im.mode == "F":
                bad = a[~((a >= 0) & (a <= 1))]  # NaN fails both
                if bad.size:
                    raise Refused(f"{label}: float pixel value {bad[0]:g}; only finite values in [0, 1] are accepted")
                grey[y:y + rows] = np.rint(a * np.float32(255))
            else:
                bad = a[(a < 0) | (a > 65535)]
                if bad.size:
                    raise Refused(f"{label}: integer pixel value {bad[0]}; only 0..65535 (16-bit) is accepted")
                grey[y:y + rows] = (a.astype(np.int32) + 128) // 257  # v * 255 / 65535, rounded (never a tie)
        return Image.fromarray(grey)
    if im.mode in ("L", "RGB"):
        return im
    return im.convert("L" if im.mode in ("1", "LA") else "RGB")


# ---- JPEG: truncation that libjpeg only warns about ------------------------------------------
# A JPEG whose scan data stops early but ends with an EOI marker decodes "successfully": libjpeg
# warns ("Premature end of data segment") and fills the rest with grey, but Pillow's decoder
# discards libjpeg's warnings. So the file is decoded a second time with filler bytes (and the
# next restart marker, then more filler) inserted after its last scan: a complete scan never reads
# them (libjpeg skips bytes between a finished scan and the next marker), a truncated one
# decodes them as its missing data, so the two decodes differ. Scans missing altogether
# (a progressive file cut at a scan boundary) are found from the scan headers.

_FILLER = bytes((i * 73 + 41) % 255 for i in range(256))  # no 0xFF: never read as a marker
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)
_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def _jpeg_layout(d: bytes) -> tuple[int, int, bool] | None:
    """Walk the first image's markers to its EOI: (offset where its last scan's data ends, before
    any fill bytes; restart markers in that scan; whether its scans reach every coefficient of
    every component at full precision), or None if the walk fails (no scan, no EOI, or bytes
    outside any segment: a corrupt file)."""
    comps: set[int] = set()
    done: set[tuple[int, int]] = set()  # (component, coefficient) decoded to full precision
    progressive, rst, scan_end, i = False, 0, None, 2
    try:
        while True:
            while d[i] == 0xFF and d[i + 1] == 0xFF:  # fill bytes before a marker
                i += 1
            if d[i] != 0xFF:
                return None
            m = d[i + 1]
            if m == 0xD9:
                full = all((c, k) in done for c in comps for k in range(64 if progressive else 1))
                return None if scan_end is None else (scan_end, rst, full)
            if 0xD0 <= m <= 0xD7 or m == 0x01:  # parameterless markers
                i += 2
                continue
            end = i + 2 + int.from_bytes(d[i + 2:i + 4], "big")
            seg = d[i + 4:end]
            if m in _SOF:
                progressive = m in _PROGRESSIVE
                comps = {seg[6 + 3 * j] for j in range(seg[5])}
            elif m == 0xDA:
                ns = seg[0]
                ids, (ss, se, a) = seg[1:1 + 2 * ns:2], seg[1 + 2 * ns:4 + 2 * ns]
                if not progressive:
                    done |= {(c, 0) for c in ids}
                elif a & 15 == 0:  # successive approximation reached the last bit
                    done |= {(c, k) for c in ids for k in range(ss, min(se, 63) + 1)}
                rst, end = 0, d.index(b"\xff", end)
                while d[end + 1] == 0 or 0xD0 <= d[end + 1] <= 0xD7 or d[end + 1] == 0xFF:
                    rst += 0xD0 <= d[end + 1] <= 0xD7  # stuffed 0x00, restart markers, fill: still the scan
                    end = d.index(b"\xff", end + (1 if d[end + 1] == 0xFF else 2))
                while d[end - 1] == 0xFF:  # back to the first fill byte: a dangling 0xFF would turn
                    end -= 1               # the filler's first byte into a marker
                scan_end = end
            i = end
    except (IndexError, ValueError):  # ran off the end, or a short segment
        return None


def _check_jpeg_complete(data: bytes, im, label: str) -> None:
    """Refuse the JPEG ``data`` (decoded as ``im``) if scans are missing or its last scan's data
    ends early (see the comment above)."""
    from PIL import Image

    layout = _jpeg_layout(data)
    if layout is None:
        raise Refused(f"{label}: corrupt JPEG (no scan, no end marker, or bytes outside its segments)")
    scan_end, rst, full = layout
    if not full:
        raise Refused(f"{label}: truncated JPEG (scans missing: not every coefficient is decoded)")
    probe = data[:scan_end] + _FILLER + bytes((0xFF, 0xD0 + rst % 8)) + _FILLER + data[scan_end:]
    try:
        with Image.open(io.BytesIO(probe), formats=("JPEG",)) as other:
            other.load()
            same = other.size == im.size and other.mode == im.mode and _same_pixels(im, other)
    except Exception:
        same = False
    if not same:
        raise Refused(f"{label}: truncated JPEG (its scan data ends early)")


def _same_pixels(a, b) -> bool:
    rows = max(1, 2**22 // (a.width * len(a.getbands())))  # compare in strips of ~4 MB, not whole copies
    boxes = ((0, y, a.width, min(y + rows, a.height)) for y in range(0, a.height, rows))
    return all(a.crop(box).tobytes() == b.crop(box).tobytes() for box in boxes)


# ---- containers ----------------------------------------------------------------------------

def _is_image_name(name: str) -> bool:
    """An image file's name (folder entry or zip member), skipping macOS metadata: AppleDouble
    ``._name`` files and a zip's ``__MACOSX/`` folder."""
    parts = name.split("/")
    return (Path(name).suffix.lower() in IMAGE_SUFFIXES and not parts[-1].startswith("._")
            and parts[0] != _MACOS_METADATA)


def _short(name: str) -> str:
    return repr(name if len(name) <= 120 else name[:120] + "...")  # member names come from the file


def _allocate(n: int, label: str) -> np.ndarray:
    """The (n, 112, 112, 3) uint8 output, allocated once (images are decoded into it)."""
    try:
        return np.empty((n, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    except MemoryError:
        raise Refused(f"{label}: {n:,} images need {n * IMAGE_SIZE * IMAGE_SIZE * 3:,} bytes, "
                       f"more than can be allocated") from None


def _folder_files(folder: Path) -> list[tuple[Path, str]]:
    """The folder's image files in name order: (path to open without following symlinks, label).
    A symlink is followed here, only to a file inside the folder, and its target opened (so a
    swap in between is refused)."""
    root = folder.resolve()
    files = []
    for p in sorted(folder.iterdir()):
        if not _is_image_name(p.name):
            continue
        label = f"{folder}: image {p.name!r}"
        if p.is_symlink():
            try:
                target = p.resolve(strict=True)
            except (OSError, RuntimeError) as e:  # dangling, or a loop (RuntimeError before Python 3.13)
                raise Refused(f"{label}: broken symlink ({e})") from None
            if root not in target.parents:
                raise Refused(f"{label}: symlink to {target}, outside the folder; not read")
            p = target
        files.append((p, label))
    return files


def read_images(path: str | Path) -> np.ndarray:
    """Load stimulus images as an array of shape (N, 112, 112, 3).

    ``path`` may be:
      * a ``.npy`` file holding (N, 112, 112, 3) or (N, 3, 112, 112) images (returned as stored:
        uint8 raw pixels, or float recentred pixels);
      * a folder of image files, or a ``.zip`` of them (read without unpacking), taken in
        sorted name order, each decoded to uint8 RGB as :func:`decode_rgb` describes.

    Only regular files are read: the path itself, and each image (a FIFO, device, socket or
    folder named ``*.png`` is refused, not skipped). In a folder, a symlink is followed only
    to a file inside the folder; subfolders are not read. Names ending in ``.jpg``, ``.jpeg``,
    ``.png``, ``.bmp``, ``.tif`` or ``.tiff`` (any case) are images; other files are skipped,
    and so is macOS metadata: ``._name`` files (AppleDouble) and a zip's ``__MACOSX/`` folder.
    The output is allocated once and each image decoded into it.

    Raises:
        ValueError: missing path, no images, a file that is not regular, an unreadable, corrupt
            or truncated file, or an image that is not 112x112 (see decode_rgb). Messages name
            the file (and the zip member).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")

    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise ValueError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        images = _allocate(len(files), str(path))
        for k, (p, label) in enumerate(files):
            with open_regular(p, label, follow_symlinks=False) as f:
                decode_rgb(read_bounded(f, MAX_IMAGE_FILE_BYTES, label), label, out=images[k])
        return images
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".zip"):
        raise ValueError(f"{path}: expected a .npy file, a .zip of images or a folder of images")
    with open_regular(path, str(path)) as f:
        return _read_npy(f, path) if suffix == ".npy" else _read_zip(f, path)


def _read_npy(f: BinaryIO, path: Path) -> np.ndarray:
    try:
        arr = np.load(f, allow_pickle=False)
    except Exception as e:
        raise ValueError(f"{path}: not a readable .npy file ({_brief(e)})") from None
    ok = arr.ndim == 4 and arr.shape[1:] in ((IMAGE_SIZE, IMAGE_SIZE, 3), (3, IMAGE_SIZE, IMAGE_SIZE))
    if not ok:
        raise ValueError(f"{path}: expected shape (N,112,112,3) or (N,3,112,112), got {arr.shape}")
    if arr.dtype.kind == "f" and arr.dtype.itemsize in (4, 8):
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)  # big-endian files too
    if arr.dtype != np.uint8:
        raise ValueError(f"{path}: images of dtype {arr.dtype}; expected uint8 raw pixels or "
                         f"float32/float64 recentred pixels")
    return arr


def _read_zip(f: BinaryIO, path: Path) -> np.ndarray:
    def corrupt(e: BaseException) -> ValueError:
        return ValueError(f"{path}: corrupt, truncated or unsupported zip ({_brief(e)})")

    try:
        zf = zipfile.ZipFile(f)
        names = sorted(n for n in zf.namelist() if not n.endswith("/") and _is_image_name(n))
    except ZIP_ERRORS as e:
        raise corrupt(e) from None
    with zf:
        if not names:
            raise ValueError(f"{path}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})")
        images = _allocate(len(names), str(path))
        for k, n in enumerate(names):
            try:
                data = read_zip_member(zf, n, MAX_IMAGE_FILE_BYTES, f"{path}: member {_short(n)}")
            except ZIP_ERRORS as e:
                raise corrupt(e) from None
            decode_rgb(data, f"{path}: image {_short(n)}", out=images[k])
    return images
