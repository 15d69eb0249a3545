"""The digital V4 population: determinism, Poisson trials, localized and diverse model neurons,
the noise ceiling against Monte Carlo, and the save/load round trip.

Expectations come from the documented model and from Poisson statistics, not from earlier
outputs of the implementation.
"""
import json

import numpy as np
import pytest

from compactcortex.data.digital import (CHANNEL_CLASS, CHANNELS, FEATURE_CLASSES, digital_population,
                                        load_digital_population, save_digital_population)
from compactcortex.data import digital
from compactcortex.data.procedural import procedural

from helpers import RECORDED, response_statistics

N_NEURONS, N_IMAGES, REPEATS, MIN_REPEATS, SEED = 16, 600, 8, 3, 3


@pytest.fixture(scope="module")
def pop():
    return digital_population(N_NEURONS, N_IMAGES, REPEATS, seed=SEED, min_repeats=MIN_REPEATS)


def _repeats(raw: np.ndarray) -> np.ndarray:
    """(N,) trials per image, from the NaN padding of raw (neurons, N, repeats)."""
    return (~np.isnan(raw[0])).sum(axis=1)


def _pixel_distance(center: np.ndarray) -> np.ndarray:
    """(112, 112) distance of each pixel centre from center (x, y), image px."""
    y, x = np.mgrid[0:112, 0:112] + 0.5
    return np.hypot(x - center[0], y - center[1])


def test_shapes_and_layout(pop):
    s = pop.session
    assert s.images.shape == (N_IMAGES, 112, 112, 3) and s.images.dtype == np.uint8
    np.testing.assert_array_equal(s.images, procedural(N_IMAGES, SEED))
    assert s.raw.shape == (N_NEURONS, N_IMAGES, REPEATS) and s.responses.shape == (N_NEURONS, N_IMAGES)
    n_rep = _repeats(s.raw)
    assert n_rep.min() >= MIN_REPEATS and n_rep.max() <= REPEATS and len(np.unique(n_rep)) > 1
    # NaN padding: the same trials are missing for every neuron, and only at the end.
    np.testing.assert_array_equal(np.isnan(s.raw), np.broadcast_to(np.isnan(s.raw[:1]), s.raw.shape))
    np.testing.assert_array_equal(np.arange(REPEATS)[None, :] < n_rep[:, None], ~np.isnan(s.raw[0]))
    np.testing.assert_array_equal(s.responses, np.nanmean(s.raw, axis=2))
    finite = s.raw[~np.isnan(s.raw)]
    assert (finite >= 0).all() and (finite == np.round(finite)).all(), "trials are counts"


def test_deterministic_and_seeded():
    a = digital_population(3, 12, 4, seed=7)
    b = digital_population(3, 12, 4, seed=7)
    c = digital_population(3, 12, 4, seed=8)
    np.testing.assert_array_equal(a.session.raw, b.session.raw)
    np.testing.assert_array_equal(a.true_rates, b.true_rates)
    for k, v in a.parameters().items():
        np.testing.assert_array_equal(v, b.parameters()[k])
    assert not np.array_equal(a.neurons.rf_center, c.neurons.rf_center)
    assert not np.array_equal(a.session.images, c.session.images)


def test_poisson_trials(pop):
    """Trial means scatter around the true rate with variance rate/R, and trial variances equal the mean."""
    raw, rate = pop.session.raw, pop.true_rates
    n_rep = _repeats(raw)[None, :].astype(float)
    mean = np.nanmean(raw, axis=2)
    # Sum of (mean - rate) over all cells: zero mean, variance sum(rate / R).
    total = (mean - rate).sum()
    assert abs(total) < 5 * np.sqrt((rate / n_rep).sum())
    # Standardised squared deviations: mean 1; for a Poisson total of mean mu = rate R, the
    # variance of (S - mu)^2 / mu is 2 + 1/mu.
    z2 = (mean - rate) ** 2 / (rate / n_rep)
    assert abs(z2.mean() - 1) < 5 * np.sqrt((2 + 1 / (rate * n_rep)).mean() / z2.size)
    # Sample variance across trials: E[s^2] = rate; Var(s^2) = mu4/R - sigma^4 (R-3)/(R(R-1)),
    # with sigma^2 = rate and mu4 = rate + 3 rate^2 for a Poisson count.
    s2 = np.nanvar(raw, axis=2, ddof=1)
    var_s2 = (rate + 3 * rate ** 2) / n_rep - rate ** 2 * (n_rep - 3) / (n_rep * (n_rep - 1))
    assert abs((s2 - rate).sum()) < 5 * np.sqrt(var_s2.sum())


