"""Procedural natural-like images: a deterministic, download-free stimulus stream.

Every image is a 1/f colour texture background (contrast and spectral slope vary) on which a
random mix of shapes is painted: oriented edges and bars, curved contours (rings, arcs and disc
boundaries), dots and soft Gaussian blobs; a last 1/f texture adds colour variation and grain
to everything. The image kinds are
``texture`` (background only), ``edges``, ``curves``, ``dots``, ``blobs`` and ``composite``
(a few of every shape). Images are 112x112 RGB uint8 with a mean near the dataset mean.

Image ``i`` of a stream depends only on ``(seed, start + i)``: its random numbers come from a
counter-based hash (SplitMix64) of the seed and the image index, and its textures are windows
of a bank of periodic 1/f textures that depends only on the seed. So streams can be chunked and
resumed: ``procedural(10, s)[5:]`` equals ``procedural(5, s, start=5)``. Rendering is
vectorised over a batch with numpy (float32).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

from ..constants import DATASET_MEAN, IMAGE_SIZE

__all__ = ["procedural", "procedural_stream", "KINDS"]

#: Image kinds, and (below) the probability of each in the default mix.
KINDS = ("texture", "edges", "curves", "dots", "blobs", "composite")
_KIND_P = np.array([0.2, 0.16, 0.16, 0.16, 0.16, 0.16])
#: Shape types, painted in this order; each has at most this many shapes per image ...
_MAX_SHAPES = {"blobs": 4, "edges": 3, "curves": 3, "dots": 8}
#: ... and (min, max) shapes per image for each kind (``texture`` has none).
_COUNTS = {
    "edges": {"edges": (1, 3)},
    "curves": {"curves": (1, 3)},
    "dots": {"dots": (2, 8)},
    "blobs": {"blobs": (1, 4)},
    "composite": {"blobs": (0, 2), "edges": (1, 2), "curves": (1, 2), "dots": (0, 4)},
}
#: (2, kinds) min and max number of shapes of each type per image, by kind.
_COUNT_RANGE = {shape: np.array([_COUNTS.get(kind, {}).get(shape, (0, 0)) for kind in KINDS]).T
                for shape in _MAX_SHAPES}
#: Columns of an image's uniform random numbers: kind, background, shape counts, overlay; then
#: _SHAPE_PARAMS per shape slot (geometry in the first 8, colour in the last 3).
_U_KIND, _U_BACKGROUND, _U_COUNTS, _U_OVERLAY = 0, slice(1, 10), slice(10, 14), slice(14, 21)
_IMAGE_PARAMS = 21
_SHAPE_PARAMS = 11

_S = IMAGE_SIZE
_BANK_SIZE = 16  # textures in the bank
TEXTURE_EXPONENTS = (0.75, 1.35)  # range of the textures' amplitude-spectrum exponents a (f**-a)
_PERIOD = 256  # side of each periodic bank texture, px
_DOT_BOX = 16  # dots are drawn in a box of this side around their centre
_CHUNK = 16  # images rendered at a time (fastest here: fits the CPU caches)
_FAR = 1000.0  # px: half-width of a bar that never ends inside the image
_MEAN = np.array(DATASET_MEAN, np.float32)
#: Unit colour directions of the two opponent axes (red-green, blue-yellow).
_RG = np.array([1, -1, 0], np.float32) / np.sqrt(2)
_BY = np.array([1, 1, -2], np.float32) / np.sqrt(6)
# Pixel-centre coordinates relative to the image centre, px.
_COORD = (np.arange(_S, dtype=np.float32) + 0.5 - _S / 2)

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_STREAM_IMAGES, _STREAM_BANK = 1, 2


# --- counter-based random numbers --------------------------------------------------------------


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _uniforms(seed: int, stream: int, counters: np.ndarray, n: int) -> np.ndarray:
    """(len(counters), n) float64 uniforms in [0, 1), a pure function of (seed, stream, counter, column)."""
    key = np.uint64((seed * _GOLDEN + stream * 0xD1B54A32D192ED03) & _MASK64)
    rows = _mix64(np.asarray(counters, np.uint64) * np.uint64(_GOLDEN) ^ key)
    cols = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN)
    z = _mix64(_mix64(rows[:, None] + cols[None, :]))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


# --- the 1/f texture bank ------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _texture_bank(seed: int) -> np.ndarray:
    """(16, 256+111, 256+111) float32 periodic random-phase textures of unit variance.

    Texture ``k`` has amplitude spectrum ``f**-a_k`` (a_k from 0.75 to 1.35: power-spectrum slopes
    -1.5 to -2.7 around natural images' -2); odd ``k`` are also anisotropic (power concentrated
    around one random orientation). Each is wrap-padded so any 112x112 window is a plain slice.
    """
    u = _uniforms(seed, _STREAM_BANK, np.arange(_BANK_SIZE), _PERIOD * (_PERIOD // 2 + 1) + 2)
    fy = np.fft.fftfreq(_PERIOD)[:, None]
    fx = np.fft.rfftfreq(_PERIOD)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no DC
    theta = np.arctan2(fy, fx)
    exponents = np.linspace(*TEXTURE_EXPONENTS, _BANK_SIZE)
    bank = np.empty((_BANK_SIZE, _PERIOD + _S - 1, _PERIOD + _S - 1), np.float32)
    for k in range(_BANK_SIZE):
        amp = f ** -exponents[k]
        if k % 2:
            kappa, preferred = 0.5 + 2.0 * u[k, -2], np.pi * u[k, -1]
            amp = amp * np.exp(kappa * (np.cos(2 * (theta - preferred)) - 1))
        phase = 2 * np.pi * u[k, :-2].reshape(f.shape)
        tex = np.fft.irfft2(amp * np.exp(1j * phase), s=(_PERIOD, _PERIOD))
        bank[k] = np.pad(tex / tex.std(), ((0, _S - 1), (0, _S - 1)), mode="wrap")
    return bank


def _windows(bank: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N, 112, 112) float32 texture windows; u (N, 4) picks texture, offset and a vertical flip."""
    n = len(u)
    which = (u[:, 0] * _BANK_SIZE).astype(int)
    oy, ox = (u[:, 1] * _PERIOD).astype(int), (u[:, 2] * _PERIOD).astype(int)
    flip = u[:, 3] < 0.5
    out = np.empty((n, _S, _S), np.float32)
    for i in range(n):
        w = bank[which[i], oy[i]:oy[i] + _S, ox[i]:ox[i] + _S]
        out[i] = w[::-1] if flip[i] else w  # (flipping rows keeps the copy contiguous: fast)
    return out


