"""AdEx calibration: targets, the spike-based observables, and a full calibration of one chip with
adaptation and the exponential term, judged with the observables and the chip's ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import ADEX_QUANTITIES, QUANTITIES

from calib import NeuronTarget, calibrate
from calib.routines.adaptation import (
    CODES_PER_LSB,
    SpikeFrequencyAdaptation,
    adaptation_observables,
    drive_codes,
    reference_drive,
)
from calib.routines.adex import BAYESIAN_BUDGET, PART_QUANTITIES
from calib.sequences.lif import NeuronCalibration
from device_model import SimulatedChip
from device_model.circuit import evaluate
from device_model.protocol import N_NEURONS
from device_model.readout import cadc_continuous

ADEX_TARGET = dict(
    adaptation_a=0.2, adaptation_ratio=0.8, adaptation_time=32e-6, exp_onset=100.0, exp_rate=70e3
)
"""Mid-range AdEx targets on the default LIF working point."""
ADAPTATION = ("adaptation_ratio", "adaptation_time")


@pytest.fixture(scope="module")
def calibrated():
    chip = SimulatedChip("adex-test-chip")
    target = NeuronTarget(**ADEX_TARGET)
    result = calibrate(chip, target)
    return chip, target, result


def within(result, target, names) -> np.ndarray:
    """Per neuron: every quantity of `names` within its stated tolerance."""
    goals = target.quantities()
    ok = np.ones(N_NEURONS, dtype=bool)
    for name in names:
        tolerance = ADEX_QUANTITIES[name].tolerance_for(goals[name])
        ok &= np.abs(result.achieved[name] - goals[name]) <= tolerance
    return ok


def true_values(chip: SimulatedChip, codes: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The chip's derived physical parameters for `codes` (ground truth, settled)."""
    return evaluate(
        {name: np.asarray(value, dtype=float) for name, value in codes.items()}, chip.truth
    )


# -- targets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ADEX_QUANTITIES))
@pytest.mark.parametrize("side", ["low", "high"])
def test_an_adex_target_out_of_range_names_the_field(name: str, side: str) -> None:
    spec = ADEX_QUANTITIES[name]
    value = spec.low - 0.1 * (spec.high - spec.low) if side == "low" else 1.1 * spec.high
    with pytest.raises(ValueError, match=rf"^{name} = .*outside the allowed range"):
        NeuronTarget(**{name: value})


def test_a_per_neuron_adex_target_names_the_offending_neuron() -> None:
    ratio = np.full(N_NEURONS, 0.8)
    ratio[17] = 0.99
    with pytest.raises(ValueError, match=r"adaptation_ratio = 0\.99 \(neuron 17\)"):
        NeuronTarget(adaptation_ratio=ratio)


def test_an_exponential_onset_outside_leak_and_threshold_is_refused_before_any_run() -> None:
    chip = SimulatedChip("adex-onset-check")
    runs = chip.stats.runs
    with pytest.raises(ValueError, match=r"exp_onset = 123\.0 is outside the allowed range"):
        NeuronCalibration(chip, NeuronTarget(exp_onset=123.0, exp_rate=50e3))
    assert chip.stats.runs == runs


def test_a_lif_target_has_no_adex_quantities_and_keeps_its_fingerprint() -> None:
    lif = NeuronTarget()
    assert lif.adex == ()
    assert set(lif.quantities()) == set(QUANTITIES)
    assert not set(lif.to_dict()) & set(ADEX_QUANTITIES)
    adex = NeuronTarget(**ADEX_TARGET)
    assert adex.adex == tuple(ADEX_QUANTITIES)
    assert set(adex.quantities()) == set(QUANTITIES) | set(ADEX_QUANTITIES)
    assert adex.fingerprint() != lif.fingerprint()
    assert NeuronTarget.from_dict(adex.to_dict()) == adex


def test_a_target_without_adex_fields_runs_no_adex_step() -> None:
    calibration = NeuronCalibration(SimulatedChip("adex-steps"), NeuronTarget())
    names = [name for name, _ in calibration.steps]
    assert not set(names) & {*PART_QUANTITIES, "adex_switches"}


def test_only_the_targeted_parts_get_steps() -> None:
    calibration = NeuronCalibration(
        SimulatedChip("adex-steps"), NeuronTarget(adaptation_time=30e-6)
    )
    names = [name for name, _ in calibration.steps]
    assert names[names.index("refractory_time") + 1 :] == ["adaptation", "adex_switches", "leak"]


# -- observables ---------------------------------------------------------------------------------


def test_adaptation_time_is_the_time_constant_of_an_exponential_rate_relaxation() -> None:
    """Spike times of a rate relaxing from f0 to f_inf with tau: the observables give them back."""
    f0, ratio, tau = 100e3, 0.8, 30e-6
    t = np.linspace(0.0, 200e-6, 200_001)
    rate = f0 * ratio + f0 * (1 - ratio) * np.exp(-t / tau)
    phase = np.concatenate([[0.0], np.cumsum(0.5 * (rate[1:] + rate[:-1]) * np.diff(t))])
    spikes = np.interp(np.arange(int(phase[-1]) + 1), phase, t)
    tail = spikes[spikes >= 140e-6]
    measured_ratio, measured_time = adaptation_observables(
        np.array([spikes.size]),
        np.array([np.diff(spikes).mean()]),
        np.array([np.diff(tail).mean()]),
        np.array([f0]),
    )
    assert measured_ratio[0] == pytest.approx(ratio, rel=0.01)
    assert measured_time[0] == pytest.approx(tau, rel=0.05)


