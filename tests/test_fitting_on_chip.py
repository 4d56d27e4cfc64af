"""Fitting search on the simulated chip: time constants as good as binary search, fewer runs.

Both searches calibrate the same chip to the default target; residuals are judged against the
chip's ground truth over the neurons each calibration reports successful. The figures behind
these bounds are printed by bench/fitting_search.py.
"""

import numpy as np
import pytest
from fakes import CurveRoutine, FakeDevice, assert_within_quantisation

from calib.algorithms import BinarySearch, FittingSearch, curves_from_params
from calib.core.targets import NeuronTarget
from calib.routines.membrane import MembraneTimeConstant
from calib.routines.synaptic_input import SynapticTimeConstant
from calib.sequences.calibrate import calibrate
from device_model import SimulatedChip

TIME_CONSTANTS = ("tau_mem", "tau_syn_exc", "tau_syn_inh")
RESIDUAL_SLACK = 1.1
"""Fitting's residual RMS may exceed binary search's by this factor (read noise of a run)."""
RUN_SAVING = 0.75
"""Fitting must spend at most this fraction of binary search's runs on each time constant."""


def calibrated(make):
    chip = SimulatedChip("chip-a")
    searches = {quantity: make() for quantity in TIME_CONSTANTS}
    result = calibrate(chip, NeuronTarget(), algorithm=searches)
    return chip, result, searches


@pytest.fixture(scope="module")
def binary():
    return calibrated(BinarySearch)


@pytest.fixture(scope="module")
def fitting():
    return calibrated(lambda: FittingSearch(refine=2))


def residual_rms(chip, result, quantity):
    goal = result.target.quantities()[quantity]
    relative = chip.true_quantities()[quantity] / goal - 1.0
    return float(np.sqrt(np.mean(relative[result.success] ** 2)))


def failures(result, quantity):
    return sum(f"{quantity}:" in reason for reason in result.reasons.values())


@pytest.mark.parametrize("quantity", TIME_CONSTANTS)
def test_fitting_reaches_binary_search_residuals_with_fewer_runs(binary, fitting, quantity):
    (binary_chip, binary_result, _), (fitting_chip, fitting_result, _) = binary, fitting
    binary_runs = binary_result.provenance.steps[quantity]["runs"]
    fitting_runs = fitting_result.provenance.steps[quantity]["runs"]
    assert fitting_runs <= RUN_SAVING * binary_runs
    assert residual_rms(fitting_chip, fitting_result, quantity) <= RESIDUAL_SLACK * residual_rms(
        binary_chip, binary_result, quantity
    )
    assert failures(fitting_result, quantity) <= failures(binary_result, quantity)


def test_fitting_succeeds_on_as_many_neurons(binary, fitting):
    assert fitting[1].success.sum() >= binary[1].success.sum()


@pytest.mark.parametrize("second_target", [8e-6, 12e-6])
@pytest.mark.parametrize(
    ("quantity", "routine"),
    [
        ("tau_mem", MembraneTimeConstant(10e-6, 63)),
        ("tau_syn_exc", SynapticTimeConstant(10e-6, inhibitory=False)),
    ],
)
def test_kept_curves_serve_a_second_target_without_a_sweep(
    fitting, quantity, routine, second_target
):
    chip, result, searches = fitting
    runs = chip.stats.runs
    second = np.full(chip.n_neurons, second_target)
    codes = curves_from_params(result.models[quantity], routine.parameter_range).predict(second)
    np.testing.assert_array_equal(codes, searches[quantity].predict(second))
    assert chip.stats.runs == runs
    reached = chip.true_quantities({routine.parameter: codes})[quantity]
    miss = np.abs(reached / second - 1.0)[result.success]
    assert np.median(miss) < 0.008
    assert np.percentile(miss, 90) < 0.02