# --- shapes ------------------------------------------------------------------------------------
# Each shape function takes the shapes' uniforms u (K, _SHAPE_PARAMS) float64 and returns a
# (K, 112, 112) float32 map; per-shape scalars become (K, 1, 1) float32 columns.


def _col(x: np.ndarray) -> np.ndarray:
    """(K,) -> (K, 1, 1) float32, to broadcast per-shape scalars over an image."""
    return x.astype(np.float32)[:, None, None]


def _colour(u: np.ndarray, spread: float, chroma: float) -> np.ndarray:
    """(K, 3) float32 RGB colours around the dataset mean; u (K, 3) in [0, 1).

    Luminance offsets are uniform in +-spread (per channel), chroma up to ``chroma`` along a
    random opponent direction.
    """
    lum = (2 * u[:, 0] - 1) * spread
    angle = 2 * np.pi * u[:, 1]
    sat = chroma * u[:, 2]
    opp = np.cos(angle)[:, None] * _RG + np.sin(angle)[:, None] * _BY
    return (_MEAN + lum[:, None] + sat[:, None] * opp).astype(np.float32)


def _band_alpha(dist: np.ndarray, half_width: np.ndarray, softness: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of the band |dist| < half_width (px), antialiased over ``softness`` px.

    ``dist`` (K, H, W) is overwritten with the result.
    """
    a = np.abs(dist, out=dist)
    a *= _col(-1.0 / softness)
    a += _col(half_width / softness + 0.5)
    return np.clip(a, 0.0, 1.0, out=a)


def _edge_alpha(u: np.ndarray) -> np.ndarray:
    """Straight edges: half-planes (u[:,0] < 0.5) or bars 2-26 px wide, any orientation.

    A half-plane is drawn as a bar too wide to end inside the image.
    """
    phi = 2 * np.pi * u[:, 1]
    offset = (u[:, 2] - 0.5) * 70  # distance of the edge (bar centre) from the image centre, px
    half_plane = u[:, 0] < 0.5
    half_width = np.where(half_plane, _FAR, 1.0 + 12.0 * u[:, 3] ** 2)
    centre = offset - np.where(half_plane, _FAR, 0.0)
    dist = _COORD[None, None, :] * _col(np.cos(phi)) - _col(centre)
    dist = dist + _COORD[None, :, None] * _col(np.sin(phi))
    return _band_alpha(dist, half_width, 0.6 + 2.5 * u[:, 4] ** 2)


def _curve_alpha(u: np.ndarray) -> np.ndarray:
    """Curved contours: arcs of rings 1.4-6 px thick (u[:,0] < 0.7) or of disc boundaries.

    Radii 6-66 px; the arc spans a half-angle of 30-180 degrees around a random direction. A disc
    of radius R is drawn as a ring from 0 to R.
    """
    cx, cy = (u[:, 1] - 0.5) * 110, (u[:, 2] - 0.5) * 110
    radius = 6 + 60 * u[:, 3] ** 1.5
    ring = u[:, 0] < 0.7
    half_width = np.where(ring, 0.7 + 2.5 * u[:, 4], radius / 2)
    mid = np.where(ring, radius, radius / 2)
    dx = _COORD[None, None, :] - _col(cx)
    dy = _COORD[None, :, None] - _col(cy)
    r = dx * dx + dy * dy
    r = np.sqrt(r, out=r)
    alpha = _band_alpha(r - _col(mid), half_width, 0.6 + 1.5 * u[:, 5] ** 2)
    psi = 2 * np.pi * u[:, 6]
    along = dx * _col(np.cos(psi)) + 1.0 + dy * _col(np.sin(psi))  # (K, H, W)
    r *= _col(np.cos(np.pi / 6 + 5 * np.pi / 6 * u[:, 7]))
    along -= r  # > 0 within the arc's angle; >= 1 everywhere for a full circle
    return np.minimum(alpha, along, out=alpha).clip(0.0, 1.0, out=alpha)


def _blob_gain(u: np.ndarray) -> np.ndarray:
    """Axis-aligned Gaussian blobs with peak 1, sigmas 3-25 px along x and y."""
    cx, cy = (u[:, 1] - 0.5) * 100, (u[:, 2] - 0.5) * 100
    gx = (_COORD[None, None, :] - _col(cx)) * _col(1 / (3 + 22 * u[:, 3]))
    gy = (_COORD[None, :, None] - _col(cy)) * _col(1 / (3 + 22 * u[:, 4]))
    return np.exp(-0.5 * gx * gx) * np.exp(-0.5 * gy * gy)


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Occlude in place: img = img + alpha * (colour - img); img (3,H,W), alpha (H,W), colour (3,)."""
    t = colour[:, None, None] - img
    t *= alpha
    img += t


def _draw_shapes(img: np.ndarray, active: np.ndarray, kind: str, u: np.ndarray, colour: np.ndarray) -> None:
    """Draw one shape of ``kind`` on each of the images ``active`` of img (N,3,112,112), in place.

    u (K, _SHAPE_PARAMS) are the shapes' uniforms and colour (K, 3) their RGB colours; blobs
    add a light or dark patch, the other shapes occlude.
    """
    if kind == "dots":
        _draw_dots(img, active, u, colour)
    elif kind == "blobs":
        gain = _blob_gain(u)
        for j, i in enumerate(active):
            img[i] += gain[j] * (colour[j] - _MEAN)[:, None, None]
    else:
        alpha = _edge_alpha(u) if kind == "edges" else _curve_alpha(u)
        for j, i in enumerate(active):
            _paint(img[i], alpha[j], colour[j])


def _draw_dots(img: np.ndarray, active: np.ndarray, u: np.ndarray, colour: np.ndarray) -> None:
    """Paint discs of radius 1-6 px on the images ``active`` of img, each inside a 16x16 box."""
    y0 = (u[:, 1] * (_S - _DOT_BOX + 1)).astype(int)
    x0 = (u[:, 2] * (_S - _DOT_BOX + 1)).astype(int)
    centre = (_DOT_BOX - 1) / 2 + (u[:, 3:5] - 0.5) * 2  # within 1 px of the box centre
    d = np.arange(_DOT_BOX, dtype=np.float32)
    dy = d[None, :, None] - _col(centre[:, 0])
    dx = d[None, None, :] - _col(centre[:, 1])
    radius = 1.0 + 5.0 * u[:, 5] ** 1.5
    alpha = _band_alpha(np.sqrt(dx * dx + dy * dy) - _col(radius / 2), radius / 2, 0.6 + 0.8 * u[:, 6])
    for j, i in enumerate(active):
        _paint(img[i, :, y0[j]:y0[j] + _DOT_BOX, x0[j]:x0[j] + _DOT_BOX], alpha[j], colour[j])


# --- images ------------------------------------------------------------------------------------


def _choose_kinds(u: np.ndarray, kinds: Sequence[str] | None) -> np.ndarray:
    """(N,) kind indices into KINDS drawn from u (N,) with the default mix (or among ``kinds``)."""
    p = _KIND_P.copy()
    if kinds is not None:
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {kinds!r}")
        p[[k not in kinds for k in KINDS]] = 0
    cdf = np.cumsum(p / p.sum())
    return np.minimum(np.searchsorted(cdf, u, side="right"), len(KINDS) - 1)


def _background(bank: np.ndarray, kind: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,3,112,112) float32 grey-level 1/f textures around a mean colour, and their (N,) contrasts.

    u (N, 9). RMS contrast 8-70 per channel (scaled by 0.1-1 behind shapes); mean colour within
    +-40 grey levels (and 25 of chroma) of the dataset mean.
    """
    lum = _windows(bank, u[:, 0:4])
    contrast = (8 + 62 * u[:, 4]) * np.where(kind == 0, 1.0, 0.1 + 0.9 * u[:, 5])
    lum *= _col(contrast)
    mean = _colour(u[:, 6:9], 40.0, 25.0)
    return lum[:, None] + mean[:, :, None, None], contrast


def _add_overlay(img: np.ndarray, bank: np.ndarray, lum_contrast: np.ndarray, u: np.ndarray) -> None:
    """Add one 1/f texture window as colour variation and grain over everything, in place.

    img (N,3,112,112); lum_contrast (N,) the background's RMS contrast; u (N, 7). The window
    varies the colour along a random opponent direction (RMS 10-35% of ``lum_contrast``) and the
    luminance by a faint grain (RMS 1.5-7.5 per channel), texturing the shapes' surfaces too.
    """
    tex = _windows(bank, u[:, 0:4])
    angle = 2 * np.pi * u[:, 4]
    opp = np.cos(angle)[:, None] * _RG + np.sin(angle)[:, None] * _BY  # (N, 3)
    weights = (lum_contrast * (0.1 + 0.25 * u[:, 5]))[:, None] * opp + (1.5 + 6 * u[:, 6])[:, None]
    img += tex[:, None] * weights.astype(np.float32)[:, :, None, None]


def procedural(n: int, seed: int, start: int = 0, kinds: Sequence[str] | None = None) -> np.ndarray:
    """Natural-like RGB images (N, 112, 112, 3) uint8; image ``i`` depends only on (seed, start + i).

    Args:
        n: number of images.
        seed: stream seed, an integer >= 0.
        start: index of the first image in the stream (>= 0), to resume or chunk a stream.
        kinds: restrict to these of :data:`KINDS` (e.g. ``("texture",)``); this gives a different
            stream from the default mix.
    """
    if n < 0 or seed < 0 or start < 0:
        raise ValueError(f"n, seed and start must be >= 0, got n={n}, seed={seed}, start={start}")
    n_shapes = sum(_MAX_SHAPES.values())
    u = _uniforms(seed, _STREAM_IMAGES, np.arange(start, start + n), _IMAGE_PARAMS + n_shapes * _SHAPE_PARAMS)
    kind = _choose_kinds(u[:, _U_KIND], kinds)
    bank = _texture_bank(seed)
    out = np.empty((n, _S, _S, 3), np.uint8)
    for lo in range(0, n, _CHUNK):  # chunks small enough for the CPU cache
        hi = min(lo + _CHUNK, n)
        img = _render(bank, kind[lo:hi], u[lo:hi])
        np.clip(img, 0, 255, out=img)
        pixels = np.rint(img, out=img).astype(np.uint8)
        for c in range(3):  # channel by channel: much faster than a transposed copy
            out[lo:hi, ..., c] = pixels[:, c]
    return out


def _render(bank: np.ndarray, kind: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N,3,112,112) float32 unclipped images from their kinds (N,) and uniforms (N, columns)."""
    n = len(u)
    img, contrast = _background(bank, kind, u[:, _U_BACKGROUND])
    shape_u = u[:, _IMAGE_PARAMS:].reshape(n, -1, _SHAPE_PARAMS)
    colours = _colour(shape_u[..., -3:].reshape(-1, 3), 110.0, 50.0).reshape(n, -1, 3)
    first = 0
    for (shape, max_count), count_u in zip(_MAX_SHAPES.items(), u[:, _U_COUNTS].T):
        count = _shape_counts(kind, shape, count_u)
        for slot in range(max_count):
            active = np.flatnonzero(count > slot)
            if len(active):
                _draw_shapes(img, active, shape, shape_u[active, first + slot], colours[active, first + slot])
        first += max_count
    _add_overlay(img, bank, contrast, u[:, _U_OVERLAY])
    return img


def _shape_counts(kind: np.ndarray, shape: str, u: np.ndarray) -> np.ndarray:
    """(N,) number of shapes of type ``shape`` per image, from its kind and a uniform u (N,)."""
    lo, hi = _COUNT_RANGE[shape][:, kind]
    return lo + (u * (hi - lo + 1)).astype(int)


def procedural_stream(batch: int, seed: int, start: int = 0,
                      kinds: Sequence[str] | None = None) -> Iterator[np.ndarray]:
    """Endless successive batches of :func:`procedural` images, each (batch, 112, 112, 3) uint8."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    while True:
        yield procedural(batch, seed, start, kinds)
        start += batch
