"""The digital V4 population: ground-truth model neurons, the package's default data set.

Each model neuron is a fixed, deterministic function of the image (image px throughout):

1. Front end: pixels minus the dataset mean, /64, averaged over 2x2 blocks, as luminance
   L = mean(R,G,B) and opponent colours RG = R-G, BY = (R+G)/2-B.
2. 58 feature maps on a grid every 4 px (zero-padded FFT convolutions, kernels cut at 3 sigma):
   orientation energy (quadrature Gabor amplitude; 8 orientations, wavelengths 8 and 16);
   curvature (AND = min of three energies along a bent contour: orientations theta-45, theta,
   theta+45 deg at -d, 0, +d along the tangent, d = 8 or 12; 2 bend signs); dots/blobs (ON and OFF
   half-waves of differences of Gaussians, centre sigma 2, 4, 7); colour (blurred RG and BY, both
   half-waves). Each map is scaled to mean 1 on 256 calibration images.
3. Receptive field: the maps are pooled by a Gaussian (sigma 5-10, cut at 3 sigma, centre in the
   central 40x40 px) and weighted by the neuron's tuning: a Dirichlet(0.5) mix of the four classes
   (often one dominates), tuned within each (orientation with orthogonal suppression, curvature
   and bend, scale, polarity, hue), divided by (c50 + the pooled activity of all classes).
4. Output: rate = gain * softplus(slope * z + offset), z the drive z-scored on the calibration
   images; mean 1.5-6 spikes per 100 ms bin (a quarter of the neurons sparse: 0.5-1.5).

A rate depends only on pixels within ``rf_reach = 3 rf_sigma + FEATURE_REACH_PX`` of the RF centre.
Trials are independent Poisson counts with the true rate as mean; ``noise_ceiling`` is the
expected squared correlation of the repeat means with the true rates (see :func:`noise_ceiling`).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from ..files import checked_name, write_json
from ..constants import DATASET_MEAN, IMAGE_SIZE
from .procedural import procedural
from .session import Session, load_session, save_session

__all__ = ["DigitalPopulation", "ModelNeurons", "digital_population", "save_digital_population",
           "load_digital_population", "noise_ceiling", "CHANNELS", "CHANNEL_CLASS", "FEATURE_CLASSES",
           "FEATURE_REACH_PX"]

FORMAT = "compactcortex.digital_population"
FORMAT_VERSION = 1
#: Identifies the feature code below; a saved population only loads with the same model.
MODEL = "digital-v4/1"

FEATURE_CLASSES = ("orientation", "curvature", "blob", "colour")

# Front end and filters, in half-resolution (56x56) px unless noted.
_HALF = IMAGE_SIZE // 2
_FFT = 80  # zero-padded FFT side: >= _HALF + the largest kernel radius, so convolutions are linear
_GRID = _HALF // 2  # feature maps are sampled every 2 half-res px (4 image px): 28x28
_WAVELENGTHS = (4.0, 8.0)  # Gabor wavelengths (8 and 16 image px); envelope sigma = 0.45 wavelength
_N_ORI = 8
_BEND_STEPS = 2  # curvature: orientation change (in steps of 180/8 deg) between neighbouring segments
_CURVE_SHIFT = (2, 3)  # curvature: distance d of the neighbouring segments, grid px, per scale
_DOG_SIGMAS = (1.0, 2.0, 3.5)  # DoG centre sigmas; surround = 1.6 x centre
_SURROUND = 1.6
_COLOUR_SIGMA = 2.5
_TRUNCATE = 3.0  # kernels and RF envelopes are cut at this many sigmas


def _radius(sigma: float) -> int:
    """Half-res px: the radius at which a kernel of this sigma is cut."""
    return int(np.ceil(_TRUNCATE * sigma))


def _curve_steps(scale: int) -> np.ndarray:
    """(8, 2) integer grid steps (dx, dy) = rint(d * tangent) from a curvature segment to the next."""
    theta = np.pi * np.arange(_N_ORI) / _N_ORI
    return np.rint(_CURVE_SHIFT[scale] * np.stack([np.cos(theta), np.sin(theta)], axis=1)).astype(int)


# Half-res px from a feature-grid point to the farthest input it reads.
_FEATURE_RADIUS = max(*(_radius(0.45 * w) + 2 * np.hypot(*_curve_steps(s).T).max() for s, w in enumerate(_WAVELENGTHS)),
                      _radius(_SURROUND * _DOG_SIGMAS[-1]), _radius(_COLOUR_SIGMA))
#: Image px: a feature-map value depends only on pixels (centres) within this distance of its
#: grid point (x2 for half resolution, + 1 for the 2x2 blocks).
FEATURE_REACH_PX = float(2 * _FEATURE_RADIUS + 1)

#: Feature channel names. Angles are those of the stripes (contour tangent), measured from the
#: image x axis (columns, rightwards) towards the y axis (rows, downwards).
CHANNELS: tuple[str, ...] = tuple(
    [f"orientation/wl{2 * w:g}px/{180 * o / _N_ORI:g}deg" for w in _WAVELENGTHS for o in range(_N_ORI)]
    + [f"curvature/wl{2 * w:g}px/{180 * o / _N_ORI:g}deg/bend{b}" for w in _WAVELENGTHS
       for o in range(_N_ORI) for b in "+-"]
    + [f"blob/sigma{2 * s:g}px/{p}" for s in _DOG_SIGMAS for p in ("on", "off")]
    + ["colour/rg+", "colour/rg-", "colour/by+", "colour/by-"])
#: (58,) index into FEATURE_CLASSES of each channel.
CHANNEL_CLASS = np.array([FEATURE_CLASSES.index(c.split("/")[0]) for c in CHANNELS])

_CALIBRATION_IMAGES = 256
_CALIBRATION_START = 2 ** 40  # calibration images: procedural(256, seed, start=2**40), apart from the session's
_BATCH = 8  # images per FFT batch: small enough for the CPU cache


# --- features ----------------------------------------------------------------------------------


def _grid(sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wrapped FFT-grid coordinates x, y (_FFT, _FFT) and the mask of |(x, y)| <= radius(sigma)."""
    c = np.fft.fftfreq(_FFT, 1.0 / _FFT)
    y, x = np.meshgrid(c, c, indexing="ij")
    return x, y, np.hypot(x, y) <= _radius(sigma)


