"""Decay time constants from synthetic MADC traces (batch fitter)."""

import numpy as np

from device_model.protocol import MADC_INVALID_TIME, MADC_SAMPLE_RATE, Trace
from observables import decay_time_constants
from observables.traces import volts_to_madc

RELEASE = 10e-6


def decay_trace(taus, duration, *, noise_lsb=1.5, seed=0):
    rng = np.random.default_rng(seed)
    times = np.arange(int(duration * MADC_SAMPLE_RATE)) / MADC_SAMPLE_RATE
    elapsed = np.clip(times - RELEASE, 0.0, None)
    volts = 0.55 - 0.2 * np.exp(-elapsed[None, :] / np.asarray(taus)[:, None])
    codes = np.round(volts_to_madc(volts) + noise_lsb * rng.standard_normal(volts.shape))
    return Trace(
        neurons=np.arange(len(taus)),
        times=times,
        codes=np.clip(codes, 0, 1023),
        valid=times >= MADC_INVALID_TIME,
    )


def test_batch_recovers_tau_of_noisy_decays():
    taus = np.geomspace(1e-6, 20e-6, 32)
    outcome = decay_time_constants(decay_trace(taus, RELEASE + 100e-6), RELEASE)
    assert outcome.success.all()
    np.testing.assert_allclose(outcome.params["tau"], taus, rtol=0.03)
