"""Firing-rate targets: the threshold calibrated to a rate under the neuron's own leak."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from calib import NeuronTarget, calibrate
from calib.cli import app
from calib.cli.target_file import build_target
from calib.core.failures import FailureKind
from calib.operations.study import parse_target_grid
from calib.routines.firing_rate import counting_windows
from calib.sequences.lif import NeuronCalibration, check_target, selected_plans
from device_model import SimulatedChip
from reports.units import display_unit

LEAK_ABOVE_THRESHOLD = {"v_leak": 700, "v_reset": 150, "i_bias_leak": 200, "leak_divide": 1}
"""Raw codes of a neuron that fires under its own leak once its threshold is low enough: a
slow membrane (about 25 µs), so that low rates do not sit on the steep end of the curve."""


def _rate_failures(failures):
    return [f for f in failures if f.quantity == "firing_rate"]


# -- the target -------------------------------------------------------------------------------


def test_a_rate_target_leaves_the_threshold_uncalibrated():
    target = NeuronTarget(leak=120, reset=60, firing_rate=50e3)
    assert target.threshold is None
    assert "threshold" not in target.to_dict()
    assert NeuronTarget.from_dict(target.to_dict()) == target
    names = [plan.name for plan in selected_plans(target)]
    assert "threshold" not in names
    # after everything the rate depends on, including the final leak step
    for needed in ("leak_final", "reset", "tau_mem", "refractory_time"):
        assert names.index(needed) < names.index("firing_rate")


def test_a_lif_target_keeps_its_threshold_and_no_rate():
    target = NeuronTarget()
    assert target.threshold == 125.0 and target.firing_rate is None
    assert "firing_rate" not in [plan.name for plan in selected_plans(target)]


def test_a_target_setting_rate_and_threshold_names_both_fields():
    with pytest.raises(ValueError, match="firing_rate and threshold are alternatives"):
        NeuronTarget(threshold=125.0, firing_rate=50e3)
    with pytest.raises(ValueError, match="firing_rate and threshold"):
        build_target({"threshold": 120.0, "firing_rate": 40e3})


def test_replacing_one_alternative_drops_the_other():
    rate = NeuronTarget().replace(leak=120, reset=60, firing_rate=50e3)
    assert rate.threshold is None and rate.firing_rate == 50e3
    back = rate.replace(threshold=130.0)
    assert back.firing_rate is None and back.threshold == 130.0


def test_a_rate_with_adex_parts_asks_for_a_threshold_instead():
    from calib import PLANS

    adex = next(spec for plan in PLANS if not plan.lif_part for spec in plan.quantities)
    value = adex.default if adex.default is not None else 0.5 * (adex.low + adex.high)
    with pytest.raises(ValueError, match=f"firing_rate and {adex.name}: .* set threshold"):
        NeuronTarget(leak=120, reset=60, firing_rate=50e3, **{adex.name: value})


def test_a_rate_outside_its_range_names_the_field_and_the_range():
    with pytest.raises(ValueError, match=r"firing_rate = 5000.0 is outside .* 10000..200000 Hz"):
        NeuronTarget(leak=120, reset=60, firing_rate=5e3)


def test_a_rate_the_neuron_cannot_fire_at_is_refused_before_any_run():
    chip = SimulatedChip("rate-refused")
    with pytest.raises(ValueError, match="leak = 80 is not above reset = 90"):
        calibrate(chip, NeuronTarget(leak=80, reset=90, firing_rate=50e3))
    rates = np.full(512, 50e3)
    rates[9] = 150e3
    with pytest.raises(ValueError, match=r"not longer than refractory_time = 10 µs \(neuron 9,"):
        check_target(NeuronTarget(leak=120, reset=60, refractory_time=10e-6, firing_rate=rates))
    assert chip.stats.runs == 0


# -- where a quantity appears ----------------------------------------------------------------


def test_the_rate_has_a_flag_a_target_file_key_a_listing_and_a_unit():
    help_text = CliRunner().invoke(app, ["calibrate", "--help"], env={"COLUMNS": "200"})
    assert "--firing-rate" in help_text.output
    assert build_target({"leak": 120, "reset": 60, "firing_rate": 40e3}).firing_rate == 40e3
    listing = CliRunner().invoke(app, ["targets"], env={"COLUMNS": "200"})
    assert "firing_rate" in listing.output
    assert display_unit("firing_rate").label == "kHz"
    grid = parse_target_grid("firing_rate=20:100:3")  # the study scans it, in kHz
    assert np.allclose(grid["firing_rate"], [20e3, 60e3, 100e3])


def test_windows_hold_about_the_same_number_of_spikes_at_every_rate():
    rates = np.linspace(10e3, 200e3, 512)
    spikes = counting_windows(rates) * rates
    assert spikes.min() > 100 and spikes.max() < 255  # resolved, and below the 8-bit counter


# -- on a chip --------------------------------------------------------------------------------


def test_the_oracle_rate_is_what_the_spike_counters_count():
    chip = SimulatedChip("rate-oracle", noise_scale=0.0)
    settings = {**LEAK_ABOVE_THRESHOLD, "v_threshold": 250}
    chip.write(settings)
    chip.write(settings)  # a large step settles over two waits
    truth = chip.true_quantities()["firing_rate"]
    window = 4e-3
    readout = chip.count_spikes(window)
    firing = (truth > 10e3) & ~readout.overflow
    assert firing.mean() > 0.5
    # a noise-free count opens mid-cycle: within half a spike of rate x window (and the last
    # thousandth of a code the CapMem still settles)
    assert np.all(np.abs(readout.counts - truth * window)[firing] <= 0.6)


def _search_rates(chip: SimulatedChip, rates: np.ndarray):
    """The rate step alone (the LIF steps skipped), on a chip configured by raw codes."""
    chip.write(LEAK_ABOVE_THRESHOLD)
    target = NeuronTarget(leak=120, reset=60, firing_rate=rates)
    calibration = NeuronCalibration(chip, target)
    for _, step in calibration.partial_steps(["firing_rate"]):
        step()
    achieved = {"firing_rate": calibration.session.measure(_routine(calibration))}
    calibration.ranges = calibration._ranges_at_bound(achieved)
    _, failures = calibration.judge(achieved)
    return achieved["firing_rate"], _rate_failures(failures)


def _routine(calibration: NeuronCalibration):
    from calib.core.plans import PLANS

    return PLANS["firing_rate"].routine(calibration.session)


def test_per_neuron_rates_reach_their_targets_on_the_ground_truth_of_a_hard_chip():
    chip = SimulatedChip("rate-unseen-41", mismatch_scale=1.3, noise_scale=1.5)
    rates = np.random.default_rng(41).uniform(15e3, 150e3, 512)
    measured, failures = _search_rates(chip, rates)
    truth = chip.true_quantities()["firing_rate"]
    error = np.abs(truth / rates - 1)
    unreachable = {f.neuron for f in failures if f.kind == FailureKind.UNREACHABLE}
    reachable = np.ones(512, dtype=bool)
    reachable[list(unreachable)] = False
    assert np.mean(error[reachable] < 0.05) >= 0.97
    # verdicts agree with the ground truth: passed neurons truly within tolerance (a margin
    # for the counting noise), truly missed ones failed
    judged_ok = np.ones(512, dtype=bool)
    judged_ok[[f.neuron for f in failures]] = False
    assert np.all(error[judged_ok] < 0.07)
    assert not np.any(judged_ok & (error > 0.07))
    assert np.mean(judged_ok == (error <= 0.05)) > 0.98
    assert np.all(np.isfinite(measured))


def test_a_neuron_whose_threshold_cannot_come_low_enough_fails_as_unreachable():
    chip = SimulatedChip("rate-unreachable")
    rates = np.full(512, 50e3)
    rates[3] = 190e3  # with the refractory time at its default (80 ns steps), too fast for
    chip.write({"refractory_counter": np.where(np.arange(512) == 3, 160, 20)})  # 5.1 µs hold
    _, failures = _search_rates(chip, rates)
    mine = [f for f in failures if f.neuron == 3]
    assert mine and mine[0].kind == FailureKind.UNREACHABLE
    assert "firing_rate 190 kHz outside this neuron's range" in mine[0].text()


@pytest.mark.slow
def test_a_full_calibration_to_per_neuron_rates_holds_on_the_ground_truth():
    chip = SimulatedChip("rate-full-29", mismatch_scale=1.3, noise_scale=1.5)
    rates = np.random.default_rng(29).uniform(10e3, 200e3, 512)
    tau_mem = np.where(rates < 40e3, 40e-6, 10e-6)
    result = calibrate(chip, NeuronTarget(leak=130, reset=55, tau_mem=tau_mem, firing_rate=rates))
    result.apply(chip)
    truth = chip.true_quantities()["firing_rate"]
    error = np.abs(truth / rates - 1)
    failures = _rate_failures(result.failure_records)
    unreachable = {f.neuron for f in failures if f.kind == FailureKind.UNREACHABLE}
    reachable = np.array([n not in unreachable for n in range(512)])
    assert np.mean(error[reachable] < 0.05) >= 0.97
    judged_ok = np.ones(512, dtype=bool)
    judged_ok[[f.neuron for f in failures]] = False
    assert np.mean(judged_ok == (error <= 0.05)) > 0.98
    assert "threshold" not in result.achieved and "firing_rate" in result.achieved