def _gaussian(sigma: float) -> np.ndarray:
    """Truncated, unit-sum Gaussian kernel on the wrapped FFT grid."""
    x, y, inside = _grid(sigma)
    g = np.exp(-(x * x + y * y) / (2 * sigma ** 2)) * inside
    return g / g.sum()


def _gabor(wavelength: float, theta: float) -> np.ndarray:
    """Zero-mean complex Gabor (stripes at angle theta, envelope sigma 0.45 wavelength) on the FFT grid.

    Normalised so that a sinusoidal grating of amplitude 1 at its preferred frequency gives an
    energy (|response|) of about 1/2.
    """
    sigma = 0.45 * wavelength
    x, y, inside = _grid(sigma)
    envelope = np.exp(-(x * x + y * y) / (2 * sigma ** 2)) * inside
    g = envelope * np.exp(2j * np.pi / wavelength * (-np.sin(theta) * x + np.cos(theta) * y))
    g -= envelope * (g.sum() / envelope.sum())  # no response to uniform fields
    return g / envelope.sum()


#: Inputs (0 = L, 1 = RG, 2 = BY) of the 21 linear maps: 16 Gabors and 3 DoGs on L, blurred RG and BY.
_LINEAR_INPUT = np.array([0] * (len(_WAVELENGTHS) * _N_ORI + len(_DOG_SIGMAS)) + [1, 2])


@lru_cache(maxsize=1)
def _linear_filters() -> np.ndarray:
    """(21, F, F) complex64 spectra of the linear maps, scaled by 1/4 for the 2x2 spectral fold."""
    kernels = [_gabor(w, np.pi * o / _N_ORI) for w in _WAVELENGTHS for o in range(_N_ORI)]
    kernels += [_gaussian(c) - _gaussian(_SURROUND * c) for c in _DOG_SIGMAS]
    kernels += [_gaussian(_COLOUR_SIGMA)] * 2
    return (np.fft.fft2(np.array(kernels)) / 4).astype(np.complex64)


