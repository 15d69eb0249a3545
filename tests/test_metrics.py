"""Tests of compactcortex.metrics on simulated neurons whose true r^2_ER is known by construction.

Each simulated "neuron" has a true mean response mu_i per image (gamma distributed) and a
prediction x whose in-sample correlation with mu is exactly sqrt(r2_true), so the true fraction of
explainable variance explained is r2_true. Trials are mu plus noise; simulations are stacked on the
neuron axis so that one call scores them all.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from compactcortex.metrics import fraction_explainable_variance, noise_corrected_r2, pearson_r, raw_r2

TRUTHS = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
IMAGES = 300
SIMS = 200
GAMMA_SHAPE, GAMMA_SCALE = 4.0, 1.25  # mu: mean 5, variance 6.25 across images


@dataclass
class Simulation:
    """Simulated trials of many neurons and the parameters they were drawn from."""

    trials: np.ndarray  # (neurons, images, repeats), NaN-padded
    predictions: np.ndarray  # (neurons, images)
    r2_true: np.ndarray  # (neurons,)
    mu: np.ndarray  # (neurons, images) expected responses
    noise_var: np.ndarray  # (neurons, images) true trial-to-trial variance
    counts: np.ndarray  # (neurons, images) valid repeats

    def noise_of_means(self) -> np.ndarray:
        """(neurons,) true expected noise in sum_i (ybar_i - mean ybar)^2: (m-1)/m sum_i var_i/n_i."""
        m = self.mu.shape[1]
        return (m - 1) / m * (self.noise_var / self.counts).sum(axis=1)

    def signal(self) -> np.ndarray:
        """(neurons,) sum_i (mu_i - mean mu)^2."""
        return ((self.mu - self.mu.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)


def _unit_rows(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def simulate(
    seed: int,
    truths: np.ndarray,
    repeats: tuple[int, int],
    noise: str = "gauss",
    snr: float = 0.5,
    sims: int = SIMS,
    images: int = IMAGES,
) -> Simulation:
    """Draw ``sims`` neurons per true r2_ER.

    Args:
        seed: random seed.
        truths: the true r2_ER values.
        repeats: (lowest, highest) repeat count; each image draws its count uniformly in between,
            and the trials past it are NaN.
        noise: "gauss" (mu + N(0, sigma^2), sigma^2 = var(mu)/snr) or "poisson" (Poisson(mu)
            counts, variance mu; snr is then var(mu)/mean(mu) = 1.25).
        snr: signal-to-noise ratio var(mu)/sigma^2 of the Gaussian noise.
        sims: neurons per true value.
        images: images per neuron.
    """
    rng = np.random.default_rng(seed)
    r2_true = np.repeat(truths, sims)
    n = r2_true.size
    mu = rng.gamma(GAMMA_SHAPE, GAMMA_SCALE, (n, images))
    mu_c = mu - mu.mean(axis=1, keepdims=True)
    z = rng.normal(size=(n, images))
    z -= z.mean(axis=1, keepdims=True)
    z -= (z * mu_c).sum(axis=1, keepdims=True) / (mu_c * mu_c).sum(axis=1, keepdims=True) * mu_c
    # Orthonormal directions a (along mu) and b: corr(x, mu) = sqrt(r2_true) exactly.
    x = np.sqrt(r2_true)[:, None] * _unit_rows(mu_c) + np.sqrt(1 - r2_true)[:, None] * _unit_rows(z)
    predictions = 3.0 * x + 7.0  # the metric must not care about the predictions' gain and offset
    low, high = repeats
    counts = rng.integers(low, high + 1, (n, images))
    if noise == "gauss":
        noise_var = np.full(mu.shape, GAMMA_SHAPE * GAMMA_SCALE**2 / snr)
        trials = mu[..., None] + rng.normal(size=(n, images, high)) * np.sqrt(noise_var)[..., None]
    else:
        noise_var = mu
        trials = rng.poisson(mu[..., None], (n, images, high)).astype(np.float64)
    trials[np.arange(high) >= counts[..., None]] = np.nan
    return Simulation(trials, predictions, r2_true, mu, noise_var, counts)


def _by_truth(values: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """(truths, sims) view of per-neuron values stacked truth by truth."""
    return values.reshape(truths.size, -1)


REPEAT_CASES = {"few equal": (3, 3), "few unequal": (2, 4), "many equal": (15, 15), "many unequal": (10, 20)}
NOISE_CASES = ["gauss", "poisson"]


@pytest.mark.parametrize("noise", NOISE_CASES)
@pytest.mark.parametrize("case", list(REPEAT_CASES))
def test_noise_corrected_r2_is_unbiased_and_raw_r2_is_not(case: str, noise: str) -> None:
    """Mean r2_ER estimate over 200 neurons is within 0.02 of the true value.

    Conditions under which the estimator is (approximately) unbiased and this is asserted:
    300 images, moderate SNR (Gaussian: var(mu)/sigma^2 = 0.5 per trial; Poisson counts with mean
    5: 1.25), noise independent across trials, repeat counts drawn independently of mu, and for
    Gaussian noise a variance equal on every image (Poisson noise varies with the image, which
    the pooled sigma^2 ignores at a cost of order 1/m). The naive squared correlation with the
    noisy repeat averages is attenuated; its expected value, predicted from the simulation's
    parameters as (r2 S + sum_i xc_i^2 v_i / |xc|^2) / (S + N) with S = sum_i (mu_i - mean mu)^2,
    v_i = var_i/n_i and N = (m-1)/m sum_i v_i, is checked and must lie clearly below the truth.
    """
    sim = simulate(seed=11, truths=TRUTHS, repeats=REPEAT_CASES[case], noise=noise)
    estimates = noise_corrected_r2(sim.trials, sim.predictions)
    assert np.isfinite(estimates).all()
    np.testing.assert_allclose(_by_truth(estimates, TRUTHS).mean(axis=1), TRUTHS, atol=0.02)

    naive = raw_r2(np.nanmean(sim.trials, axis=2), sim.predictions)
    xc = sim.predictions - sim.predictions.mean(axis=1, keepdims=True)
    noise_in_numerator = (xc**2 * sim.noise_var / sim.counts).sum(axis=1) / (xc**2).sum(axis=1)
    expected_naive = (sim.r2_true * sim.signal() + noise_in_numerator) / (sim.signal() + sim.noise_of_means())
    naive_mean = _by_truth(naive, TRUTHS).mean(axis=1)
    np.testing.assert_allclose(naive_mean, _by_truth(expected_naive, TRUTHS).mean(axis=1), atol=0.02)
    attenuation = _by_truth(sim.signal() / (sim.signal() + sim.noise_of_means()), TRUTHS).mean(axis=1)
    assert (attenuation < 0.95).all()
    assert (naive_mean < TRUTHS - 0.5 * (1 - attenuation) * TRUTHS).all()


def test_low_snr_spreads_and_leaves_the_unit_interval() -> None:
    """What happens at low SNR (documented in noise_corrected_r2).

    At SNR 0.2 (2-4 repeats, 300 images) the estimates spread over 3x more than at SNR 2 and
    fall outside [0, 1] (below 0 for a true value of 0.02, above 1 for 0.8) while their median
    stays within 0.03 of the truth; the mean is pulled upwards by the heavy right tail of the
    ratio but by less than 0.1. At SNR 0.02 the noise-corrected response variance is often <= 0,
    giving NaN, and the finite estimates are erratic.
    """
    truths = np.array([0.02, 0.8])
    spread = {}
    for snr in (2.0, 0.2):
        sim = simulate(seed=5, truths=truths, repeats=(2, 4), snr=snr, sims=1000)
        estimates = _by_truth(noise_corrected_r2(sim.trials, sim.predictions), truths)
        assert np.isfinite(estimates).all()
        spread[snr] = estimates.std(axis=1)
    assert (spread[0.2] > 3 * spread[2.0]).all()
    assert (estimates[0] < 0).mean() > 0.05 and (estimates[1] > 1).mean() > 0.05
    np.testing.assert_allclose(np.median(estimates, axis=1), truths, atol=0.03)
    bias = estimates.mean(axis=1) - truths
    assert (bias > -0.02).all() and (bias < 0.1).all()

    very_low = simulate(seed=6, truths=truths, repeats=(2, 4), snr=0.02, sims=1000)
    estimates = noise_corrected_r2(very_low.trials, very_low.predictions)
    assert np.isnan(estimates).mean() > 0.1
    assert not np.isinf(estimates).any()
    assert np.nanstd(estimates) > 1.0


def test_clip_bounds_to_the_unit_interval_and_keeps_nan() -> None:
    sim = simulate(seed=7, truths=np.array([0.1, 0.9]), repeats=(2, 4), snr=0.05, sims=300)
    raw = noise_corrected_r2(sim.trials, sim.predictions)
    clipped = noise_corrected_r2(sim.trials, sim.predictions, clip=True)
    assert ((raw < 0) | (raw > 1)).any() and np.isnan(raw).any()
    finite = ~np.isnan(raw)
    assert ((clipped[finite] >= 0) & (clipped[finite] <= 1)).all()
    inside = finite & (raw >= 0) & (raw <= 1)
    np.testing.assert_array_equal(clipped[inside], raw[inside])
    np.testing.assert_array_equal(clipped[finite & (raw > 1)], 1.0)
    np.testing.assert_array_equal(clipped[finite & (raw < 0)], 0.0)
    np.testing.assert_array_equal(np.isnan(clipped), np.isnan(raw))


@pytest.mark.parametrize("noise", NOISE_CASES)
@pytest.mark.parametrize("repeats", [(3, 3), (2, 4), (10, 20)])
def test_fraction_explainable_variance_matches_the_simulation(noise: str, repeats: tuple[int, int]) -> None:
    """Mean FEV over 200 neurons is within 0.02 of the true S / (S + N).

    S = sum_i (mu_i - mean mu)^2 is the signal and N = (m-1)/m sum_i var_i/n_i the noise that
    trial averaging leaves in the variance of the repeat averages, both from the simulation.
    """
    sim = simulate(seed=13, truths=np.array([0.5]), repeats=repeats, noise=noise)
    fev = fraction_explainable_variance(sim.trials)
    truth = sim.signal() / (sim.signal() + sim.noise_of_means())
    assert abs(fev.mean() - truth.mean()) < 0.02
    assert np.corrcoef(fev, truth)[0, 1] > 0  # per-neuron estimates follow the per-neuron truth


def _reference_r2er(trials: list[list[np.ndarray]], predictions: np.ndarray) -> np.ndarray:
    """Per-neuron loop over ragged trials, written from the formula in the docstring."""
    out = []
    for neuron, x in zip(trials, predictions):
        means = np.array([t.mean() for t in neuron])
        counts = np.array([t.size for t in neuron])
        sigma2 = np.mean([t.var(ddof=1) for t in neuron if t.size >= 2])
        xc, yc, m = x - x.mean(), means - means.mean(), len(neuron)
        numerator = np.dot(xc, yc) ** 2 - sigma2 * np.sum(xc**2 / counts)
        denominator = np.dot(xc, xc) * (np.dot(yc, yc) - sigma2 * (m - 1) / m * np.sum(1 / counts))
        out.append(numerator / denominator)
    return np.array(out)


def _ragged(trials: np.ndarray) -> list[list[np.ndarray]]:
    return [[t[~np.isnan(t)] for t in neuron] for neuron in trials]


def test_matches_the_papers_formula_for_equal_repeats() -> None:
    """Equal repeats: Pospisil & Bair's r2er_n2m, written out for one neuron at a time."""
    sim = simulate(seed=21, truths=np.array([0.2, 0.6]), repeats=(4, 4), sims=5, images=40)
    expected = []
    for y, x in zip(sim.trials, sim.predictions):  # y: (images, repeats)
        n, m = y.shape[1], y.shape[0]
        sigma2 = y.var(axis=1, ddof=1).mean()
        xc, yc = x - x.mean(), y.mean(axis=1) - y.mean()
        xy2, x2 = np.dot(xc, yc) ** 2, np.dot(xc, xc)
        expected.append((xy2 - sigma2 / n * x2) / (x2 * np.dot(yc, yc) - (m - 1) * sigma2 / n * x2))
    np.testing.assert_allclose(noise_corrected_r2(sim.trials, sim.predictions), expected, rtol=1e-10)