def test_without_a_rate_drop_the_adaptation_time_is_undefined() -> None:
    ratio, time = adaptation_observables(
        np.array([20]), np.array([10e-6]), np.array([10e-6]), np.array([1e5])
    )
    assert ratio[0] == pytest.approx(1.0)
    assert np.isnan(time[0])


def test_the_reference_drive_is_threshold_plus_threshold_minus_reset_in_leak_codes() -> None:
    drive = reference_drive(np.array([125.0]), np.array([70.0]))
    assert drive[0] == 180.0
    codes = drive_codes(np.array([600]), np.array([80.0]), drive)
    assert codes[0] == round(600 + 100 * CODES_PER_LSB)


def test_spike_frequency_adaptation_refuses_unknown_observables() -> None:
    with pytest.raises(ValueError, match="observables must be some of"):
        SpikeFrequencyAdaptation(np.full(N_NEURONS, 600), 30e-6, ("adaptation_speed",))


# -- a full calibration with every AdEx quantity ------------------------------------------------


def test_every_adex_quantity_has_achieved_values_and_reasons_for_misses(calibrated) -> None:
    _, target, result = calibrated
    goals = target.quantities()
    for name in ADEX_QUANTITIES:
        achieved = result.achieved[name]
        assert achieved.shape == (N_NEURONS,)
        assert np.isfinite(achieved).mean() > 0.97
        missed = ~within(result, target, [name])
        assert not result.success[missed].any()
        assert all(name in result.reasons[int(n)] for n in np.flatnonzero(missed))
        tolerance = ADEX_QUANTITIES[name].tolerance_for(goals[name])
        assert np.nanmedian(np.abs(achieved - goals[name]) / tolerance) <= 0.5


def test_bayesian_adaptation_reaches_tolerance_for_most_neurons_within_its_budget(calibrated):
    _, target, result = calibrated
    assert within(result, target, ADAPTATION).mean() >= 0.9
    # Budget: the Bayesian trials plus the first guess (2 probes, 2 refinements), the
    # recordings without adaptation of three preludes and the uncalibrated spread.
    recordings = BAYESIAN_BUDGET + 4 + 3 + 1
    assert result.provenance.steps["adaptation"]["runs"] <= recordings * N_NEURONS / 2


def test_calibrated_adaptation_evens_out_the_chips_mismatch(calibrated) -> None:
    """Ground truth: tau_w (which the adaptation time follows) spreads far less across the
    neurons at their calibrated codes than with every neuron at the median code."""
    chip, _, result = calibrated
    codes = result.codes
    calibrated_tau = true_values(chip, codes)["tau_w"]
    uniform = dict(codes, i_bias_adapt_tau=np.full(N_NEURONS, np.median(codes["i_bias_adapt_tau"])))
    uniform_tau = true_values(chip, uniform)["tau_w"]
    ok = result.success

    def spread(values: np.ndarray) -> float:
        return float(np.std(np.log(values[ok])))

    assert spread(calibrated_tau) < 0.6 * spread(uniform_tau)


def test_subthreshold_adaptation_matches_the_ground_truth(calibrated) -> None:
    chip, target, result = calibrated
    truth = true_values(chip, result.codes)
    true_ratio = truth["adapt_a"] / truth["g_leak"]
    tolerance = ADEX_QUANTITIES["adaptation_a"].tolerance
    assert np.mean(np.abs(true_ratio - target.adaptation_a) <= tolerance) >= 0.95
    assert np.nanmedian(np.abs(result.achieved["adaptation_a"] - true_ratio)) < tolerance / 4


def test_exponential_onset_matches_the_ground_truth(calibrated) -> None:
    """The measured onset is V_T - Delta_T of the chip's exponential term (in CADC LSB)."""
    chip, target, result = calibrated
    truth = true_values(chip, result.codes)
    onset = cadc_continuous(truth["v_t"] - truth["delta_t"], truth, chip.truth.cadc_channel_offset)
    ok = result.success
    error = result.achieved["exp_onset"][ok] - onset[ok]
    assert np.median(np.abs(error)) < 0.75
    assert (
        np.mean(np.abs(onset[ok] - target.exp_onset) <= 2 * ADEX_QUANTITIES["exp_onset"].tolerance)
        >= 0.95
    )


def test_the_final_configuration_switches_the_targeted_parts_on(calibrated) -> None:
    _, _, result = calibrated
    assert np.all(result.codes["adaptation_enable"] == 1)
    assert np.all(result.codes["exponential_enable"] == 1)


def test_the_lif_quantities_still_reach_their_targets(calibrated) -> None:
    _, _, result = calibrated
    assert result.success.mean() >= 0.8
    for name in ("leak", "threshold", "tau_mem"):
        goal = NeuronTarget().quantities()[name]
        tolerance = QUANTITIES[name].tolerance_for(goal)
        assert np.mean(np.abs(result.achieved[name] - goal) <= tolerance) >= 0.95


def test_adex_steps_record_their_cost(calibrated) -> None:
    _, _, result = calibrated
    steps = result.provenance.steps
    for name in ("adaptation_a", "adaptation", "exponential"):
        assert steps[name]["runs"] > 0
        assert steps[name]["host_time"] > 0
        # Emulated chip time: MADC recordings of all 512 neurons (256 runs each) and writes.
        assert 0 < steps[name]["hardware_time"] < 60.0
