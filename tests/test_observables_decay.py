"""Decay time constants: the batch fitter against lmfit, accuracy, uncertainties and flags."""

import numpy as np
import pytest

from device_model.protocol import Trace
from observables import decay_time_constants
from observables.synthetic import decay_trace

RELEASE = 10e-6

# Groups of time constants, each recorded over a window of about five of them, spanning the
# range the fitter must handle (0.2 us .. 100 us at 29.4 MSa/s).
TAU_GROUPS = [
    ([0.2e-6, 0.35e-6, 0.6e-6, 1e-6], 5e-6),
    ([2e-6, 3.5e-6, 6e-6, 10e-6], 50e-6),
    ([20e-6, 35e-6, 60e-6, 100e-6], 500e-6),
]


@pytest.mark.parametrize(("taus", "window"), TAU_GROUPS)
def test_batch_agrees_with_lmfit_within_one_percent_on_clean_traces(taus, window):
    trace = decay_trace(taus, RELEASE + window, release_time=RELEASE, noise_lsb=0.0)
    batch = decay_time_constants(trace, RELEASE)
    reference = decay_time_constants(trace, RELEASE, method="lmfit")
    assert batch.success.all() and reference.success.all()
    np.testing.assert_allclose(batch["tau"], reference["tau"], rtol=0.01)
    np.testing.assert_allclose(batch["tau"], taus, rtol=0.01)


@pytest.mark.parametrize(("taus", "window"), TAU_GROUPS)
def test_both_fitters_recover_tau_within_five_percent_at_chip_noise(taus, window):
    # Noise 1.5 LSB on a 0.2 V (125 LSB) decay.
    trace = decay_trace(taus, RELEASE + window, release_time=RELEASE, seed=7)
    for method in ("batch", "lmfit"):
        outcome = decay_time_constants(trace, RELEASE, method=method)
        assert outcome.success.all(), outcome.failures()
        np.testing.assert_allclose(outcome["tau"], taus, rtol=0.05)


def test_uncertainties_cover_the_true_value():
    rng = np.random.default_rng(11)
    taus = 10e-6 * rng.lognormal(0.0, 0.25, 300)
    trace = decay_trace(taus, RELEASE + 50e-6, release_time=RELEASE, noise_lsb=3.0, seed=5)
    outcome = decay_time_constants(trace, RELEASE)
    pulls = (outcome["tau"] - taus) / outcome.stderr["tau"]
    assert np.mean(np.abs(pulls) < 3.0) > 0.97
    assert 0.75 < np.std(pulls) < 1.3
    assert np.all(np.abs(outcome.redchi - 1.0) < 0.3)


def test_bad_neurons_are_flagged_while_the_others_fit():
    taus = np.array([4e-6, 5e-6, 6e-6, 7e-6])
    trace = decay_trace(taus, RELEASE + 40e-6, release_time=RELEASE)
    codes = trace.codes.copy()
    codes[0, 700] = np.nan
    codes[1] = 600.0
    valid = np.broadcast_to(trace.valid, codes.shape).copy()
    valid[2, 300:] = False  # six valid samples after the release
    broken = Trace(trace.neurons, trace.times, codes, valid)
    for method in ("batch", "lmfit"):
        outcome = decay_time_constants(broken, RELEASE, method=method)
        assert outcome.reasons[0] == "NaN in trace"
        assert outcome.reasons[1].startswith("flat trace")
        assert outcome.reasons[2].startswith("too few valid samples")
        np.testing.assert_array_equal(outcome.success, [False, False, False, True])
        assert np.isnan(outcome["tau"][:3]).all()
        assert outcome["tau"][3] == pytest.approx(7e-6, rel=0.05)
        assert set(outcome.failures()) == {0, 1, 2}


def test_a_trace_the_model_does_not_describe_is_a_poor_fit():
    trace = decay_trace([5e-6, 5e-6], RELEASE + 40e-6, release_time=RELEASE, seed=2)
    codes = trace.codes.copy()
    codes[1] += np.round(15 * np.sin(2 * np.pi * trace.times / 4e-6))  # a 15 LSB oscillation
    outcome = decay_time_constants(Trace(trace.neurons, trace.times, codes, trace.valid), RELEASE)
    assert outcome.success[0]
    assert outcome.reasons[1].startswith("poor fit: reduced chi-square")
    assert np.isnan(outcome["tau"][1]) and np.isfinite(outcome.fitted["tau"][1])


def test_a_decay_far_slower_than_the_window_is_not_used():
    # 200 us seen through 20 us: a 12 LSB slope whose curvature is lost in the noise.
    trace = decay_trace([2e-6, 200e-6, 5e-3], RELEASE + 20e-6, release_time=RELEASE, seed=4)
    outcome = decay_time_constants(trace, RELEASE)
    assert outcome.success[0]
    assert outcome.reasons[1].startswith(("uncertain fit", "tau"))
    assert outcome.reasons[2].startswith("flat trace")  # under one LSB of change


def test_neurons_keep_the_order_of_the_trace():
    taus = np.array([3e-6, 9e-6, 5e-6])
    trace = decay_trace(taus, RELEASE + 50e-6, release_time=RELEASE, seed=1)
    shuffled = Trace(np.array([7, 500, 3]), trace.times, trace.codes, trace.valid)
    outcome = decay_time_constants(shuffled, RELEASE)
    np.testing.assert_array_equal(outcome.neurons, [7, 500, 3])
    full = outcome.per_neuron("tau", 512)
    np.testing.assert_allclose(full[[7, 500, 3]], taus, rtol=0.05)
    assert np.isnan(np.delete(full, [7, 500, 3])).all()


def test_unknown_method_raises_naming_it():
    trace = decay_trace([3e-6], RELEASE + 20e-6, release_time=RELEASE)
    with pytest.raises(ValueError, match="method"):
        decay_time_constants(trace, RELEASE, method="scipy")
    with pytest.raises(ValueError, match="max_redchi"):
        decay_time_constants(trace, RELEASE, max_redchi=-1.0)
