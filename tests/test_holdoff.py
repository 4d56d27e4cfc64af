"""Reset holdoff: the device model's circuit, the target field and its calibration."""

from __future__ import annotations

import numpy as np
import pytest
from fingerprints import RTOL, float_checksum, integer_digest, truth_arrays
from typer.testing import CliRunner

from calib import NeuronTarget
from calib.cli import app
from calib.core.failures import FailureKind
from calib.sequences.lif import NeuronCalibration, check_target, selected_plans
from device_model import SimulatedChip
from device_model.stimuli import CurrentStep

FIRING = {
    "v_leak": 1022,
    "v_reset": 0,
    "i_bias_leak": 450,
    "leak_divide": 1,
    "v_threshold": 280,
    "refractory_counter": 250,
    "refractory_clock_scale": 0,
}
"""A neuron firing under its own leak, its rise from the reset (~12 µs) longer than its 2 µs
refractory time."""


def _settle(chip: SimulatedChip, settings: dict) -> None:
    chip.write(settings)
    chip.write(settings)


def _fingerprint(chip: SimulatedChip) -> tuple[float, str]:
    """The chip's ground truth arrays and a few readouts of it (`fingerprints`)."""
    truth = float_checksum(truth_arrays(chip, synapses=False))
    _settle(chip, {"v_leak": 800, "v_reset": 200, "v_threshold": 400, "refractory_counter": 60})
    readouts = [
        chip.read_cadc(50),
        chip.count_spikes(1e-3).counts,
        chip.record_madc([3, 300], 40e-6).codes,
    ]
    return truth, integer_digest(readouts)


def test_a_chip_that_never_sets_the_holdoff_is_the_chip_it_was_before_the_circuit():
    # the device model's fingerprints from before the holdoff circuit existed (retaken in a
    # form that holds across machines, with the model unchanged)
    truth, readouts = _fingerprint(SimulatedChip("holdoff-legacy-3"))
    assert truth == pytest.approx(790141.7648261499, rel=RTOL)
    assert readouts == "b7419456a67522ef"
    hard = SimulatedChip("holdoff-legacy-4", mismatch_scale=1.3, noise_scale=1.5)
    truth, readouts = _fingerprint(hard)
    assert truth == pytest.approx(774786.9541014194, rel=RTOL)
    assert readouts == "a94607d4e6468d59"


def test_the_holdoff_shortens_the_period_by_its_free_part_and_the_oracle_knows_it():
    chip = SimulatedChip("holdoff-model", noise_scale=0.0)
    _settle(chip, FIRING)
    base = chip.true_quantities()
    _settle(chip, {**FIRING, "reset_holdoff": 60})  # 0.96 µs less the release latency
    held = chip.true_quantities()
    holdoff = held["holdoff_time"]
    assert np.all(holdoff <= 60 * 16e-9) and np.median(holdoff) > 0.8e-6
    assert np.std(holdoff) > 5e-9  # the latency differs per neuron
    firing = base["firing_rate"] > 0
    shortened = 1 / base["firing_rate"][firing] - 1 / held["firing_rate"][firing]
    assert np.allclose(shortened, holdoff[firing], atol=1e-12)
    assert np.all(base["holdoff_time"] == 0)


def test_a_threshold_crossed_inside_the_holdoff_fires_at_its_end():
    chip = SimulatedChip("holdoff-long", noise_scale=0.0)
    fast = {**FIRING, "i_bias_leak": 1022, "leak_divide": 0}  # a rise of about 1 µs
    _settle(chip, fast)
    with np.errstate(divide="ignore"):  # a defective neuron that does not fire: infinite
        rise = 1 / chip.true_quantities()["firing_rate"] - 2e-6 - 4e-9
    _settle(chip, {**fast, "reset_holdoff": 200})  # 3.2 µs: clipped to the refractory time
    truth = chip.true_quantities()
    assert np.allclose(truth["holdoff_time"], truth["refractory_time"])
    inside = rise < truth["holdoff_time"]
    assert inside.mean() > 0.9
    assert np.allclose(1 / truth["firing_rate"][inside], 2e-6 + 4e-9)


