"""The threshold reading's overshoot correction on synthetic firing cycles of known threshold."""

from __future__ import annotations

import numpy as np
import pytest

from calib.routines.neuron_potentials import (
    THRESHOLD_READS,
    THRESHOLD_SAMPLES,
    approach_bias,
    maxima_bias,
)

NEURONS = 256


def firing_samples(threshold: np.ndarray, drive: float, reset: float, seed: int) -> np.ndarray:
    """CADC codes (samples, neurons) at random phases of a membrane that rises exponentially
    from `reset` towards `drive` and resets at `threshold`, read with 1 LSB noise."""
    rng = np.random.default_rng(seed)
    # time to threshold in units of the membrane constant
    cycle = np.log((drive - reset) / (drive - threshold))
    phase = rng.uniform(size=(THRESHOLD_SAMPLES * THRESHOLD_READS, threshold.size)) * cycle
    volts = drive - (drive - reset) * np.exp(-phase)
    return np.clip(np.rint(volts + rng.standard_normal(volts.shape)), 0, 255)


@pytest.mark.parametrize("drive", [240.0, 370.0], ids=["drive near", "drive far"])
def test_the_threshold_is_recovered_whether_the_drive_is_near_or_far(drive):
    threshold = np.random.default_rng(1).uniform(218.0, 222.0, NEURONS)
    codes = firing_samples(threshold, drive, 150.0, seed=2)
    maxima = codes.reshape(THRESHOLD_READS, THRESHOLD_SAMPLES, -1).max(axis=1).mean(axis=0)
    estimate = maxima - approach_bias(codes, maxima, np.full(NEURONS, drive))
    assert abs(np.mean(estimate - threshold)) < 0.08
    assert np.sqrt(np.mean((estimate - threshold) ** 2)) < 0.3


def test_a_slow_approach_defeats_the_linear_density_estimate():
    """The reason for the drive: 20 LSB below it, the density rises too steeply to extrapolate
    linearly, and the old estimate misses by several tenths."""
    threshold = np.random.default_rng(3).uniform(218.0, 222.0, NEURONS)
    codes = firing_samples(threshold, 240.0, 150.0, seed=4)
    maxima = codes.reshape(THRESHOLD_READS, THRESHOLD_SAMPLES, -1).max(axis=1).mean(axis=0)
    linear = maxima - maxima_bias(codes, maxima)
    modelled = maxima - approach_bias(codes, maxima, np.full(NEURONS, 240.0))
    assert abs(np.mean(modelled - threshold)) < 0.5 * abs(np.mean(linear - threshold))
