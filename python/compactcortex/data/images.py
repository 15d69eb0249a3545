"""Procedural natural-like images: a deterministic, download-free stimulus stream.

Every image is a 1/f colour texture background (contrast and spectral slope vary) on which a
random mix of shapes is painted: oriented edges and bars, curved contours (rings, arcs and disc
boundaries), dots and soft Gaussian blobs, then a faint texture grain. The image kinds are
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

#: Image kinds, and the probability of each in the default mix.
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
#: Columns of an image's uniform random numbers: kind, background, shape counts, grain; then
#: _SHAPE_PARAMS per shape slot (position, size, colour, ...).
_U_KIND, _U_BACKGROUND, _U_COUNTS, _U_GRAIN = 0, slice(1, 16), slice(16, 20), slice(20, 25)
_IMAGE_PARAMS = 25
_SHAPE_PARAMS = 10

_S = IMAGE_SIZE
_BANK_SIZE = 16  # textures in the bank
_PERIOD = 256  # side of each periodic bank texture, px
_DOT_BOX = 16  # dots are drawn in a box of this side around their centre
_CHUNK = 8  # images rendered at a time
_MEAN = np.array(DATASET_MEAN, np.float32)
#: Unit colour directions: luminance (grey) and the two opponent axes (red-green, blue-yellow).
_GREY = np.ones(3, np.float32) / np.sqrt(3)
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

    Texture ``k`` has amplitude spectrum ``f**-a_k`` (a_k from 0.8 to 1.5: power-spectrum slopes
    -1.6 to -3.0 around natural images' -2); odd ``k`` are also anisotropic (power concentrated
    around one random orientation). Each is wrap-padded so any 112x112 window is a plain slice.
    """
    u = _uniforms(seed, _STREAM_BANK, np.arange(_BANK_SIZE), _PERIOD * (_PERIOD // 2 + 1) + 2)
    fy = np.fft.fftfreq(_PERIOD)[:, None]
    fx = np.fft.rfftfreq(_PERIOD)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = np.inf  # no DC
    theta = np.arctan2(fy, fx)
    exponents = np.linspace(0.8, 1.5, _BANK_SIZE)
    bank = np.empty((_BANK_SIZE, _PERIOD + _S - 1, _PERIOD + _S - 1), np.float32)
    for k in range(_BANK_SIZE):
        amp = f ** -exponents[k]
        if k % 2:
            kappa, preferred = 1.0 + 3.0 * u[k, -2], np.pi * u[k, -1]
            amp = amp * np.exp(kappa * (np.cos(2 * (theta - preferred)) - 1))
        phase = 2 * np.pi * u[k, :-2].reshape(f.shape)
        tex = np.fft.irfft2(amp * np.exp(1j * phase), s=(_PERIOD, _PERIOD))
        bank[k] = np.pad(tex / tex.std(), ((0, _S - 1), (0, _S - 1)), mode="wrap")
    return bank


def _windows(bank: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N, 112, 112) float32 texture windows; u (N, 4) picks texture, offset and flips."""
    n = len(u)
    which = (u[:, 0] * _BANK_SIZE).astype(int)
    oy, ox = (u[:, 1] * _PERIOD).astype(int), (u[:, 2] * _PERIOD).astype(int)
    flips = (u[:, 3] * 4).astype(int)
    out = np.empty((n, _S, _S), np.float32)
    for i in range(n):
        w = bank[which[i], oy[i]:oy[i] + _S, ox[i]:ox[i] + _S]
        out[i] = w[::-1 if flips[i] & 1 else 1, ::-1 if flips[i] & 2 else 1]
    return out


# --- shapes ------------------------------------------------------------------------------------


def _colour(u: np.ndarray, spread: float, chroma: float) -> np.ndarray:
    """(K, 3) RGB colours around the dataset mean; u (K, 3) in [0, 1)."""
    lum = (2 * u[:, 0] - 1) * spread
    angle = 2 * np.pi * u[:, 1]
    sat = chroma * u[:, 2]
    opp = np.cos(angle)[:, None] * _RG + np.sin(angle)[:, None] * _BY
    return (_MEAN + np.sqrt(3) * lum[:, None] * _GREY + sat[:, None] * opp).astype(np.float32)


def _ramp(sdf: np.ndarray, softness: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] from a signed distance (px, negative inside), antialiased over ``softness`` px."""
    a = sdf * (-1.0 / softness)[:, None, None].astype(np.float32)
    a += 0.5
    return np.clip(a, 0.0, 1.0, out=a)


def _paint(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """Occlude: img = img + alpha * (colour - img), in place; img (K,3,H,W), alpha (K,H,W), colour (K,3)."""
    t = colour[:, :, None, None] - img
    t *= alpha[:, None]
    img += t


def _edge_alpha(u: np.ndarray) -> np.ndarray:
    """(K,112,112) coverage of half-planes (u[:,0] < 0.5) or bars: a straight edge or two."""
    phi = np.pi * 2 * u[:, 1]
    offset = (u[:, 2] - 0.5) * 70
    s = (_COORD[None, None, :] * np.cos(phi)[:, None, None].astype(np.float32)
         + _COORD[None, :, None] * np.sin(phi)[:, None, None].astype(np.float32))
    s -= offset[:, None, None].astype(np.float32)
    bar = u[:, 0] >= 0.5
    half_width = (1.0 + 12.0 * u[:, 3] ** 2).astype(np.float32)
    s[bar] = np.abs(s[bar]) - half_width[bar][:, None, None]
    return _ramp(s, 0.6 + 2.5 * u[:, 4] ** 2)


def _curve_alpha(u: np.ndarray) -> np.ndarray:
    """(K,112,112) coverage of curved contours: ring arcs (u[:,0] < 0.7) or disc boundaries."""
    cx, cy = (u[:, 1] - 0.5) * 110, (u[:, 2] - 0.5) * 110
    radius = (6 + 60 * u[:, 3] ** 1.5).astype(np.float32)
    dx = _COORD[None, None, :] - cx[:, None, None].astype(np.float32)
    dy = _COORD[None, :, None] - cy[:, None, None].astype(np.float32)
    r = np.sqrt(dx * dx + dy * dy)
    s = r - radius[:, None, None]
    ring = u[:, 0] < 0.7
    half_width = (0.7 + 2.5 * u[:, 4]).astype(np.float32)
    s[ring] = np.abs(s[ring]) - half_width[ring][:, None, None]
    alpha = _ramp(s, 0.6 + 1.5 * u[:, 5] ** 2)
    # Arcs: keep the directions within a half-angle of pi/6 .. pi around a random direction.
    psi = 2 * np.pi * u[:, 6]
    cos_half = np.cos(np.pi / 6 + 5 * np.pi / 6 * u[:, 7])
    along = dx * np.cos(psi)[:, None, None].astype(np.float32) + dy * np.sin(psi)[:, None, None].astype(np.float32)
    alpha *= np.clip(along - r * cos_half[:, None, None].astype(np.float32) + 0.5, 0.0, 1.0)
    return alpha


def _blob_gain(u: np.ndarray) -> np.ndarray:
    """(K,112,112) elongated Gaussian blob profiles with peak 1 (sigmas 3-25 px)."""
    cx, cy = (u[:, 1] - 0.5) * 100, (u[:, 2] - 0.5) * 100
    s1, s2 = 3 + 22 * u[:, 3], 3 + 22 * u[:, 4]
    phi = np.pi * u[:, 5]
    dx = _COORD[None, None, :] - cx[:, None, None].astype(np.float32)
    dy = _COORD[None, :, None] - cy[:, None, None].astype(np.float32)
    c, s = np.cos(phi)[:, None, None].astype(np.float32), np.sin(phi)[:, None, None].astype(np.float32)
    a = (dx * c + dy * s) * (1 / s1)[:, None, None].astype(np.float32)
    b = (dy * c - dx * s) * (1 / s2)[:, None, None].astype(np.float32)
    q = a * a
    q += b * b
    q *= -0.5
    return np.exp(q, out=q)


def _draw_shapes(img: np.ndarray, active: np.ndarray, kind: str, u: np.ndarray, colour: np.ndarray) -> None:
    """Draw one shape of ``kind`` on the images ``active`` of img (N,3,112,112), in place.

    u (K, _SHAPE_PARAMS) are the shapes' uniforms and colour (K, 3) their RGB colours.
    """
    if kind == "dots":
        _draw_dots(img, active, u, colour)
        return
    part = img if len(active) == len(img) else img[active]
    if kind == "blobs":  # additive light or dark patches
        part += _blob_gain(u)[:, None] * (colour - _MEAN)[:, :, None, None]
    else:
        _paint(part, _edge_alpha(u) if kind == "edges" else _curve_alpha(u), colour)
    if part is not img:
        img[active] = part


def _draw_dots(img: np.ndarray, active: np.ndarray, u: np.ndarray, colour: np.ndarray) -> None:
    """Paint discs of radius 1-6 px on the images ``active`` of img, each inside a 16x16 box."""
    y0 = (u[:, 1] * (_S - _DOT_BOX + 1)).astype(int)
    x0 = (u[:, 2] * (_S - _DOT_BOX + 1)).astype(int)
    centre = (_DOT_BOX - 1) / 2 + (u[:, 3:5] - 0.5) * 2  # within 1 px of the box centre
    d = np.arange(_DOT_BOX, dtype=np.float32)
    dy = d[None, :, None] - centre[:, 0, None, None].astype(np.float32)
    dx = d[None, None, :] - centre[:, 1, None, None].astype(np.float32)
    radius = (1.0 + 5.0 * u[:, 5] ** 1.5).astype(np.float32)
    alpha = _ramp(np.sqrt(dx * dx + dy * dy) - radius[:, None, None], 0.6 + 0.8 * u[:, 6])
    for j, i in enumerate(active):
        box = img[i:i + 1, :, y0[j]:y0[j] + _DOT_BOX, x0[j]:x0[j] + _DOT_BOX]
        _paint(box, alpha[j:j + 1], colour[j:j + 1])


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


def _background(bank: np.ndarray, kind: np.ndarray, u: np.ndarray) -> np.ndarray:
    """(N,3,112,112) float32 colour 1/f textures: a luminance and an opponent-colour window.

    RMS luminance contrast 8-70 (scaled by 0.1-1 behind shapes), colour contrast 10-50% of it,
    mean colour around the dataset mean.
    """
    lum = _windows(bank, u[:, 0:4])
    chroma = _windows(bank, u[:, 4:8])
    contrast = 8 + 62 * u[:, 8]
    contrast *= np.where(kind == 0, 1.0, 0.1 + 0.9 * u[:, 9])
    angle = 2 * np.pi * u[:, 10]
    opp = np.cos(angle)[:, None] * _RG + np.sin(angle)[:, None] * _BY  # (N, 3)
    chroma_contrast = contrast * (0.1 + 0.4 * u[:, 11])
    mean = _colour(u[:, 12:15], 40.0, 25.0)
    img = (lum[:, None] * (contrast[:, None] * _GREY).astype(np.float32)[:, :, None, None]
           + chroma[:, None] * (chroma_contrast[:, None] * opp).astype(np.float32)[:, :, None, None])
    img += mean[:, :, None, None]
    return img


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
    img = _background(bank, kind, u[:, _U_BACKGROUND])
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
    _add_grain(img, bank, u[:, _U_GRAIN])
    return img


def _add_grain(img: np.ndarray, bank: np.ndarray, u: np.ndarray) -> None:
    """Add a faint luminance 1/f texture (RMS 1.5-7.5 per channel) to img (N,3,112,112); u (N, 5)."""
    grain = _windows(bank, u[:, :4])
    grain *= (1.5 + 6 * u[:, 4])[:, None, None].astype(np.float32)
    img += grain[:, None]


def _shape_counts(kind: np.ndarray, shape: str, u: np.ndarray) -> np.ndarray:
    """(N,) number of shapes of type ``shape`` per image, from its kind and a uniform u (N,)."""
    lo = np.zeros(len(KINDS), int)
    hi = np.full(len(KINDS), -1)
    for k, name in enumerate(KINDS):
        lo[k], hi[k] = _COUNTS.get(name, {}).get(shape, (0, -1))
    return np.where(hi[kind] >= 0, lo[kind] + (u * (hi[kind] - lo[kind] + 1)).astype(int), 0)


def procedural_stream(batch: int, seed: int, start: int = 0,
                      kinds: Sequence[str] | None = None) -> Iterator[np.ndarray]:
    """Endless successive batches of :func:`procedural` images, each (batch, 112, 112, 3) uint8."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    while True:
        yield procedural(batch, seed, start, kinds)
        start += batch
