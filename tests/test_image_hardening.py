"""Regression tests for the image-input probe: only regular files are opened (a FIFO named b.png
hung `compactcortex predict`), 16-bit and float pixels convert as documented instead of
clipping, EXIF orientation applies, truncated images are refused (a JPEG cut mid-scan with an
end marker too), macOS metadata in zips is skipped, the output is allocated once; then
fuzzers of decode_rgb and of zips of images, bounded in time and memory.

Example counts come from the hypothesis profiles of test_properties.py (``ci`` by default,
``HYPOTHESIS_PROFILE=long`` for a soak).
"""
from __future__ import annotations

import io
import itertools
import os
import resource
import socket
import struct
import threading
import time
import tracemalloc
import zipfile
import zlib
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from compactcortex.data import image_files
from compactcortex.data.image_files import decode_rgb, read_images

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def _smooth(seed: int = 0, size: tuple[int, int] = (112, 112)) -> np.ndarray:
    """A photograph-like RGB image (smooth, so JPEG scans are long and cuts land mid-scan)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 40, (*size, 3)).cumsum(0).cumsum(1)
    x -= x.min((0, 1))
    return (x / x.max((0, 1)) * 255).astype(np.uint8)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png16(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour)."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


GRADIENT = (np.arange(112 * 112, dtype=np.int64).reshape(112, 112) * 65535 // (112 * 112 - 1))


# ---- 1. only regular files --------------------------------------------------------------------


@contextmanager
def _unblock_after(fifo: Path, seconds: float = 5.0):
    """Should the code under test block opening or reading ``fifo`` (the defect), a writer opens
    and closes it after ``seconds``: the test then fails instead of hanging."""
    done = threading.Event()

    def writer() -> None:
        if not done.wait(seconds):
            os.close(os.open(fifo, os.O_WRONLY))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        yield
    finally:
        done.set()
        t.join(1)


def test_fifo_in_images_folder_is_refused_not_waited_on(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    (d / "a.png").write_bytes(_encode(Image.fromarray(_smooth()), "PNG"))
    os.mkfifo(d / "b.png")
    t0 = time.perf_counter()
    with _unblock_after(d / "b.png"), pytest.raises(ValueError, match=r"'b.png': not a regular file \(a FIFO\)"):
        read_images(d)
    assert time.perf_counter() - t0 < 4


def test_fifo_as_zip_npy_or_stimulus_is_refused(tmp_path):
    for name in ("x.zip", "x.npy", "stim.png"):
        os.mkfifo(tmp_path / name)
    for name in ("x.zip", "x.npy"):
        with _unblock_after(tmp_path / name), pytest.raises(ValueError, match=rf"{name}: not a regular file \(a FIFO\)"):
            read_images(tmp_path / name)
    stim = tmp_path / "stim.png"
    with _unblock_after(stim), pytest.raises(ValueError, match=r"stim.png: not a regular file \(a FIFO\)"):
        decode_rgb(stim, str(stim), resize=True)  # what brainscore.read_stimulus calls
    try:
        from compactcortex.brainscore import read_stimulus
    except ImportError:  # brainscore-vision lives in an environment of its own (.ci/run)
        return
    with _unblock_after(stim), pytest.raises(ValueError, match=r"stim.png: not a regular file \(a FIFO\)"):
        read_stimulus(stim)


def test_devices_sockets_and_folders_are_not_regular_files(tmp_path):
    with pytest.raises(ValueError, match=r"/dev/zero: not a regular file \(a character device\)"):
        decode_rgb("/dev/zero", "/dev/zero", resize=True)
    d = tmp_path / "d"
    d.mkdir()
    (d / "f.png").mkdir()
    with pytest.raises(ValueError, match=r"'f.png': not a regular file \(a folder\)"):
        read_images(d)
    (d / "f.png").rmdir()
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(d / "s.png"))
        with pytest.raises(ValueError, match=r"'s.png': not a regular file \(a socket\)"):
            read_images(d)


def test_symlinks_are_followed_only_inside_the_folder(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    png = _encode(Image.fromarray(_smooth()), "PNG")
    (d / "a.png").write_bytes(png)
    (d / "sub" / "b.png").write_bytes(png)  # subfolders are not read themselves
    (d / "link.png").symlink_to(Path("sub") / "b.png")
    assert read_images(d).shape == (2, 112, 112, 3)
    (tmp_path / "outside.png").write_bytes(png)
    for target, why in [(tmp_path / "outside.png", "outside the folder"), ("/dev/null", "outside the folder"),
                        (d / "missing.png", "broken symlink")]:
        (d / "z.png").symlink_to(target)
        with pytest.raises(ValueError, match=f"'z.png': .*{why}"):
            read_images(d)
        (d / "z.png").unlink()


# ---- 2. pixel modes ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,dtype", [("PNG", "<u2"), ("TIFF", "<u2"), ("TIFF", ">u2"), ("TIFF", "<i4")])
def test_16_bit_grey_is_scaled_to_8_bits_and_rounded(fmt, dtype):
    data = _encode(Image.fromarray(GRADIENT.astype(dtype)), fmt)
    got = decode_rgb(data, "g")
    expected = np.round(GRADIENT * 255 / 65535).astype(np.uint8)  # never a tie: 65535 = 255 * 257
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], expected)
    assert (np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) == 255).mean() > 0.99  # Pillow alone: white


@pytest.mark.parametrize("bad", [70000, -1])
def test_32_bit_integer_grey_outside_16_bits_is_refused(bad):
    arr = np.full((112, 112), 1000, np.int32)
    arr[100, 7] = bad
    with pytest.raises(ValueError, match=f"i.tif: integer pixel value {bad}; only 0..65535"):
        decode_rgb(_encode(Image.fromarray(arr), "TIFF"), "i.tif")


def test_float_tiff_in_0_1_is_scaled_by_255_and_rounded():
    k = np.arange(112 * 112) % 256
    v = np.clip((k + np.where(k % 2, 0.3, -0.3)) / 255, 0, 1).astype(np.float32).reshape(112, 112)  # no ties
    got = decode_rgb(_encode(Image.fromarray(v), "TIFF"), "f.tif")
    np.testing.assert_array_equal(got[..., 1], np.round(v.astype(np.float64) * 255).astype(np.uint8))


@pytest.mark.parametrize("bad", [1.5, -0.25, np.nan, np.inf])
def test_float_tiff_outside_0_1_or_not_finite_is_refused(bad):
    v = np.full((112, 112), 0.5, np.float32)
    v[3, 4] = bad
    with pytest.raises(ValueError, match=rf"f.tif: float pixel value {bad:g}; only finite values in \[0, 1\]"):
        decode_rgb(_encode(Image.fromarray(v), "TIFF"), "f.tif")


@pytest.mark.parametrize("color_type,channels", [(2, 3), (6, 4), (4, 2)])
def test_16_bit_colour_png_keeps_pillows_high_byte(color_type, channels):
    """Documented, not chosen: Pillow opens 16-bit colour PNGs as 8-bit, keeping v // 256."""
    arr = np.stack([GRADIENT, GRADIENT[::-1], GRADIENT.T, GRADIENT[:, ::-1]][:channels], -1)
    got = decode_rgb(_png16(arr, color_type), "c16.png")
    grey = color_type == 4
    np.testing.assert_array_equal(got, (arr[..., [0, 0, 0] if grey else [0, 1, 2]] >> 8).astype(np.uint8))