def _front_end(images: np.ndarray) -> np.ndarray:
    """(N,112,112,3) RGB pixels -> (N, 3, 56, 56) float32 L, RG, BY at half resolution."""
    x = np.asarray(images, np.float32)
    x = x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]  # 4 x 2x2 block means
    r, g, b = ((x[..., c] - 4 * np.float32(m)) * np.float32(1 / 256) for c, m in enumerate(DATASET_MEAN))
    return np.stack([(r + g + b) * np.float32(1 / 3), r - g, (r + g) * np.float32(0.5) - b], axis=1)


def _linear_maps(x: np.ndarray) -> np.ndarray:
    """(N, 3, 56, 56) L, RG, BY -> (N, 21, 28, 28) complex64 filter outputs on the feature grid.

    Linear convolution via zero-padded FFTs; the outputs at every second half-res pixel come from
    one 40x40 inverse FFT of the spectrum folded 2x2 (its four aliases summed).
    """
    spectra = np.fft.fft2(x, s=(_FFT, _FFT))[:, _LINEAR_INPUT] * _linear_filters()
    h = _FFT // 2
    folded = spectra[..., :h, :h] + spectra[..., h:, :h] + spectra[..., :h, h:] + spectra[..., h:, h:]
    return np.fft.ifft2(folded)[..., :_GRID, :_GRID]


def _curvature(energy: np.ndarray) -> np.ndarray:
    """(N, 2, 8, H, W) orientation energies -> (N, 2, 8, 2, H, W) curvature maps.

    Map (s, o, bend b=+-1) at x is min(E[o - 2b](x - d t), E[o](x), E[o + 2b](x + d t)), t the unit
    tangent of orientation o: an AND of three segments along a contour that turns by 45 deg over
    each d (outside the map E counts as 0).
    """
    n, n_scales, n_ori, h, w = energy.shape
    m = max(_CURVE_SHIFT)
    padded = np.zeros((n, n_scales, n_ori, h + 2 * m, w + 2 * m), energy.dtype)
    padded[..., m:m + h, m:m + w] = energy

    def at(s: int, o: int, dx: int, dy: int) -> np.ndarray:
        """View of E[s, o mod 8] sampled at (x + dx, y + dy)."""
        return padded[:, s, o % n_ori, m + dy:m + dy + h, m + dx:m + dx + w]

    out = np.empty((n, n_scales, n_ori, 2, h, w), energy.dtype)
    for s in range(n_scales):
        for o, (dx, dy) in enumerate(_curve_steps(s)):
            for b, sign in enumerate((1, -1)):
                res = out[:, s, o, b]
                np.minimum(at(s, o + sign * _BEND_STEPS, dx, dy), at(s, o - sign * _BEND_STEPS, -dx, -dy), out=res)
                np.minimum(res, energy[:, s, o], out=res)
    return out


def _feature_maps(images: np.ndarray) -> np.ndarray:
    """(N,112,112,3) images -> (N, 58, 28, 28) float32 unscaled feature maps, channels as CHANNELS."""
    n = len(images)
    lin = _linear_maps(_front_end(images))
    n_gabor = len(_WAVELENGTHS) * _N_ORI
    energy = np.abs(lin[:, :n_gabor]).reshape(n, len(_WAVELENGTHS), _N_ORI, _GRID, _GRID)
    signed = lin[:, n_gabor:].real  # DoGs, then RG and BY
    half_waves = np.maximum(np.stack([signed, -signed], axis=2), 0)  # (N, 5, 2, H, W): +, -
    return np.concatenate([energy.reshape(n, -1, _GRID, _GRID), _curvature(energy).reshape(n, -1, _GRID, _GRID),
                           half_waves.reshape(n, -1, _GRID, _GRID)], axis=1)


#: An RF envelope on the feature grid: (flat grid indices, float64 weights summing to 1).
Envelope = tuple[np.ndarray, np.ndarray]


def _envelopes(rf_center: np.ndarray, rf_sigma: np.ndarray) -> list[Envelope]:
    """Unit-sum Gaussian RF envelopes, truncated at 3 sigma, on the 28x28 feature grid.

    rf_center (neurons, 2) is (x, y) and rf_sigma (neurons,) in image px (pixel i spans [i, i+1)).
    """
    pos = 4.0 * np.arange(_GRID) + 1.0  # grid point g is half-res pixel 2g, centred on image coordinate 4g+1
    dx = pos[None, None, :] - rf_center[:, 0, None, None]
    dy = pos[None, :, None] - rf_center[:, 1, None, None]
    d2 = (dx * dx + dy * dy) / rf_sigma[:, None, None] ** 2
    env = np.exp(-d2 / 2) * (d2 <= _TRUNCATE ** 2)
    env = env.reshape(len(rf_sigma), -1)
    return [(np.flatnonzero(e), e[e > 0] / e.sum()) for e in env]