def test_rates_plausible(pop):
    rate = pop.true_rates
    assert rate.shape == (N_NEURONS, N_IMAGES) and rate.dtype == np.float64
    assert np.isfinite(rate).all() and (rate > 0).all()
    # By construction (data/digital.py, step 4) the mean rate on the calibration images is each
    # neuron's target: 0.5-1.5 spikes per 100 ms for the sparse neurons, 1.5-6 for the others.
    calibration = procedural(digital._CALIBRATION_IMAGES, SEED, start=digital._CALIBRATION_START)
    target = pop.rates(calibration).mean(axis=1)
    assert target.min() >= 0.5 * (1 - 1e-5) and target.max() <= 6.0 * (1 + 1e-5)
    # On other images: mean rates within the range of the recorded neurons' (helpers.RECORDED),
    # and every neuron modulated at least as much as the least modulated recorded one.
    stats = response_statistics(rate)
    assert min(RECORDED["mean_rate_min"]) <= stats["mean_rate_min"]
    assert stats["mean_rate_max"] <= max(RECORDED["mean_rate_max"])
    assert stats["peak_to_mean_min"] >= min(RECORDED["peak_to_mean_min"]), "every neuron is modulated by the images"
    np.testing.assert_array_equal(pop.rates(pop.session.images[:5]), rate[:, :5])


def test_neurons_differ(pop):
    corr = np.corrcoef(pop.true_rates)[np.triu_indices(N_NEURONS, 1)]
    assert corr.max() < 0.99, "no two neurons are copies"
    # About as alike as recorded neurons (measured here: median |r| 0.14 against 0.11-0.13; 0.18
    # for a 24-neuron population): at most twice.
    assert response_statistics(pop.true_rates)["signal_correlation_abs_median"] < 2 * max(
        RECORDED["signal_correlation_abs_median"])
    p = pop.parameters()
    assert p["weights"].shape == (N_NEURONS, len(CHANNELS)) and p["class_mix"].shape == (N_NEURONS, 4)
    np.testing.assert_allclose(p["class_mix"].sum(axis=1), 1.0)
    dominant = p["class_mix"].argmax(axis=1)
    assert len(np.unique(dominant)) >= 3, "the neurons' mixes favour different feature classes"


def test_receptive_fields_are_local(pop):
    """Pixels beyond rf_reach of the RF centre do not change a rate; pixels at the centre do."""
    images = procedural(3, 11)
    base = pop.rates(images)
    rng = np.random.default_rng(0)
    params = pop.parameters()
    for k in range(N_NEURONS):
        dist = _pixel_distance(params["rf_center"][k])
        far = dist > params["rf_reach"][k]
        assert far.sum() > 500, "the documented reach leaves part of the image outside"
        changed = images.copy()
        changed[:, far] = rng.integers(0, 256, (len(images), far.sum(), 3))
        assert np.abs(pop.rates(changed)[k] - base[k]).max() < 1e-5 * base[k].max()  # float32 features
        changed = images.copy()
        near = dist < params["rf_sigma"][k]
        changed[:, near] = rng.integers(0, 256, (len(images), near.sum(), 3))
        assert (np.abs(pop.rates(changed)[k] - base[k]) / base[k]).max() > 1e-2


def test_orientation_tuning():
    """A neuron driven by orientation energy prefers gratings at its most-weighted orientation."""
    pop = digital_population(40, 2, 1, seed=1)
    p = pop.parameters()
    ori = CHANNEL_CLASS == FEATURE_CLASSES.index("orientation")
    tuned = np.flatnonzero(p["class_mix"][:, 0] > 0.6)
    assert len(tuned) >= 2
    y, x = np.mgrid[0:112, 0:112] + 0.5
    for k in tuned:
        w = p["weights"][k, ori].reshape(2, 8)  # (wavelength 8, 16 px) x 8 orientations
        scale, o = np.unravel_index(w.argmax(), w.shape)
        wavelength = (8.0, 16.0)[scale]
        rates = []
        for theta in (np.pi * o / 8, np.pi * o / 8 + np.pi / 2):
            # Stripes along theta (from the x axis towards +y): the intensity varies along the normal.
            phase = 2 * np.pi / wavelength * (-np.sin(theta) * x + np.cos(theta) * y)
            grating = 110 + 70 * np.cos(phase[None, :, :, None] + np.array([0, np.pi / 2])[:, None, None, None])
            rates.append(pop.rates(np.broadcast_to(grating, (2, 112, 112, 3)).astype(np.uint8))[k].mean())
        assert rates[0] > rates[1], f"neuron {k}: preferred {rates[0]:.2f} <= orthogonal {rates[1]:.2f}"