@pytest.mark.parametrize(
    ("quantity", "routine", "switches"),
    [
        (
            "tau_mem",
            MembraneTimeConstant(10e-6, 63),
            {"membrane_capacitance": 63, "leak_divide": 1, "leak_multiply": 0},
        ),
        (
            "tau_syn_exc",
            SynapticTimeConstant(10e-6, inhibitory=False),
            {"syn_exc_high_resistance": 1},
        ),
    ],
)
def test_routine_hints_bracket_most_neurons(quantity, routine, switches):
    chip = SimulatedChip("chip-a")
    hint = routine.sweep_hint(routine.target)
    ideal = chip.ideal_codes(quantity, routine.target, switches)
    inside = (ideal >= hint.min(axis=0)) & (ideal <= hint.max(axis=0))
    assert hint.shape == (3, chip.n_neurons)
    assert inside.mean() > 0.9


class HintedCurve(CurveRoutine):
    """A fake routine that suggests its sweep, and records what it was asked."""

    hint_codes = (700, 300)

    def sweep_hint(self, target, device):
        self.hinted = (np.array(target, copy=True), device)
        return np.array(self.hint_codes)


def test_the_sweep_follows_the_routine_hint():
    routine = HintedCurve(shape="inverse")
    device = FakeDevice()
    seen = []
    original = routine.apply
    routine.apply = lambda dev, codes: (seen.append(np.array(codes)), original(dev, codes))
    target = routine.reachable_target(0.5)
    FittingSearch(refine=1).run(routine, device, target)
    assert routine.hinted[1] is device
    np.testing.assert_array_equal(routine.hinted[0], target)
    assert [int(codes[0]) for codes in seen[:2]] == list(HintedCurve.hint_codes)


def test_an_explicit_sweep_overrides_the_hint():
    routine = HintedCurve(shape="inverse")
    outcome = FittingSearch(sweep=[100, 500, 900]).run(routine, FakeDevice(), np.ones(512))
    assert not hasattr(routine, "hinted")
    assert outcome.steps == 3 + 1


@pytest.mark.parametrize("refine", [0, 1, 3])
def test_each_refinement_costs_one_measurement(refine):
    routine = HintedCurve(shape="inverse", noise=1e-3)
    outcome = FittingSearch(refine=refine, repeats=2).run(
        routine, FakeDevice(), routine.reachable_target(0.4)
    )
    assert outcome.steps == (2 + 1 + refine) * 2


def test_refinement_reaches_quantisation_from_a_two_code_sweep():
    routine = HintedCurve(shape="inverse")
    target = routine.reachable_target(0.45)
    outcome = FittingSearch(refine=2).run(routine, FakeDevice(), target)
    assert_within_quantisation(routine, outcome.codes, target)


def test_a_failed_read_sends_the_unit_back_towards_its_best_code():
    class FailsLow(HintedCurve):
        def measure(self, device):
            values = super().measure(device)
            codes = device.settings[self.parameter]
            values[:4] = np.where(codes[:4] < 200, np.nan, values[:4])
            return values

    routine = FailsLow(shape="inverse")
    # Every unit aims at code 150; the first four cannot be read below code 200.
    target = routine.truth(np.full(512, 150))
    outcome = FittingSearch(refine=2).run(routine, FakeDevice(), target)
    assert np.all((outcome.codes[:4] >= 200) & (outcome.codes[:4] < min(HintedCurve.hint_codes)))
    assert np.all(np.isfinite(outcome.measured[:4]))


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("refine", -1),
        ("locality", 0.0),
        ("settle", -0.5),
        ("settle", float("nan")),
    ],
)
def test_bad_refinement_options_name_the_option(option, value):
    with pytest.raises(ValueError, match=option):
        FittingSearch(**{option: value})


def test_a_hint_of_the_wrong_shape_is_refused():
    class BadHint(CurveRoutine):
        def sweep_hint(self, target, device):
            return np.zeros((2, 3))

    with pytest.raises(ValueError, match="sweep_hint"):
        FittingSearch().run(BadHint(), FakeDevice(), np.ones(512))