def _pooled(images: np.ndarray, envelopes: list[Envelope]) -> np.ndarray:
    """(N, 58, P) float64: the feature maps of images (N,112,112,3) pooled by P envelopes.

    Sums run in numpy's own loops (not a multithreaded BLAS), so each image's result is the same
    bits whatever the batch or thread count.
    """
    out = np.empty((len(images), len(CHANNELS), len(envelopes)))
    for lo in range(0, len(images), _BATCH):
        maps = _feature_maps(images[lo:lo + _BATCH]).reshape(-1, len(CHANNELS), _GRID * _GRID)
        for k, (where, weight) in enumerate(envelopes):
            out[lo:lo + len(maps), :, k] = np.einsum("icp,p->ic", maps[:, :, where], weight)
    return out


def _softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + exp(x)), without overflow."""
    return np.logaddexp(0.0, x)


# --- the neurons -------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModelNeurons:
    """Ground-truth model neurons: a deterministic map from images to mean spike counts.

    Attributes (arrays over neurons unless noted):
        rf_center: (neurons, 2) float64 receptive-field centre (x, y), image px from the top-left
            corner (pixel i spans [i, i+1)).
        rf_sigma: (neurons,) Gaussian RF envelope sigma, image px.
        weights: (neurons, 58) tuning weights over CHANNELS (applied to scaled features).
        class_mix: (neurons, 4) share of each of FEATURE_CLASSES in the tuning (for analysis).
        channel_scale: (58,) mean of each feature map on the calibration images.
        c50: (neurons,) semi-saturation constant of the divisive normalisation (scaled units).
        drive_mean, drive_std: (neurons,) calibration statistics z-scoring the pooled drive.
        slope, offset, gain: (neurons,) output nonlinearity gain * softplus(slope * z + offset),
            in spikes per 100 ms bin.
    """

    rf_center: np.ndarray
    rf_sigma: np.ndarray
    weights: np.ndarray
    class_mix: np.ndarray
    channel_scale: np.ndarray
    c50: np.ndarray
    drive_mean: np.ndarray
    drive_std: np.ndarray
    slope: np.ndarray
    offset: np.ndarray
    gain: np.ndarray

    @property
    def num_neurons(self) -> int:
        return len(self.rf_sigma)

    @cached_property
    def _envelopes(self) -> list[Envelope]:
        """The neurons' RF envelopes on the feature grid (computed once)."""
        return _envelopes(self.rf_center, self.rf_sigma)

    @property
    def rf_reach(self) -> np.ndarray:
        """(neurons,) image px: a neuron's rate depends only on pixels this close to its RF centre."""
        return _TRUNCATE * self.rf_sigma + FEATURE_REACH_PX

    def drive(self, images: np.ndarray) -> np.ndarray:
        """(neurons, N) z-scored drive for images (N, 112, 112, 3) (uint8 pixels, or floats on that scale)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE, 3):
            raise ValueError(f"images must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}, 3) RGB pixels, got {images.shape}")
        pooled = _pooled(images, self._envelopes)  # (N, 58, neurons)
        raw = _normalised_drive(pooled, self.weights, self.channel_scale, self.c50)
        return (raw - self.drive_mean[:, None]) / self.drive_std[:, None]

    def rates(self, images: np.ndarray) -> np.ndarray:
        """(neurons, N) float64 true mean spike counts per 100 ms bin for images (N, 112, 112, 3).

        An image's rates depend on that image alone: the same bits in any batch, at any thread count.
        """
        z = self.drive(images)
        return self.gain[:, None] * _softplus(self.slope[:, None] * z + self.offset[:, None])

    def to_dict(self) -> dict[str, list]:
        """JSON-ready nested lists; floats survive a JSON round trip exactly."""
        return {f.name: getattr(self, f.name).tolist() for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelNeurons":
        """Inverse of :meth:`to_dict`; raises ValueError on missing or mis-shaped entries."""
        arrays = {f.name: np.asarray(d[f.name], np.float64) for f in fields(cls)}
        n = len(arrays["rf_sigma"])
        expected = {"rf_center": (n, 2), "weights": (n, len(CHANNELS)), "class_mix": (n, len(FEATURE_CLASSES)),
                    "channel_scale": (len(CHANNELS),)}
        for name, a in arrays.items():
            if a.shape != expected.get(name, (n,)):
                raise ValueError(f"neuron parameter {name!r} has shape {a.shape}, expected {expected.get(name, (n,))}")
        return cls(**arrays)


def _vonmises(delta: np.ndarray, kappa: float) -> np.ndarray:
    """Orientation tuning exp(kappa (cos 2 delta - 1)): 1 at the preference, period 180 deg."""
    return np.exp(kappa * (np.cos(2 * delta) - 1))


def _tuning(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One neuron's (58,) channel weights and (4,) class mix; each class's weights sum to its share."""
    theta = np.pi * np.arange(_N_ORI) / _N_ORI
    scale = rng.uniform()
    scales = np.array([scale, 1 - scale])[:, None]
    pref, kappa = rng.uniform(0, np.pi), rng.uniform(1, 4)
    suppression = rng.uniform(0, 0.5)
    ori = scales * (_vonmises(theta - pref, kappa) - suppression * _vonmises(theta - pref - np.pi / 2, kappa))
    ori /= np.maximum(ori, 0).sum()
    bend, specificity = rng.integers(2), rng.uniform(0.6, 1.0)
    bends = np.where(np.arange(2) == bend, specificity, 1 - specificity)
    curv = (scales[:, :, None] * _vonmises(theta - rng.uniform(0, np.pi), rng.uniform(1, 4))[None, :, None]
            * bends[None, None, :])
    on = rng.uniform()
    blob = np.outer(np.exp(1.5 * rng.standard_normal(len(_DOG_SIGMAS))), [on, 1 - on])
    hue = rng.uniform(0, 2 * np.pi)
    colour = np.maximum([np.cos(hue), -np.cos(hue), np.sin(hue), -np.sin(hue)], 0)
    mix = rng.dirichlet(np.full(len(FEATURE_CLASSES), 0.5))
    parts = [ori.ravel(), curv.ravel() / curv.sum(), blob.ravel() / blob.sum(), colour / colour.sum()]
    return np.concatenate([m * p for m, p in zip(mix, parts)]), mix


