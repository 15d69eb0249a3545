"""Procedural images: shape, determinism, resumable streams and natural-image statistics.

The statistical ranges are those of natural photographs (e.g. power spectra falling as
1/f^2, with image-to-image slopes of about -1.5 to -3; RMS contrasts of tens of grey levels),
not values measured from this generator.
"""
import itertools

import numpy as np
import pytest

from compactcortex.constants import DATASET_MEAN
from compactcortex.data.procedural import KINDS, TEXTURE_EXPONENTS, procedural, procedural_stream

from helpers import RECORDED, image_statistics, spectral_slope


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return procedural(256, 0)


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
    """Against the recorded stimulus images (helpers.RECORDED, 190923 and 201025)."""
    stats = image_statistics(batch[:64])
    # Mean near the dataset mean (the recorded images'), per channel, within half the recorded
    # spread of image means.
    np.testing.assert_allclose(batch.reshape(-1, 3).mean(axis=0), DATASET_MEAN, atol=min(RECORDED["image_mean_std"]) / 2)
    # Every grey level is used, in every channel.
    for c in range(3):
        assert len(np.unique(batch[..., c])) == 256
    # Saturated pixels no more common than in the recorded images.
    assert ((batch == 0) | (batch == 255)).mean() <= max(RECORDED["saturated_fraction"])
    # Lower contrast than the recorded images (measured: 0.57 of their median RMS), not flat.
    std = batch.reshape(len(batch), -1).std(axis=1)
    assert 0.5 * min(RECORDED["rms_contrast_median"]) < np.median(std) <= max(RECORDED["rms_contrast_median"])
    # Image means vary nearly as much as the recorded images' (measured 0.87 of them); colour
    # channels are as strongly correlated.
    assert batch.mean(axis=(1, 2, 3)).std() > 0.8 * min(RECORDED["image_mean_std"])
    assert stats["channel_correlation_rg"] > min(RECORDED["channel_correlation_rg"]) - 0.05
    assert stats["channel_correlation_gb"] > min(RECORDED["channel_correlation_gb"]) - 0.05


def test_texture_spectra_follow_their_construction():
    """Textures are 1/f**a noise with a in TEXTURE_EXPONENTS: power-spectrum slopes -2a."""
    slopes = np.array([spectral_slope(im) for im in procedural(24, 5, kinds=("texture",))])
    lo, hi = -2 * TEXTURE_EXPONENTS[1], -2 * TEXTURE_EXPONENTS[0]
    assert ((slopes > lo) & (slopes < hi)).all(), slopes
    assert slopes.max() - slopes.min() > 0.25 * (hi - lo), "the exponents vary between textures"


def test_mixed_images_have_the_recorded_spectra(batch):
    slopes = np.array([spectral_slope(im) for im in batch[:48]])
    assert min(RECORDED["spectral_slope_q05"]) < np.median(slopes) < max(RECORDED["spectral_slope_q95"])
    assert slopes.max() < max(RECORDED["spectral_slope_max"])


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