def test_unequal_repeats_follow_per_image_counts_and_ignore_padding() -> None:
    """Ragged repeats (1 to 5, so some images have one repeat) against a plain loop; extra NaN
    columns, shuffled trial order within an image and an image without any repeat change nothing
    beyond dropping that image."""
    sim = simulate(seed=22, truths=np.array([0.3, 0.8]), repeats=(1, 5), sims=5, images=50)
    got = noise_corrected_r2(sim.trials, sim.predictions)
    np.testing.assert_allclose(got, _reference_r2er(_ragged(sim.trials), sim.predictions), rtol=1e-10)

    rng = np.random.default_rng(0)
    padded = np.concatenate([sim.trials, np.full(sim.trials.shape[:2] + (3,), np.nan)], axis=2)
    shuffled = rng.permuted(padded, axis=2)
    np.testing.assert_allclose(noise_corrected_r2(shuffled, sim.predictions), got, rtol=1e-10)

    emptied = sim.trials.copy()
    emptied[0, 7] = np.nan
    kept = np.arange(sim.trials.shape[1]) != 7
    alone = noise_corrected_r2(sim.trials[:1, kept], sim.predictions[:1, kept])
    np.testing.assert_allclose(noise_corrected_r2(emptied, sim.predictions)[0], alone[0], rtol=1e-10)