@pytest.mark.parametrize("mode,fmt", [("1", "PNG"), ("L", "PNG"), ("P", "PNG"), ("LA", "PNG"), ("RGBA", "PNG"),
                                      ("P", "BMP"), ("PA", "TIFF"), ("CMYK", "TIFF"), ("CMYK", "JPEG"),
                                      ("YCbCr", "TIFF"), ("LAB", "TIFF"), ("L", "JPEG")])
def test_8_bit_modes_convert_as_pillow_does_alpha_dropped(mode, fmt):
    src = Image.fromarray(_smooth(1)).convert("RGBA")
    src.putalpha(Image.fromarray((_smooth(2)[..., 0] // 2).astype(np.uint8)))  # alpha 0 .. 127
    im = src.convert(mode) if mode not in ("P", "PA") else src.convert("RGB").quantize(64).convert(mode)
    kw = {"transparency": 3} if (mode, fmt) == ("P", "PNG") else {}  # a tRNS chunk: converting warns, not refused
    data = _encode(im, fmt, **kw)
    expected = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_array_equal(decode_rgb(data, "m"), expected)


def test_unsupported_mode_and_other_formats_are_refused():
    la = bytearray(_encode(Image.new("LA", (112, 112)), "TIFF"))
    tag = struct.pack("<HHIHH", 338, 3, 1, 2, 0)  # ExtraSamples = 2 (unassociated alpha) ...
    la[la.index(tag):la.index(tag) + 12] = struct.pack("<HHIHH", 338, 3, 1, 1, 0)  # ... 1: premultiplied
    assert Image.open(io.BytesIO(bytes(la))).mode == "La"
    with pytest.raises(ValueError, match="la.tif: pixel mode 'La' is not supported"):
        decode_rgb(bytes(la), "la.tif")
    gif = _encode(Image.new("P", (112, 112)), "GIF")
    with pytest.raises(ValueError, match="a.png: cannot decode image \\(not a JPEG, PNG, BMP or TIFF file\\)"):
        decode_rgb(gif, "a.png")


# ---- 3. EXIF orientation ----------------------------------------------------------------------


def _with_orientation(arr: np.ndarray, orientation: int, fmt: str = "PNG") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(Image.fromarray(arr), fmt, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    for fmt in ("PNG", "JPEG"):
        data = _with_orientation(_smooth(3), orientation, fmt)
        upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        np.testing.assert_array_equal(decode_rgb(data, "o"), np.asarray(upright))
    if orientation in (5, 6, 7, 8):
        assert not np.array_equal(decode_rgb(data, "o"), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_size_check_and_resize_see_the_upright_image():
    wide = _with_orientation(_smooth(4, (112, 224)), 6)  # stored 224x112, upright 112x224
    with pytest.raises(ValueError, match="w.png: image is 112x224, expected 112x112"):
        decode_rgb(wide, "w.png")
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(wide))).resize((112, 112), Image.BILINEAR)
    np.testing.assert_array_equal(decode_rgb(wide, "w.png", resize=True), np.asarray(upright))
    tall = _with_orientation(_smooth(4, (224, 112)), 8)  # stored 112x224, upright 224x112 ... resized
    assert decode_rgb(tall, "t.png", resize=True).shape == (112, 112, 3)


# ---- 4. truncated images ----------------------------------------------------------------------


def _jpeg(**kw) -> bytes:
    return _encode(Image.fromarray(_smooth(5)), "JPEG", quality=90, **kw)


def _pillow_decodes(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


JPEG_KINDS = {"baseline": {}, "progressive": {"progressive": True}, "restarts": {"restart_marker_blocks": 3},
              "progressive_restarts": {"progressive": True, "restart_marker_rows": 1}, "444": {"subsampling": 0}}


@pytest.mark.parametrize("kind", sorted(JPEG_KINDS))
def test_jpeg_cut_mid_scan_with_an_end_marker_is_refused(kind):
    data = _jpeg(**JPEG_KINDS[kind])
    full = decode_rgb(data, "full.jpg")
    np.testing.assert_array_equal(full, _pillow_decodes(data))
    last_scan = data.rfind(b"\xff\xda")
    cuts = {"mid-scan": (last_scan + len(data)) // 2}
    ff = data.find(b"\xff\x00", last_scan)
    if ff > 0:
        cuts["after a stuffed 0xFF"] = ff + 1  # leaves a dangling 0xFF before the end marker
    rst = max(data.rfind(bytes((0xFF, m)), last_scan) for m in range(0xD0, 0xD8))
    if rst > 0:
        cuts["before a restart marker"] = rst  # a whole restart interval missing, not a partial one
    for (where, cut), tail in itertools.product(cuts.items(), [b"", b"\xff\xfe\x00\x06note"]):  # a comment after
        cut_file = data[:cut] + tail + b"\xff\xd9"
        assert not np.array_equal(_pillow_decodes(cut_file), full), where  # Pillow alone: grey rows, no error
        with pytest.raises(ValueError, match=r"cut.jpg: truncated JPEG \(its scan data ends early\)"):
            decode_rgb(cut_file, "cut.jpg")


def test_progressive_jpeg_cut_between_scans_is_refused():
    data = _jpeg(progressive=True)
    cut_file = data[:data.rfind(b"\xff\xda")] + b"\xff\xd9"  # the last scan (refinement bits) missing
    _pillow_decodes(cut_file)
    with pytest.raises(ValueError, match=r"cut.jpg: truncated JPEG \(scans missing"):
        decode_rgb(cut_file, "cut.jpg")


@pytest.mark.filterwarnings("ignore::UserWarning")  # the cut TIFF's tags
def test_truncated_files_refused_even_where_pillow_is_told_to_load_them(monkeypatch, tmp_path):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some libraries set it globally
    png = _encode(Image.fromarray(_smooth()), "PNG")
    for name, data in [("a.png", png[:len(png) // 2]), ("b.jpg", _jpeg()[:-300]),
                       ("c.bmp", _encode(Image.fromarray(_smooth()), "BMP")[:-1000]),
                       ("d.tif", _encode(Image.fromarray(_smooth()), "TIFF", compression="tiff_lzw")[:-1000])]:
        with pytest.raises(ValueError, match=f"{name}: cannot decode image"):
            decode_rgb(data, name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored after each decode


# ---- 5. macOS metadata, 6. one allocation, 7. short messages -----------------------------------

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + b"\x00" * 60


def test_macos_metadata_is_skipped_in_zips_and_folders(tmp_path):
    png = _encode(Image.fromarray(_smooth()), "PNG")
    with zipfile.ZipFile(tmp_path / "mac.zip", "w") as zf:
        for name in ("imgs/a.png", "imgs/b.png"):
            zf.writestr(name, png)
        for name in ("__MACOSX/imgs/._a.png", "__MACOSX/imgs/._b.png", "imgs/._c.png"):
            zf.writestr(name, APPLE_DOUBLE)
    assert read_images(tmp_path / "mac.zip").shape == (2, 112, 112, 3)
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.png").write_bytes(png)
    (d / "._a.png").write_bytes(APPLE_DOUBLE)
    assert read_images(d).shape == (1, 112, 112, 3)


def test_zip_of_many_small_images_is_decoded_into_one_allocation(tmp_path):
    n = 1000
    colours = np.random.default_rng(0).integers(0, 256, (n, 3), dtype=np.uint8)
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for k, c in enumerate(colours):
            zf.writestr(f"{k:05d}.png", _encode(Image.new("RGB", (112, 112), tuple(int(v) for v in c)), "PNG"))
    tracemalloc.start()
    try:
        images = read_images(tmp_path / "many.zip")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(images[:, 50, 60], colours)
    assert peak < 1.2 * images.nbytes  # a list of decoded images and then np.stack held 2x


def test_messages_name_the_file_and_stay_short(tmp_path, monkeypatch):
    long_name = "x" * 5000 + ".png"
    with zipfile.ZipFile(tmp_path / "long.zip", "w") as zf:
        zf.writestr(long_name, b"junk")
    with pytest.raises(ValueError) as e:
        read_images(tmp_path / "long.zip")
    assert str(tmp_path / "long.zip") in str(e.value) and len(str(e.value)) < 400 + len(str(tmp_path))

    def wordy(*args, **kwargs):
        raise OSError("libfoo says: " + "blah " * 2000)
    monkeypatch.setattr(Image, "open", wordy)
    with pytest.raises(ValueError, match=r"^w.png: cannot decode image \(OSError: libfoo says: blah") as e:
        decode_rgb(b"whatever", "w.png")
    assert len(str(e.value)) < 300


# ---- fuzzers: mutated files -> an image, or ValueError/OSError naming the file; bounded --------

_MB = 2**20


def _max_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _bounded(call, label: str):
    """``call()``'s result, or None for a ValueError/OSError naming ``label``; within 5 s, 64 MB of
    Python/numpy allocations and 300 MB more process memory (Pillow's own) than ever before."""
    rss, t0 = _max_rss(), time.perf_counter()
    tracemalloc.start()
    try:
        return call()
    except (ValueError, OSError) as e:
        assert label in str(e) and len(str(e)) < 500 + len(label), str(e)
        return None
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert time.perf_counter() - t0 < 5 and peak < 64 * _MB and _max_rss() - rss < 300 * _MB


def _seeds() -> dict[str, bytes]:
    rgb = Image.fromarray(_smooth(6))
    return {"png": _encode(rgb, "PNG"), "png16": _encode(Image.fromarray(GRADIENT.astype("<u2")), "PNG"),
            "palette": _encode(rgb.quantize(16), "PNG"), "jpeg": _encode(rgb, "JPEG"),
            "jpeg_prog_rst": _encode(rgb, "JPEG", progressive=True, restart_marker_blocks=5),
            "jpeg_exif": _with_orientation(_smooth(6), 6, "JPEG"), "tiff": _encode(rgb, "TIFF"),
            "tiff_lzw": _encode(rgb, "TIFF", compression="tiff_lzw"),
            "tiff_float": _encode(Image.fromarray((GRADIENT / 65535).astype(np.float32)), "TIFF"),
            "bmp": _encode(rgb, "BMP")}


SEEDS = _seeds()
_positions = st.integers(0, 400) | st.integers(0, 2**31)  # most parsing happens in the headers
_edits = st.lists(st.tuples(st.sampled_from(["flip", "set", "insert", "delete"]), _positions,
                            st.integers(0, 255), st.integers(1, 64)), min_size=1, max_size=6)


def _mutate(data: bytes, edits: list[tuple[str, int, int, int]], cut: int | None) -> bytes:
    b = bytearray(data)
    for op, pos, val, n in edits:
        pos %= len(b) + 1
        if op == "insert":
            b[pos:pos] = bytes([val]) * n
        elif op == "delete":
            del b[pos:pos + n]
        elif pos < len(b):
            b[pos] = b[pos] ^ (1 << val % 8) if op == "flip" else val
    return bytes(b if cut is None else b[:cut % (len(b) + 1)])


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on the metadata it skips
@settings(max_examples=5 * settings.default.max_examples)
@given(seed=st.sampled_from(sorted(SEEDS)), edits=_edits, cut=st.none() | st.integers(0, 2**31), resize=st.booleans())
def test_decode_rgb_on_mutated_files(seed, edits, cut, resize):
    data = _mutate(SEEDS[seed], edits, cut)
    with mock.patch.object(image_files, "MAX_DECODE_PIXELS", 2**20):  # bounds the memory any header may claim
        out = _bounded(lambda: decode_rgb(data, f"fuzzed-{seed}", resize=resize), f"fuzzed-{seed}")
    assert out is None or (out.shape == (112, 112, 3) and out.dtype == np.uint8)


def _zip_seeds() -> dict[str, bytes]:
    out = {}
    for method in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", method) as zf:
            for name, seed in (("a.png", "png"), ("b.jpg", "jpeg"), ("c.tif", "tiff_lzw")):
                zf.writestr(name, SEEDS[seed])
            zf.writestr("__MACOSX/._a.png", APPLE_DOUBLE)
        out[f"zip{method}"] = buf.getvalue()
    return out


ZIP_SEEDS = _zip_seeds()


@pytest.mark.filterwarnings("ignore::UserWarning")
@settings(max_examples=2 * settings.default.max_examples,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.sampled_from(sorted(ZIP_SEEDS)), edits=_edits, cut=st.none() | st.integers(0, 2**31))
def test_read_images_on_mutated_zips(tmp_path, seed, edits, cut):
    path = tmp_path / "fuzzed.zip"
    path.write_bytes(_mutate(ZIP_SEEDS[seed], edits, cut))
    with mock.patch.object(image_files, "MAX_DECODE_PIXELS", 2**20):
        out = _bounded(lambda: read_images(path), str(path))
    assert out is None or (out.ndim == 4 and out.shape[1:] == (112, 112, 3) and out.dtype == np.uint8)
