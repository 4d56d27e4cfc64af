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


class ClippedStartDevice:
    """Decays of 1 us back to a rest of 100 LSB, 60 LSB deep; the odd neurons start at a rail
    40 LSB below the rest, which their decay leaves only after about half a time constant."""

    n_neurons = 64

    def __init__(self) -> None:
        self.rng = np.random.default_rng(5)
        self.depth = np.where(np.arange(self.n_neurons) % 2 == 1, 40.0, np.inf)

    def read_cadc(self, samples: int = 1, stimulus=None, read_time: float | None = None):
        shape = (samples, self.n_neurons)
        potential = np.full(self.n_neurons, 100.0)
        if read_time is not None:
            since = read_time - RELEASE_TIME
            potential = potential - np.minimum(60.0 * np.exp(-since / 1e-6), self.depth)
        noisy = potential + self.rng.standard_normal(shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def test_a_decay_that_starts_at_a_rail_is_not_read_as_one_exponential() -> None:
    device = ClippedStartDevice()
    expected = np.array([0.8e-6, 1.25e-6])
    plain = cadc_decay_time_constants(device, expected, 512, RELEASE_TIME)
    checked = cadc_decay_time_constants(device, expected, 512, RELEASE_TIME, consistency=0.05)
    clean, clipped = slice(0, None, 2), slice(1, None, 2)
    assert np.all(np.abs(plain[clipped] / 1e-6 - 1) > 0.05)  # biased without the check
    assert np.isnan(checked[clipped]).all()
    assert np.mean(np.isfinite(checked[clean])) >= 0.95
    np.testing.assert_allclose(checked[clean][np.isfinite(checked[clean])], 1e-6, rtol=0.02)
