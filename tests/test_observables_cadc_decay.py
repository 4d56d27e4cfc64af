"""Membrane decays read with the CADC (observables/cadc_decay.py), against the ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from calib import NeuronTarget
from calib.routines.membrane import RELEASE_TIME, cadc_decays_usable
from calib.sequences.lif import NeuronCalibration
from device_model import SimulatedChip
from observables.cadc_decay import cadc_decay_time_constants, read_offsets


@pytest.fixture(scope="module")
def quiet_chip() -> SimulatedChip:
    """A harder chip with a calibrated CADC, quiet neurons resting at about 90 LSB and
    per-neuron membrane time constants of 3..25 us."""
    chip = SimulatedChip("decay-probe-41", mismatch_scale=1.3, noise_scale=1.5)
    calibration = NeuronCalibration(chip, NeuronTarget())
    dict(calibration.steps)["cadc"]()
    leak = chip.ideal_codes("leak", 90.0)
    chip.write(
        {
            "v_leak": leak,
            "v_reset": np.clip(leak - 150, 0, None),
            "threshold_enable": 0,
            "reset_hold": 0,
        }
    )
    chip.write({"i_bias_leak": chip.ideal_codes("tau_mem", np.geomspace(3e-6, 25e-6, 512))})
    return chip


def test_per_neuron_decays_agree_with_the_truth(quiet_chip: SimulatedChip) -> None:
    truth = quiet_chip.true_quantities()["tau_mem"]
    measured = cadc_decay_time_constants(quiet_chip, truth, 256, RELEASE_TIME)
    relative = measured / truth - 1
    assert np.mean(np.isfinite(relative)) >= 0.98
    assert abs(np.nanmedian(relative)) <= 0.005
    assert np.nanpercentile(np.abs(relative), 95) <= 0.02


def test_more_samples_read_more_precisely(quiet_chip: SimulatedChip) -> None:
    truth = quiet_chip.true_quantities()["tau_mem"]

    def scatter(samples: int) -> float:
        first, second = (
            cadc_decay_time_constants(quiet_chip, truth, samples, RELEASE_TIME) for _ in range(2)
        )
        return float(np.sqrt(np.nanmean(((first - second) / truth) ** 2)))

    assert scatter(256) < 0.7 * scatter(32)


def test_an_uncalibrated_cadc_reads_no_decay_and_is_not_used() -> None:
    chip = SimulatedChip("decay-probe-42")
    chip.write({"threshold_enable": 0, "reset_hold": 0})
    measured = cadc_decay_time_constants(chip, 10e-6, 16, RELEASE_TIME)
    assert not cadc_decays_usable(measured)


def test_the_reads_span_the_expected_decays() -> None:
    offsets = read_offsets(np.array([2e-6, 30e-6]))
    assert offsets[0] < 2e-6 and offsets[-1] >= 30e-6
    assert np.all(np.diff(offsets) > 0)