def _normalised_drive(pooled: np.ndarray, weights: np.ndarray, channel_scale: np.ndarray,
                      c50: np.ndarray) -> np.ndarray:
    """(neurons, N) tuned drive divided by (c50 + the RF's total feature activity).

    pooled (N, 58, neurons) RF-pooled features; weights (neurons, 58); channel_scale (58,);
    c50 (neurons,). The activity is the mean over the four feature classes of their mean scaled
    feature; this divisive normalisation makes the drive depend less on contrast.
    """
    scaled = pooled / channel_scale[:, None]
    tuned = np.einsum("ick,kc->ki", scaled, weights)
    activity = np.mean([scaled[:, CHANNEL_CLASS == c].mean(axis=1) for c in range(len(FEATURE_CLASSES))], axis=0)
    return tuned / (c50[:, None] + activity.T)


def _calibrate(rf_center: np.ndarray, rf_sigma: np.ndarray, weights: np.ndarray, c50: np.ndarray,
               images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Channel scales (58,), drive mean and std (neurons,) and the z-scored drive (neurons, N) on images."""
    everywhere = (np.arange(_GRID * _GRID), np.full(_GRID * _GRID, 1.0 / _GRID ** 2))
    pooled = _pooled(images, _envelopes(rf_center, rf_sigma) + [everywhere])
    channel_scale = pooled[:, :, -1].mean(axis=0)
    raw = _normalised_drive(pooled[:, :, :-1], weights, channel_scale, c50)
    mean, std = raw.mean(axis=1), raw.std(axis=1)
    return channel_scale, mean, std, (raw - mean[:, None]) / std[:, None]


def _draw_neurons(n: int, seed: int) -> ModelNeurons:
    """Random neurons for ``seed``, calibrated on procedural(256, seed, start=2**40)."""
    rng = np.random.default_rng([seed, 0xD161])
    rf_center = rng.uniform(36.0, 76.0, (n, 2))
    rf_sigma = rng.uniform(5.0, 10.0, n)
    weights, class_mix = map(np.array, zip(*[_tuning(rng) for _ in range(n)]))
    c50 = rng.uniform(0.2, 1.0, n)
    sparse = rng.uniform(size=n) < 0.25
    slope = np.where(sparse, rng.uniform(1.0, 1.8, n), rng.uniform(0.5, 1.2, n))
    offset = np.where(sparse, rng.uniform(-3.0, -1.5, n), rng.uniform(-1.0, 0.5, n))
    target = np.where(sparse, rng.uniform(0.5, 1.5, n), np.exp(rng.uniform(np.log(1.5), np.log(6.0), n)))
    images = procedural(_CALIBRATION_IMAGES, seed, start=_CALIBRATION_START)
    channel_scale, drive_mean, drive_std, z = _calibrate(rf_center, rf_sigma, weights, c50, images)
    gain = target / _softplus(slope[:, None] * z + offset[:, None]).mean(axis=1)
    return ModelNeurons(rf_center, rf_sigma, weights, class_mix, channel_scale, c50, drive_mean, drive_std,
                        slope, offset, gain)


# --- the population ----------------------------------------------------------------------------


def noise_ceiling(true_rates: np.ndarray, repeats_per_image: np.ndarray) -> np.ndarray:
    """(neurons,) expected squared correlation of Poisson repeat means with the true rates.

    With image i shown R_i times, the repeat mean is rate_i + e_i, Var(e_i) = rate_i / R_i,
    independent of the rates. Over N images, E[sample covariance(rate, mean)] = V (the variance of
    the rates across images, 1/N normalised) and E[sample variance of the means] = V + (1 - 1/N)
    mean_i(rate_i / R_i); the ceiling is V / (V + (1 - 1/N) mean_i(rate_i / R_i)), a ratio of
    expectations accurate to O(1/N).

    Args:
        true_rates: (neurons, N) mean counts per bin.
        repeats_per_image: (N,) number of trials per image.
    """
    n = true_rates.shape[1]
    v = true_rates.var(axis=1)
    noise = (1 - 1 / n) * (true_rates / repeats_per_image).mean(axis=1)
    return v / (v + noise)


@dataclass(eq=False)
class DigitalPopulation:
    """A simulated recording of ground-truth model neurons.

    Attributes:
        session: the recording: procedural(n_images, seed) images, Poisson trials ``raw``
            (neurons, N, repeats), NaN-padded where an image has fewer repeats, ``responses`` their
            nanmean (spike counts per 100 ms bin).
        neurons: the ground truth (parameters and :meth:`ModelNeurons.rates`).
        generator: the arguments of :func:`digital_population` that made it.
    """

    session: Session
    neurons: ModelNeurons
    generator: dict = field(default_factory=dict)

    def rates(self, images: np.ndarray) -> np.ndarray:
        """(neurons, N) float64 true mean counts per 100 ms bin for any images (N, 112, 112, 3)."""
        return self.neurons.rates(images)

    @cached_property
    def true_rates(self) -> np.ndarray:
        """(neurons, N) true mean counts for the session's images."""
        return self.rates(self.session.images)

    @property
    def repeats_per_image(self) -> np.ndarray:
        """(N,) number of trials of each image (the same for all neurons)."""
        return (~np.isnan(self.session.raw[0])).sum(axis=1)

    @cached_property
    def noise_ceiling(self) -> np.ndarray:
        """(neurons,) expected squared correlation of ``session.responses`` with ``true_rates``."""
        return noise_ceiling(self.true_rates, self.repeats_per_image)

    @property
    def rf_reach(self) -> np.ndarray:
        """(neurons,) image px around each RF centre outside which pixels do not affect the rate."""
        return self.neurons.rf_reach

    def parameters(self) -> dict[str, np.ndarray]:
        """Per-neuron parameters as plain arrays (see :class:`ModelNeurons`), plus ``rf_reach``."""
        return {**{k: np.array(v) for k, v in asdict(self.neurons).items()}, "rf_reach": self.rf_reach}


def _trials(rates: np.ndarray, repeats: int, min_repeats: int, seed: int) -> np.ndarray:
    """(neurons, N, repeats) Poisson counts, NaN beyond each image's repeat count (U{min..repeats})."""
    rng = np.random.default_rng([seed, 0x7121])
    n_rep = rng.integers(min_repeats, repeats + 1, rates.shape[1])
    raw = rng.poisson(np.repeat(rates[:, :, None], repeats, axis=2)).astype(np.float64)
    raw[:, np.arange(repeats)[None, :] >= n_rep[:, None]] = np.nan
    return raw


def digital_population(n_neurons: int = 32, n_images: int = 1200, repeats: int = 10, seed: int = 0,
                       min_repeats: int | None = None, name: str = "digital") -> DigitalPopulation:
    """Simulate a V4-like recording of ``n_neurons`` ground-truth model neurons.

    Args:
        n_neurons: number of model neurons.
        n_images: number of images, ``procedural(n_images, seed)``.
        repeats: trials per image (the width of ``session.raw``).
        seed: seed of the images, the neurons and the trials (an integer >= 0).
        min_repeats: if given, each image gets a uniform random number of trials in
            [min_repeats, repeats], the rest NaN (as in recordings with dropped trials).
        name: the session name.

    The population is a deterministic function of these arguments.
    """
    min_repeats = repeats if min_repeats is None else min_repeats
    if not (n_neurons >= 1 and n_images >= 2 and 1 <= min_repeats <= repeats and seed >= 0):
        raise ValueError(f"need n_neurons >= 1, n_images >= 2, 1 <= min_repeats <= repeats and seed >= 0; got "
                         f"{n_neurons=}, {n_images=}, {min_repeats=}, {repeats=}, {seed=}")
    neurons = _draw_neurons(n_neurons, seed)
    images = procedural(n_images, seed)
    rates = neurons.rates(images)
    raw = _trials(rates, repeats, min_repeats, seed)
    session = Session(name, images, np.nanmean(raw, axis=2), raw)
    generator = dict(n_neurons=n_neurons, n_images=n_images, repeats=repeats, seed=seed, min_repeats=min_repeats)
    pop = DigitalPopulation(session, neurons, {k: int(v) for k, v in generator.items()})
    pop.true_rates = rates  # seeds the cache
    return pop


def _json_path(root: str | Path, name: str) -> Path:
    return Path(root) / "digital" / f"{checked_name(name, 'population name')}.json"


def save_digital_population(pop: DigitalPopulation, root: str | Path, name: str = "digital") -> Path:
    """Write ``pop`` under ``root``: the session in the published layout (as session ``name``, PNG
    images) and the ground truth in ``root/digital/<name>.json`` (written atomically). Returns the
    JSON path."""
    save_session(replace(pop.session, name=name), root)
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "model": MODEL, "session": name,
           "generator": pop.generator, "channels": list(CHANNELS), "neurons": pop.neurons.to_dict()}
    path = _json_path(root, name)
    write_json(path, doc)
    return path