def test_invariant_to_the_predictions_gain_and_offset() -> None:
    sim = simulate(seed=23, truths=np.array([0.4]), repeats=(2, 4), sims=20, images=60)
    base = noise_corrected_r2(sim.trials, sim.predictions)
    np.testing.assert_allclose(noise_corrected_r2(sim.trials, -2.5 * sim.predictions + 40.0), base, rtol=1e-9)


def test_undefined_neurons_give_nan() -> None:
    """NaN for: constant responses, constant predictions, no image with 2+ repeats, and no
    stimulus-driven variance (image means equal, or varying less than the noise predicts, where
    FEV is negative instead); other neurons are unaffected."""
    rng = np.random.default_rng(3)
    images = 30
    trials = rng.poisson(2.0 + 20.0 * rng.random((6, images, 1)), (6, images, 4)).astype(np.float64)
    predictions = rng.normal(size=(6, images))
    trials[0] = 4.0  # constant responses
    predictions[1] = 2.0  # constant predictions
    trials[2, :, 1:] = np.nan  # a single repeat on every image: sigma^2 unknown
    trials[3:5] = np.array([0.0, 2.0, 1.0, 1.0])  # trials vary, image means do not ...
    trials[4, 0, 3] = 1.2  # ... or hardly: the noise exceeds the variance of the means
    r2er = noise_corrected_r2(trials, predictions)
    assert np.isnan(r2er[:5]).all() and np.isfinite(r2er[5])
    fev = fraction_explainable_variance(trials)
    assert np.isnan(fev[[0, 2, 3]]).all() and np.isfinite(fev[[1, 5]]).all()
    assert fev[4] < 0
    assert np.isnan(pearson_r(trials[:, :, 0], predictions)[[0, 1]]).all()


