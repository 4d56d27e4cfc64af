"""The refractory time's verification on a harder chip, against the setting it checks: neurons
whose threshold sits near the top of their leak's range are measured too."""

from __future__ import annotations

import numpy as np
import pytest

from calib.routines.refractory import (
    VERIFY_TOLERANCE,
    _measure,
    measure_refractory_time,
    refractory_settings,
    refractory_time,
)
from device_model import SimulatedChip


@pytest.fixture(scope="module")
def chip() -> SimulatedChip:
    return SimulatedChip("refractory-verify-7", mismatch_scale=1.3, noise_scale=1.5)


def test_a_threshold_near_the_leaks_top_is_still_verified(chip):
    settings = refractory_settings(np.full(512, 2e-6))
    chip.write(settings)
    expected = refractory_time(settings["refractory_counter"], settings["refractory_clock_scale"])
    high = np.arange(0, 512, 8)
    threshold = np.full(512, 550, dtype=np.int64)
    threshold[high] = 1015  # just below the leak's top code: a slow rise, or none at all
    chip.write({"v_threshold": threshold})
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    # at the calibrated threshold most of these cannot be told from their jitter, or never fire
    plain, _ = _measure(chip, settings, None)
    off = ~(np.abs(plain.measured / expected - 1) <= VERIFY_TOLERANCE)
    assert np.mean(off[high[healthy[high]]]) >= 0.5
    check = measure_refractory_time(chip, settings)
    error = np.abs(check.measured / expected - 1)
    assert np.all(error[healthy] <= VERIFY_TOLERANCE)
    assert np.all(check.why[healthy] == "")
    # the verification leaves the threshold as it found it
    np.testing.assert_array_equal(chip.read_settings(["v_threshold"])["v_threshold"], threshold)


def test_a_threshold_just_above_the_reset_is_still_verified(chip):
    """With the reset clamp at its lowest code, pulled up by the leak at its top, a low
    threshold can sit just above where the clamp holds the membrane: such a neuron fires
    faster than the counter counts, and is measured with its threshold moved up."""
    settings = refractory_settings(np.full(512, 2e-6))
    chip.write(settings)
    expected = refractory_time(settings["refractory_counter"], settings["refractory_clock_scale"])
    threshold = np.full(512, 100, dtype=np.int64)
    chip.write({"v_threshold": threshold})
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    plain, _ = _measure(chip, settings, None)
    too_fast = healthy & np.array(["faster than" in why for why in plain.why])
    assert too_fast.sum() >= 2
    check = measure_refractory_time(chip, settings)
    error = np.abs(check.measured / expected - 1)
    assert np.all(error[too_fast] <= VERIFY_TOLERANCE)
    assert np.all(error[healthy & np.isfinite(plain.measured)] <= VERIFY_TOLERANCE)
    np.testing.assert_array_equal(chip.read_settings(["v_threshold"])["v_threshold"], threshold)