def test_noise_ceiling_matches_monte_carlo(pop):
    """Simulated repeat means (Poisson totals over each image's trials) correlate with the true
    rates as predicted, to within Monte-Carlo error plus the O(1/N) error of the formula."""
    rate, n_rep = pop.true_rates, _repeats(pop.session.raw)
    rng = np.random.default_rng(1)
    sims = 300
    means = rng.poisson(rate * n_rep, size=(sims, *rate.shape)) / n_rep
    a = means - means.mean(axis=2, keepdims=True)
    b = rate - rate.mean(axis=1, keepdims=True)
    r2 = ((a * b).sum(axis=2) ** 2 / ((a * a).sum(axis=2) * (b * b).sum(axis=1)))  # (sims, neurons)
    se = r2.std(axis=0, ddof=1) / np.sqrt(sims)
    ceiling = pop.noise_ceiling
    assert ceiling.shape == (N_NEURONS,) and ((0 < ceiling) & (ceiling < 1)).all()
    np.testing.assert_array_less(np.abs(r2.mean(axis=0) - ceiling), 4 * se + 2.0 / N_IMAGES)
    # The recorded session is one more draw from the same distribution.
    recorded = np.array([np.corrcoef(pop.session.responses[k], rate[k])[0, 1] ** 2 for k in range(N_NEURONS)])
    np.testing.assert_array_less(np.abs(recorded - ceiling), 5 * r2.std(axis=0) + 2.0 / N_IMAGES)


def test_save_load_round_trip(tmp_path):
    pop = digital_population(4, 10, 3, seed=2, min_repeats=1, name="orig")
    path = save_digital_population(pop, tmp_path, name="mine")
    assert path == tmp_path / "digital" / "mine.json"
    assert sorted(p.name for p in path.parent.iterdir()) == ["mine.json"], "no temporary files left"
    doc = json.loads(path.read_text())
    assert doc["format"] and doc["version"] == 1
    back = load_digital_population(tmp_path, "mine")
    assert back.session.name == "mine"
    np.testing.assert_array_equal(back.session.images, pop.session.images)
    np.testing.assert_array_equal(back.session.responses, pop.session.responses)
    np.testing.assert_array_equal(back.session.raw, pop.session.raw)  # NaNs in the same places
    for k, v in pop.parameters().items():
        np.testing.assert_array_equal(back.parameters()[k], v)
    fresh = procedural(6, 99)
    np.testing.assert_array_equal(back.rates(fresh), pop.rates(fresh))
    np.testing.assert_array_equal(back.true_rates, pop.true_rates)
    np.testing.assert_array_equal(back.noise_ceiling, pop.noise_ceiling)
    assert back.generator == pop.generator


def test_load_errors(tmp_path):
    with pytest.raises(ValueError, match="missing"):
        load_digital_population(tmp_path, "nothing")
    pop = digital_population(2, 4, 2, seed=0)
    path = save_digital_population(pop, tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ValueError, match="not a valid digital population"):
        load_digital_population(tmp_path)
    path.write_text(json.dumps({**json.loads(text), "format": "something else"}))
    with pytest.raises(ValueError, match="format"):
        load_digital_population(tmp_path)
    doc = json.loads(text)
    doc["neurons"]["weights"] = doc["neurons"]["weights"][:1]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="weights"):
        load_digital_population(tmp_path)


def test_bad_arguments(pop):
    with pytest.raises(ValueError):
        digital_population(2, 10, repeats=3, min_repeats=4)
    with pytest.raises(ValueError):
        digital_population(0, 10)
    with pytest.raises(ValueError, match="images must be"):
        pop.rates(np.zeros((2, 56, 56, 3), np.uint8))