def test_counting_under_a_time_varying_input_agrees_with_the_closed_form():
    chip = SimulatedChip("holdoff-paths", noise_scale=0.0)
    _settle(chip, {**FIRING, "reset_holdoff": 100})
    closed = chip.count_spikes(1e-3).counts
    # a zero current step makes the input piecewise: the grid path, spike by spike
    grid = chip.count_spikes(1e-3, CurrentStep(amplitude=0.0, on_time=0.5e-3, off_time=0.9e-3))
    assert np.max(np.abs(closed - grid.counts)) <= 1
    assert np.mean(closed == grid.counts) > 0.95


# -- the target -------------------------------------------------------------------------------


def test_the_holdoff_is_optional_and_outside_the_default_calibration():
    assert NeuronTarget().holdoff_time is None
    assert "holdoff_time" not in [plan.name for plan in selected_plans(NeuronTarget())]
    names = [plan.name for plan in selected_plans(NeuronTarget(holdoff_time=1e-6))]
    assert names.index("refractory_time") < names.index("holdoff_time")


def test_a_holdoff_outside_its_range_names_the_field_and_the_range():
    with pytest.raises(ValueError, match=r"holdoff_time = 5e-06 is outside .* 0..4e-06 s"):
        NeuronTarget(holdoff_time=5e-6)


def test_a_holdoff_longer_than_the_refractory_time_names_both_fields():
    with pytest.raises(ValueError, match=r"holdoff_time = 3 µs is longer than refractory_time"):
        check_target(NeuronTarget(holdoff_time=3e-6, refractory_time=2e-6))


def test_the_holdoff_has_a_flag_and_a_listing():
    help_text = CliRunner().invoke(app, ["calibrate", "--help"], env={"COLUMNS": "200"})
    assert "--holdoff-time" in help_text.output
    listing = CliRunner().invoke(app, ["targets"], env={"COLUMNS": "200"})
    row = next(line for line in listing.output.splitlines() if "holdoff_time" in line)
    assert "0..4" in row and "± 0.1 µs" in row  # the tolerance in the field's unit


# -- its calibration ---------------------------------------------------------------------------


def test_calibrated_holdoffs_hold_on_the_ground_truth_of_a_hard_chip():
    chip = SimulatedChip("holdoff-unseen-17", mismatch_scale=1.3, noise_scale=1.5)
    goal = np.random.default_rng(17).uniform(0.0, 4e-6, 512)
    goal[:8] = 0.0
    chip.write({"refractory_counter": 143, "refractory_clock_scale": 2})  # 4.58 µs
    calibration = NeuronCalibration(chip, NeuronTarget(holdoff_time=goal, refractory_time=4.5e-6))
    for _, step in calibration.partial_steps(["holdoff_time"]):
        step()
    plan = calibration.plans[[p.name for p in calibration.plans].index("holdoff_time")]
    achieved = calibration._verify(plan)
    failures = plan.judge(calibration.session, achieved)
    truth = chip.true_quantities()["holdoff_time"]
    error = np.abs(truth - goal)
    assert np.all(truth[:8] == 0.0)  # no holdoff asked: none at all
    assert np.mean(error < 0.1e-6) >= 0.97
    not_measured = {f.neuron for f in failures if f.kind == FailureKind.MEASUREMENT_FAILED}
    judged_ok = np.ones(512, dtype=bool)
    judged_ok[[f.neuron for f in failures]] = False
    verdicts = np.array([n not in not_measured for n in range(512)])
    assert np.all(error[judged_ok] < 0.15e-6)
    assert np.mean((judged_ok == (error <= 0.1e-6))[verdicts]) > 0.97
