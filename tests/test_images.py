"""Procedural images: shape, determinism, resumable streams and natural-image statistics.

The statistical ranges are those of natural photographs (e.g. power spectra falling as
1/f^2, with image-to-image slopes of about -1.5 to -3; RMS contrasts of tens of grey levels),
not values measured from this generator.
"""
import itertools

import numpy as np
import pytest

from compactcortex.constants import DATASET_MEAN
from compactcortex.data.images import KINDS, procedural, procedural_stream


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return procedural(256, 0)


def spectral_slope(image: np.ndarray) -> float:
    """Slope of log power against log spatial frequency (4-40 cycles/image) of the luminance,
    radially averaged, after a Hann window against edge effects."""
    grey = image.astype(np.float64).mean(axis=2)
    window = np.outer(np.hanning(112), np.hanning(112))
    power = np.abs(np.fft.fft2((grey - grey.mean()) * window)) ** 2
    f = np.fft.fftfreq(112, 1 / 112)
    radius = np.rint(np.hypot(f[:, None], f[None, :])).astype(int)
    freqs = np.arange(4, 41)
    radial = np.array([power[radius == r].mean() for r in freqs])
    return float(np.polyfit(np.log(freqs), np.log(radial), 1)[0])


def test_shape_dtype_and_empty():
    x = procedural(5, 1)
    assert x.shape == (5, 112, 112, 3) and x.dtype == np.uint8 and x.flags.c_contiguous
    assert procedural(0, 1).shape == (0, 112, 112, 3)


def test_deterministic():
    np.testing.assert_array_equal(procedural(12, 4), procedural(12, 4))


@pytest.mark.parametrize("n,start", [(5, 5), (13, 7), (1, 29), (17, 3)])
def test_chunks_equal_the_stream(n, start):
    whole = procedural(start + n, 2)
    np.testing.assert_array_equal(whole[start:], procedural(n, 2, start=start))


def test_stream_generator():
    stream = procedural_stream(6, seed=3)
    batches = list(itertools.islice(stream, 3))
    assert all(b.shape == (6, 112, 112, 3) for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), procedural(18, 3))


def test_seeds_and_images_differ():
    a, b = procedural(8, 0), procedural(8, 1)
    diff = np.abs(a.astype(int) - b.astype(int)).mean(axis=(1, 2, 3))
    assert (diff > 5).all(), "every image differs between seeds"
    within = np.abs(a[:, None].astype(int) - a[None].astype(int)).mean(axis=(2, 3, 4))
    assert (within[~np.eye(8, dtype=bool)] > 5).all(), "images within a stream differ"


def test_pixel_statistics(batch):
    # Mean near the dataset mean, per channel.
    np.testing.assert_allclose(batch.reshape(-1, 3).mean(axis=0), DATASET_MEAN, atol=15)
    # Every grey level is used, in every channel.
    for c in range(3):
        assert len(np.unique(batch[..., c])) == 256
    # Not clipped flat: saturated pixels are a small minority.
    assert ((batch == 0) | (batch == 255)).mean() < 0.05
    # RMS contrast of natural images: typically 20-70 grey levels, rarely below 5.
    std = batch.reshape(len(batch), -1).std(axis=1)
    assert 20 < np.median(std) < 70 and np.quantile(std, 0.05) > 5 and std.max() < 110
    # Image means vary (different scenes), and colour channels are strongly correlated, as in
    # natural images.
    assert batch.mean(axis=(1, 2, 3)).std() > 10
    flat = batch.reshape(-1, 3)[::7].astype(float)
    corr = np.corrcoef(flat.T)
    assert corr[0, 1] > 0.6 and corr[1, 2] > 0.6


def test_texture_spectra_are_natural():
    slopes = np.array([spectral_slope(im) for im in procedural(24, 5, kinds=("texture",))])
    assert ((slopes > -3.5) & (slopes < -1.0)).all(), slopes
    assert -3.0 < np.median(slopes) < -1.5
    assert slopes.std() > 0.1, "spectral slopes vary between textures"


def test_mixed_images_have_natural_spectra(batch):
    slopes = np.array([spectral_slope(im) for im in batch[:48]])
    assert -3.2 < np.median(slopes) < -1.5
    assert (slopes < -0.8).mean() > 0.9


def test_shapes_add_edges():
    """Images with drawn edges have sharper luminance steps than smooth 1/f textures at equal
    contrast: more of their gradient energy is in the largest steps."""
    def kurtosis_of_gradients(images):
        grey = images.astype(float).mean(axis=3)
        g = np.diff(grey, axis=2).reshape(len(images), -1)
        g = g / g.std(axis=1, keepdims=True)
        return np.median((g ** 4).mean(axis=1))

    assert kurtosis_of_gradients(procedural(24, 6, kinds=("edges",))) > kurtosis_of_gradients(
        procedural(24, 6, kinds=("texture",)))


def test_bad_arguments():
    with pytest.raises(ValueError):
        procedural(2, -1)
    with pytest.raises(ValueError):
        procedural(2, 0, start=-3)
    with pytest.raises(ValueError, match="kinds"):
        procedural(2, 0, kinds=("clouds",))
    with pytest.raises(ValueError, match="kinds"):
        procedural(2, 0, kinds=())
    assert set(KINDS) >= {"texture", "edges", "curves", "dots", "blobs", "composite"}