def load_digital_population(root: str | Path, name: str = "digital") -> DigitalPopulation:
    """Read a population written by :func:`save_digital_population`; ``rates()`` is reproduced exactly.

    Raises:
        ValueError: the JSON is missing, corrupt, of another format, version or model, or does
            not match the session.
    """
    path = _json_path(root, name)
    if not path.is_file():
        raise ValueError(f"{path}: missing; no digital population {name!r} under {root}")
    try:
        doc = json.loads(path.read_text())
        if doc.get("format") != FORMAT:
            raise ValueError(f"format is {doc.get('format')!r}, expected {FORMAT!r}")
        if doc.get("version") != FORMAT_VERSION or doc.get("model") != MODEL:
            raise ValueError(f"version {doc.get('version')!r} / model {doc.get('model')!r}; this code reads "
                             f"version {FORMAT_VERSION} / model {MODEL!r}")
        if doc["channels"] != list(CHANNELS):
            raise ValueError("its feature channels differ from this code's")
        neurons = ModelNeurons.from_dict(doc["neurons"])
        generator = dict(doc["generator"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a valid digital population file ({e})") from None
    session = load_session(root, name)
    if session.num_neurons != neurons.num_neurons or session.raw is None:
        raise ValueError(f"{path}: {neurons.num_neurons} neurons, but session {name} has "
                         f"{session.num_neurons} neurons{'' if session.raw is not None else ' and no raw trials'}")
    return DigitalPopulation(session, neurons, generator)
