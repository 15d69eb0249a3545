r"""Accuracy metrics for models of neurons, vectorised over neurons (numpy only).

The main metric is :func:`noise_corrected_r2`, the estimator :math:`\hat r^2_{ER}` of
Pospisil & Bair, "The unbiased estimation of the fraction of variance explained by a model",
PLoS Computational Biology 17(8): e1009212 (2021), which Cowley et al., "Compact deep neural
network models of the visual cortex" (Nature, 2026) report as the "noise-corrected R2".

Notation used in the docstrings, for one neuron:

* ``i = 1..m`` indexes the images that have at least one valid repeat, ``r_ij`` is the response
  (e.g. spike count) on valid repeat ``j = 1..n_i`` of image ``i`` and ``x_i`` the prediction;
* ``ybar_i = (1/n_i) sum_j r_ij`` is the repeat-averaged response;
* ``s_i^2 = (1/(n_i - 1)) sum_j (r_ij - ybar_i)^2`` is the sample variance of image ``i``
  (images with ``n_i >= 2``);
* ``sigma^2 = mean of s_i^2 over the images with n_i >= 2`` is the pooled trial-to-trial noise
  variance (the same unweighted mean over images as the reference code);
* ``xc_i = x_i - mean_i(x)`` and ``yc_i = ybar_i - mean_i(ybar)`` are centred over the m images;
* ``N = sigma^2 (m - 1)/m sum_i 1/n_i = (m - 1) sigma^2 / n_h``, with ``n_h = m / sum_i(1/n_i)``
  the harmonic mean of the repeat counts, is the part of ``sum_i yc_i^2`` that trial-to-trial
  noise contributes in expectation, because ``ybar_i`` carries noise of variance ``sigma^2/n_i``.
"""
from __future__ import annotations

import numpy as np

from ._repeats import RepeatStats, as_matrix, as_trials, repeat_stats