def test_pearson_r_and_raw_r2() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(6, 25)), rng.normal(size=(6, 25))
    expected = [np.corrcoef(u, v)[0, 1] for u, v in zip(a, b)]
    np.testing.assert_allclose(pearson_r(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(raw_r2(a, b), np.square(expected), rtol=1e-12)
    np.testing.assert_allclose(pearson_r(a, -3 * a + 1), -1.0)
    np.testing.assert_allclose(raw_r2(a, 2 * a - 5), 1.0)


@pytest.mark.parametrize(
    ("responses", "predictions", "message"),
    [
        (np.ones((2, 5)), np.ones((2, 5)), "needs the single-trial responses"),
        (np.ones((2, 5, 3, 1)), np.ones((2, 5)), r"\(neurons, images, repeats\)"),
        (np.ones((2, 5, 3)), np.ones((2, 4)), r"shape \(2, 4\).*\(2, 5\)"),
        (np.ones((2, 5, 3)), np.ones((2, 5, 1)), r"predictions must have shape \(neurons, images\)"),
        (np.full((2, 5, 3), np.nan), np.ones((2, 5)), "all NaN"),
        (np.full((2, 5, 3), np.inf), np.ones((2, 5)), "inf"),
        (np.ones((2, 1, 3)), np.ones((2, 1)), "at least 2 images"),
        (np.ones((0, 5, 3)), np.ones((0, 5)), "empty"),
        (np.ones((2, 5, 3)), np.full((2, 5), np.nan), "predictions contain NaN"),
    ],
)
def test_bad_inputs_raise_helpful_errors(responses: np.ndarray, predictions: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        noise_corrected_r2(responses, predictions)


def test_bad_inputs_of_the_other_metrics() -> None:
    with pytest.raises(ValueError, match="needs the single-trial responses"):
        fraction_explainable_variance(np.ones((2, 5)))
    with pytest.raises(ValueError, match="all NaN"):
        fraction_explainable_variance(np.full((2, 5, 3), np.nan))
    with pytest.raises(ValueError, match=r"b has shape \(2, 6\)"):
        pearson_r(np.ones((2, 5)), np.ones((2, 6)))
    with pytest.raises(ValueError, match=r"responses_mean must have shape \(neurons, images\)"):
        raw_r2(np.ones((2, 5, 3)), np.ones((2, 5)))


def test_importing_the_metrics_and_data_loads_neither_torch_nor_the_engine() -> None:
    code = ("import sys, compactcortex.metrics, compactcortex.data; "
            "bad = [m for m in ('torch', 'compactcortex._engine') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr[-500:]
    # the public names still arrive on first use
    code = "import compactcortex as cc; assert cc.Predictor and cc.available_isas() and cc.Plan"
    run = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-500:]


def test_pearson_r1_is_one_row_of_pearson_r() -> None:
    from compactcortex.metrics import pearson_r1

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=7), rng.normal(size=7).astype(np.float32)
    assert pearson_r1(a, b) == float(pearson_r(a[None], b[None].astype(np.float64))[0])
    assert np.isnan(pearson_r1(np.ones(5), a[:5]))
