"""Helpers the tests share: random compact models, random images, the float64 reference, errors,
and the statistics of the recorded V4 sessions that bands in the tests cite."""
from __future__ import annotations

import numpy as np


def random_model(filters, seed=0, dtype=None):
    """A CompactModel with random weights and batchnorm statistics (eval mode)."""
    from compactcortex.models.random import random_published_like_model

    m = random_published_like_model(filters, seed=seed)
    return m if dtype is None else m.to(dtype)


def recentred(n, seed=0, dtype=np.float32):
    """Random recentred images (N, 112, 112, 3)."""
    return np.random.default_rng(seed).normal(0, 60, (n, 112, 112, 3)).astype(dtype)


def published_state(model) -> dict:
    """A CompactModel's state dict in the authors' .pt naming (layers.* and Beta.*)."""
    return {("Beta." + k[len("readout."):] if k.startswith("readout.") else "layers." + k): v
            for k, v in model.state_dict().items()}


def torch_reference(model, images_nhwc) -> np.ndarray:
    """float64 PyTorch forward pass of recentred NHWC images."""
    import torch

    m = model.to(torch.float64)
    with torch.no_grad():
        return m(torch.from_numpy(np.asarray(images_nhwc, np.float64)).permute(0, 3, 1, 2)).numpy()


def rel_err(a, ref) -> float:
    return float(np.abs(np.asarray(a, np.float64) - ref).max() / np.abs(ref).max())


# Statistics of the recorded V4 sessions (190923, 201025): 1,200 stimulus images each and the
# repeat-averaged responses of their 33 and 89 neurons (../shared/data/v4). They are the source of
# the bands in test_images.py and test_digital.py; test_recorded_statistics.py recomputes them
# from the data where it is present. Each entry: (190923, 201025).
RECORDED = {
    "saturated_fraction": (0.0303, 0.0238),     # pixels at 0 or 255
    "rms_contrast_median": (59.1, 60.4),        # per image, grey levels over all pixels
    "image_mean_std": (34.6, 35.5),             # across images, of each image's mean grey level
    "channel_correlation_rg": (0.90, 0.89),     # of pixel values, R with G
    "channel_correlation_gb": (0.91, 0.92),
    "spectral_slope_q05": (-3.38, -3.41),       # luminance power spectrum (spectral_slope), per image
    "spectral_slope_q95": (-2.03, -1.95),
    "spectral_slope_max": (-0.96, -0.66),
    "mean_rate_min": (0.55, 0.49),              # spikes per 100 ms: per-neuron mean over images
    "mean_rate_max": (6.58, 10.02),
    "peak_to_mean_min": (1.8, 1.52),            # max over images / mean, the least modulated neuron
    "signal_correlation_abs_median": (0.11, 0.13),  # |r| between neurons' responses, over pairs
}


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


def image_statistics(images: np.ndarray) -> dict[str, float]:
    """The image entries of RECORDED for (N, 112, 112, 3) uint8 images."""
    rms = images.reshape(len(images), -1).std(axis=1)
    corr = np.corrcoef(images.reshape(-1, 3)[::7].astype(np.float64).T)
    slopes = np.array([spectral_slope(im) for im in images])
    return {"saturated_fraction": float(((images == 0) | (images == 255)).mean()),
            "rms_contrast_median": float(np.median(rms)),
            "image_mean_std": float(images.mean(axis=(1, 2, 3)).std()),
            "channel_correlation_rg": float(corr[0, 1]), "channel_correlation_gb": float(corr[1, 2]),
            "spectral_slope_q05": float(np.quantile(slopes, 0.05)),
            "spectral_slope_q95": float(np.quantile(slopes, 0.95)),
            "spectral_slope_max": float(slopes.max())}


def response_statistics(rates: np.ndarray) -> dict[str, float]:
    """The response entries of RECORDED for (neurons, images) mean responses."""
    means = rates.mean(axis=1)
    corr = np.corrcoef(rates)[np.triu_indices(len(rates), 1)]
    return {"mean_rate_min": float(means.min()), "mean_rate_max": float(means.max()),
            "peak_to_mean_min": float((rates.max(axis=1) / means).min()),
            "signal_correlation_abs_median": float(np.median(np.abs(corr)))}


#: A compress Recipe small enough for tests (seconds per neuron): what they check is the
#: bookkeeping, files and numbers' consistency, not accuracy.
TINY_RECIPE = dict(filters=(4, 4, 3, 3, 3), population_steps=3, pool_size=32, batch=8, retrain_steps=2,
                   final_steps=4, teacher_members=1, teacher_epochs=1)