def pearson_r(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation over images, row by row.

    Args:
        a: (neurons, images) finite values, e.g. repeat-averaged responses.
        b: (neurons, images) finite values, e.g. model predictions.

    Returns:
        (neurons,) correlation in [-1, 1] (dimensionless); NaN for a neuron whose row in ``a`` or
        ``b`` is constant, where the correlation is undefined.

    Raises:
        ValueError: if either array is not 2-D, their shapes differ, there are fewer than 2
            images, or a value is NaN or +-inf.
    """
    a = as_matrix(a, "a")
    return _pearson(a, as_matrix(b, "b", a.shape))


def pearson_r1(a: np.ndarray, b: np.ndarray) -> float:
    """:func:`pearson_r` of two (images,) vectors: one neuron's r as a float (NaN if one is constant)."""
    return float(pearson_r(np.asarray(a, np.float64)[None], np.asarray(b, np.float64)[None])[0])


def raw_r2(responses_mean: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Uncorrected R2: the squared Pearson correlation of predictions and mean responses.

    In this field a model's "R2" is usually the squared correlation, i.e. the fraction of the
    variance of the repeat-averaged responses explained by the best affine map of the
    predictions (a gain and an offset), not ``1 - SSE/SST`` of the raw predictions. Trial-to-
    trial noise left in the repeat averages biases it downwards; see :func:`noise_corrected_r2`.

    Args:
        responses_mean: (neurons, images) repeat-averaged responses (e.g.
            ``np.nanmean(responses, axis=2)``), all finite.
        predictions: (neurons, images) model predictions, all finite.

    Returns:
        (neurons,) values in [0, 1] (dimensionless); NaN where a row is constant.

    Raises:
        ValueError: if either array is not 2-D (e.g. single-trial responses: average the repeats
            first), their shapes differ, there are fewer than 2 images, or a value is not finite.
    """
    y = as_matrix(responses_mean, "responses_mean")
    return _pearson(y, as_matrix(predictions, "predictions", y.shape)) ** 2


def fraction_explainable_variance(responses: np.ndarray) -> np.ndarray:
    """Fraction of the variance of the repeat-averaged responses that is not trial noise.

    ``FEV = (sum_i yc_i^2 - N) / sum_i yc_i^2`` (notation in the module docstring): the
    variance across images of the repeat averages ``ybar_i``, less its expected noise part
    ``N = sigma^2 (m - 1)/m sum_i 1/n_i``, over that variance. Unequal repeat counts enter
    through the per-image noise variance of the mean ``sigma^2/n_i`` (the harmonic mean of the
    ``n_i``). It describes the averages actually measured, so it grows with the number of
    repeats. It is a ratio of approximately unbiased terms: at low signal-to-noise it has a large
    spread and is negative when the noise accounts for more than the observed variance. It is
    not clipped.

    Args:
        responses: (neurons, images, repeats) single-trial responses (e.g. spike counts), NaN
            for missing repeats; images may have different numbers of repeats. Images without a
            valid repeat are left out for that neuron.

    Returns:
        (neurons,) dimensionless values <= 1. NaN for a neuron whose valid trials all have the
        same value, whose repeat averages do not vary across images, with fewer than 2 images
        that have a valid repeat, or with no image that has at least 2 repeats (then sigma^2
        cannot be estimated).

    Raises:
        ValueError: if ``responses`` is 2-D (noise correction needs repeats), not 3-D, empty,
            has fewer than 2 images, contains +-inf, or is entirely NaN.
    """
    stats = repeat_stats(as_trials(responses))
    yc = _centre(stats.mean, stats.valid)
    total = (yc * yc).sum(axis=1)
    defined = _well_posed(stats) & (total > 0)
    return _ratio(total - _noise_part(stats), total, defined)


def noise_corrected_r2(responses: np.ndarray, predictions: np.ndarray, clip: bool = False) -> np.ndarray:
    """Noise-corrected R2, the r^2_ER estimator of Pospisil & Bair (2021), per neuron.

    It estimates ``r^2_ER``, the squared correlation over images between the predictions and
    the neuron's *expected* response ``mu_i`` (the mean over infinitely many repeats), i.e. the
    fraction of the explainable variance that the best affine map of the predictions explains.
    Numerator and denominator of the naive squared correlation between ``x`` and ``ybar`` are
    each corrected for their expected excess due to the noise in ``ybar_i`` (variance
    ``sigma^2/n_i``); notation in the module docstring::

        numerator   = (sum_i xc_i yc_i)^2 - sigma^2 sum_i xc_i^2 / n_i
        denominator = (sum_i xc_i^2) * (sum_i yc_i^2 - sigma^2 (m - 1)/m sum_i 1/n_i)
        r2_ER       = numerator / denominator

    Given the predictions, the two corrected terms are unbiased estimates of
    ``(sum_i xc_i mu_i)^2`` and ``sum_i xc_i^2 * sum_i (mu_i - mean(mu))^2``, provided the noise
    is independent across trials with a variance that does not depend on the image (the paper
    applies a square-root transform to spike counts for this); the ratio is then approximately
    unbiased, with a bias that shrinks as the number of images m and the SNR grow. Where the
    noise variance depends on the image (raw, Poisson-like spike counts), the pooled sigma^2
    stands in for the per-image variances: the numerator's correction then misses their
    covariation with ``xc_i^2`` (a relative error of order 1/m), and with unequal repeats the
    denominator's misses their covariation with ``1/n_i`` (none on average if the repeat counts
    do not depend on the response). With equal repeat counts ``n_i = n`` this is exactly the
    paper's estimator (function ``r2er_n2m`` of the authors' code,
    github.com/deanpospisil/er_est, file ``er_est.py``): numerator
    ``(xc.yc)^2 - sigma^2/n |xc|^2`` and denominator ``|xc|^2 |yc|^2 - (m-1) sigma^2/n |xc|^2``.
    Unequal repeat counts enter through the noise variance of each image's mean,
    ``sigma^2/n_i``, which makes the denominator's correction ``(m-1) sigma^2/n_h`` with ``n_h``
    the harmonic mean of the ``n_i``. Cowley et al.'s code (``compute_r2_ER`` in
    github.com/cowleygroup/V4_compact_models) instead plugs the median repeat count into the
    equal-repeat formula; the two agree when all images have the same number of repeats.
    ``sigma^2`` is the same in both: the unweighted mean of the per-image sample variances.

    Low signal-to-noise (SNR = variance of ``mu_i`` across images / sigma^2): the corrected
    numerator and denominator stay unbiased, but the denominator comes close to zero, so the
    estimates spread widely and fall below 0 or above 1. The paper's Fig. 2 shows values above 1
    for a true value of 1 already at SNR 0.5 (m = 362, n = 4), and the paper finds that for many
    recorded neurons the confidence interval spans all of [0, 1], hence its advice to screen
    neurons by SNR. Being a ratio with a noisy denominator, the estimate then has a right-skewed,
    heavy-tailed distribution: the median over neurons stays near the truth longer than the mean,
    which is pulled upwards (in simulations with m = 300 images, 2-4 repeats and a true value of
    0.8: SNR 2 gives mean 0.80, sd 0.025; SNR 0.2 gives median 0.80, mean 0.83-0.84, sd 0.2, 16%
    above 1; at SNR 0.02 about 30% are NaN and the rest are erratic). The values are returned
    unclipped; pass ``clip=True`` to bound each estimate to [0, 1], which biases averages.
    When the noise-corrected variance of the expected responses,
    ``sum_i yc_i^2 - sigma^2 (m - 1)/m sum_i 1/n_i``, is zero or negative, the data show no
    stimulus-driven variance at all; the ratio then has no meaning (its sign is arbitrary) and
    NaN is returned, where the reference code would return the ratio.

    Args:
        responses: (neurons, images, repeats) single-trial responses (e.g. spike counts), NaN
            for missing repeats; images may have different numbers of repeats, and an image with
            a single repeat still contributes its mean (only images with 2 or more repeats
            contribute to sigma^2). Images without a valid repeat are left out for that neuron.
        predictions: (neurons, images) model predictions, all finite, in any units (only their
            correlation with the responses matters).
        clip: bound the estimates to [0, 1].

    Returns:
        (neurons,) float64 estimates (dimensionless). NaN for a neuron whose valid trials all
        have the same value, whose predictions are constant, with fewer than 2 images that have
        a valid repeat, with no image that has at least 2 repeats (sigma^2 cannot be estimated),
        or whose noise-corrected response variance is not positive (see above).

    Raises:
        ValueError: if ``responses`` is 2-D (noise correction needs repeats), not 3-D, empty,
            has fewer than 2 images, contains +-inf, or is entirely NaN; if ``predictions`` is
            not 2-D, does not match the responses' (neurons, images), or is not finite.
    """
    trials = as_trials(responses)
    x = as_matrix(predictions, "predictions", trials.shape[:2])
    stats = repeat_stats(trials)
    xc = _centre(x, stats.valid)
    yc = _centre(stats.mean, stats.valid)
    xx = (xc * xc).sum(axis=1)
    signal = (yc * yc).sum(axis=1) - _noise_part(stats)
    numerator = (xc * yc).sum(axis=1) ** 2 - stats.noise_var * (xc * xc * _inverse_counts(stats)).sum(axis=1)
    defined = _well_posed(stats) & ~_is_constant(x, stats.valid) & (signal > 0)
    r2er = _ratio(numerator, xx * signal, defined)
    return np.clip(r2er, 0.0, 1.0) if clip else r2er


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(neurons,) row-wise correlation of checked (neurons, images) arrays; NaN if a row is constant."""
    every = np.ones(a.shape, dtype=bool)
    ac, bc = _centre(a, every), _centre(b, every)
    defined = ~(_is_constant(a, every) | _is_constant(b, every))
    products = (ac * ac).sum(axis=1) * (bc * bc).sum(axis=1)
    return _ratio((ac * bc).sum(axis=1), np.sqrt(products), defined)


