"""The full LIF calibration on the simulated chip, judged against the chip's ground truth."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from calib import NeuronTarget, calibrate
from calib.algorithms.base import RoutineFailed
from device_model import SimulatedChip
from device_model.oracle import QUANTITY_CELLS
from device_model.protocol import Device, DeviceStats

# Largest allowed ratio of the calibrated spread to the spread with every neuron at the
# median calibrated code (calix's hardware tests accept 0.30, 0.20, 0.35, 0.45, 0.20).
SPREAD_RATIO_LIMITS = {
    "leak": 0.15,
    "reset": 0.10,
    "threshold": 0.20,
    "tau_mem": 0.25,
    "tau_syn_exc": 0.10,
    "tau_syn_inh": 0.10,
}
NON_DEFAULT = NeuronTarget(
    leak=100,
    reset=80,
    threshold=150,
    tau_mem=20e-6,
    tau_syn_exc=5e-6,
    tau_syn_inh=3e-6,
    psp_amplitude_exc=12,
    psp_amplitude_inh=8,
    refractory_time=4e-6,
)
"""A shorter synaptic time constant carries less charge per event: smaller PSP targets."""


class ProtocolOnly:
    """Exposes nothing but the device protocol (no ground truth, no oracle)."""

    def __init__(self, device: Device) -> None:
        self._device = device
        self.chip_id = device.chip_id
        self.n_neurons = device.n_neurons

    @property
    def stats(self) -> DeviceStats:
        return self._device.stats

    def write(self, settings):
        return self._device.write(settings)

    def read_settings(self, names: Sequence[str] | None = None):
        return self._device.read_settings(names)

    def read_cadc(self, samples=1, stimulus=None, read_time=None):
        return self._device.read_cadc(samples, stimulus, read_time)

    def record_madc(self, neurons, duration, stimulus=None):
        return self._device.record_madc(neurons, duration, stimulus)

    def count_spikes(self, duration, stimulus=None):
        return self._device.count_spikes(duration, stimulus)


CASES = [("chip-a", NeuronTarget()), ("chip-b", NeuronTarget()), ("chip-c", NON_DEFAULT)]


@pytest.fixture(scope="module", params=CASES, ids=lambda case: f"{case[0]}")
def calibrated(request):
    chip_id, target = request.param
    chip = SimulatedChip(chip_id)
    result = calibrate(ProtocolOnly(chip), target)
    return chip, target, result


def test_most_neurons_reach_the_target(calibrated):
    _, _, result = calibrated
    assert result.success.mean() >= 0.97, result.summary()


def test_every_failed_neuron_has_a_reason(calibrated):
    _, _, result = calibrated
    assert set(result.failures()) == set(np.flatnonzero(~result.success).tolist())
    assert all(reason for reason in result.failures().values())


@pytest.mark.parametrize("quantity", list(SPREAD_RATIO_LIMITS))
def test_calibration_shrinks_the_spread(calibrated, quantity):
    chip, _, result = calibrated
    ok = result.success
    truth = chip.true_quantities()[quantity][ok]
    settings = result.to_settings()
    median_code = int(np.median(settings[QUANTITY_CELLS[quantity]]))
    uniform = chip.true_quantities({QUANTITY_CELLS[quantity]: median_code})[quantity][ok]
    ratio = np.std(truth) / np.std(uniform)
    assert ratio <= SPREAD_RATIO_LIMITS[quantity], f"{quantity}: spread ratio {ratio:.3f}"


@pytest.mark.parametrize("quantity", ["tau_mem", "tau_syn_exc", "tau_syn_inh"])
def test_the_uncalibrated_spread_read_off_the_curves_agrees_with_the_truth(calibrated, quantity):
    """The time constants' `before` comes from the search's fitted curves, not a device run:
    it must still be what the chip does with every neuron at the median code."""
    chip, _, result = calibrated
    settings = result.to_settings()
    cell = QUANTITY_CELLS[quantity]
    median_code = int(np.rint(np.median(settings[cell])))
    uniform = chip.true_quantities({**settings, cell: np.full(512, median_code)})[quantity]
    relative = np.abs(result.before[quantity] / uniform - 1)
    assert np.mean(np.isfinite(relative)) >= 0.99
    # a neuron calibrated far from the median code (a gross gain defect) is read off its curve
    # far from its points: the bulk must agree closely, the tail within a few percent
    assert np.nanmedian(relative) <= 0.005, quantity
    assert np.nanpercentile(relative, 95) <= 0.02, quantity


def test_achieved_values_agree_with_the_truth(calibrated):
    chip, target, result = calibrated
    truth = chip.true_quantities()
    ok = result.success
    for name in ("leak", "reset", "tau_mem", "tau_syn_exc"):
        median_truth = np.median(truth[name][ok])
        median_goal = np.median(target.quantities()[name])
        assert median_truth == pytest.approx(median_goal, rel=0.05), name


def test_result_applied_to_a_fresh_instance_reproduces_it(calibrated):
    chip, _, result = calibrated
    again = SimulatedChip(chip.chip_id)
    result.apply(again)
    np.testing.assert_allclose(
        again.true_quantities()["tau_mem"], chip.true_quantities()["tau_mem"]
    )


def test_ideal_chip_has_no_failures():
    result = calibrate(SimulatedChip("ideal", mismatch_scale=0.0, noise_scale=0.5))
    assert result.success.all(), result.failures()


def test_bad_target_is_refused_before_the_device_is_touched():
    chip = SimulatedChip("untouched")
    with pytest.raises(ValueError, match="tau_mem"):
        calibrate(chip, NeuronTarget(tau_mem=200e-6))
    assert chip.stats.runs == 0 and chip.stats.writes == 0


def test_persistent_device_faults_name_the_chip_and_step():
    from device_model.chip import Faults

    chip = SimulatedChip("broken", faults=Faults(run_failure_rate=1.0))
    with pytest.raises(RoutineFailed, match="chip 'broken', step 'cadc'"):
        calibrate(chip)


@pytest.mark.slow
def test_transient_faults_anywhere_are_retried_and_counted():
    from device_model.chip import Faults

    chip = SimulatedChip(
        "flaky-calibration",
        faults=Faults(run_failure_rate=0.03, dead_fraction=0.0, stuck_fraction=0.0),
    )
    result = calibrate(chip)
    retried = result.provenance.retries
    assert sum(retried.values()) > 0
    assert set(retried) <= {name for name in result.provenance.steps} | {
        name for name in retried if name.startswith(("verify", "range of"))
    }
    assert result.success.mean() > 0.95