def _centre(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(neurons, images) values minus their row mean over the valid images; 0 elsewhere."""
    filled = np.where(valid, values, 0.0)
    count = np.maximum(valid.sum(axis=1, keepdims=True), 1)
    return np.where(valid, filled - filled.sum(axis=1, keepdims=True) / count, 0.0)


def _is_constant(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(neurons,) True where all valid values of a row are equal (exactly, no tolerance)."""
    highest = np.max(values, axis=1, where=valid, initial=-np.inf)
    return highest == np.min(values, axis=1, where=valid, initial=np.inf)


def _inverse_counts(stats: RepeatStats) -> np.ndarray:
    """(neurons, images) 1/n_i, and 0 for images without a valid repeat."""
    return np.divide(1.0, stats.count, out=np.zeros(stats.count.shape), where=stats.valid)


def _noise_part(stats: RepeatStats) -> np.ndarray:
    """(neurons,) N = sigma^2 (m - 1)/m sum_i 1/n_i, the noise expected in sum_i yc_i^2."""
    m = stats.valid.sum(axis=1)
    return stats.noise_var * (m - 1) / np.maximum(m, 1) * _inverse_counts(stats).sum(axis=1)


def _well_posed(stats: RepeatStats) -> np.ndarray:
    """(neurons,) True where the responses vary, 2+ images are valid and sigma^2 is known."""
    return ~stats.constant & (stats.valid.sum(axis=1) >= 2) & ~np.isnan(stats.noise_var)


def _ratio(numerator: np.ndarray, denominator: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """numerator / denominator where ``defined``, NaN elsewhere (no warnings)."""
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=defined)
