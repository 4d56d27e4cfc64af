"""Bayesian search: batched optuna ask/tell over units, single- and multi-parameter."""

import importlib.util

import numpy as np
import pytest
from fakes import CurveRoutine, FakeDevice, TwoParameterRoutine

from calib.algorithms.bayesian import SAMPLERS, BayesianSearch, check_sampler
from calib.core.routine import ParameterRange

N_UNITS = 32


def two_parameter_target(routine: TwoParameterRoutine, seed: int = 3) -> np.ndarray:
    codes = np.random.default_rng(seed).integers(300, 700, (N_UNITS, 2))
    return routine.truth(codes)


def test_two_parameter_quantity_reaches_tolerance_for_most_units_within_the_budget():
    routine = TwoParameterRoutine(n_units=N_UNITS, noise=1e-3)
    target = two_parameter_target(routine)
    search = BayesianSearch(budget=80, tolerance=0.05)
    device = FakeDevice(N_UNITS)
    outcome = search.run(routine, device, target)
    assert outcome.codes.shape == (N_UNITS, 2)
    assert outcome.steps <= 80
    truth = routine.truth(outcome.codes)
    within = np.all(np.abs(truth - target) <= 0.05 * np.abs(target) + 3e-3, axis=1)
    assert within.mean() >= 0.9
    assert outcome.at_bound.shape == (N_UNITS, 2)


def test_one_device_run_per_step():
    routine = TwoParameterRoutine(n_units=N_UNITS)
    device = FakeDevice(N_UNITS)
    outcome = BayesianSearch(budget=12).run(routine, device, two_parameter_target(routine))
    assert device.stats.runs == outcome.steps <= 12


@pytest.mark.parametrize("inverted", [False, True])
def test_single_parameter_search_reaches_tolerance(inverted):
    routine = CurveRoutine(n_units=N_UNITS, inverted=inverted)
    target = routine.reachable_target()
    search = BayesianSearch(budget=60, tolerance=0.01)
    outcome = search.run(routine, FakeDevice(N_UNITS), target)
    assert outcome.codes.shape == (N_UNITS,)
    reached = np.abs(routine.truth(outcome.codes) - target) <= 0.01 * target
    assert reached.mean() >= 0.9
    np.testing.assert_array_equal(reached, search.objective <= 1)


def test_units_within_tolerance_stop_early_and_keep_their_best_code():
    routine = CurveRoutine(n_units=N_UNITS)
    target = routine.reachable_target()
    search = BayesianSearch(budget=200, tolerance=0.05)
    outcome = search.run(routine, FakeDevice(N_UNITS), target)
    assert outcome.steps < 200
    assert outcome.steps == search.trials_used.max()
    assert search.trials_used.min() < outcome.steps  # some studies stopped before the last
    assert np.all(np.abs(routine.truth(outcome.codes) - target) <= 0.05 * target)
    np.testing.assert_allclose(outcome.measured, routine.truth(outcome.codes))


def test_units_that_cannot_reach_the_target_are_reported():
    routine = CurveRoutine(n_units=N_UNITS, unreachable=3)
    search = BayesianSearch(budget=25, tolerance=0.05)
    outcome = search.run(routine, FakeDevice(N_UNITS), routine.reachable_target())
    assert {0, 1, 2} <= set(outcome.reasons)
    assert "not within tolerance after 25 trials" in outcome.reasons[0]


def test_same_seed_repeats_and_another_seed_differs():
    routine = TwoParameterRoutine(n_units=N_UNITS, noise=1e-3)
    target = two_parameter_target(routine)

    def codes(seed):
        return BayesianSearch(budget=15, seed=seed).run(routine, FakeDevice(N_UNITS), target).codes

    first = codes(1)
    np.testing.assert_array_equal(first, codes(1))
    assert not np.array_equal(first, codes(2))


def test_shared_study_gives_every_unit_of_a_group_the_same_code():
    routine = CurveRoutine(n_units=N_UNITS)
    groups = np.repeat(np.arange(4), N_UNITS // 4)
    search = BayesianSearch(budget=30, tolerance=0.02, groups=groups)
    outcome = search.run(routine, FakeDevice(N_UNITS), routine.reachable_target())
    per_group = outcome.codes.reshape(4, -1)
    assert np.all(per_group == per_group[:, :1])
    everything = BayesianSearch(budget=10, groups="all").run(
        routine, FakeDevice(N_UNITS), routine.reachable_target()
    )
    assert np.unique(everything.codes).size == 1


def test_unreadable_units_are_penalised_not_fatal():
    class DeadUnits(CurveRoutine):
        def measure(self, device):
            values = super().measure(device)
            values[:2] = np.nan
            return values

    routine = DeadUnits(n_units=N_UNITS)
    outcome = BayesianSearch(budget=10).run(
        routine, FakeDevice(N_UNITS), routine.reachable_target()
    )
    assert {0, 1} <= set(outcome.reasons)


def test_random_sampler_runs():
    routine = CurveRoutine(n_units=8)
    outcome = BayesianSearch(budget=5, sampler="random").run(
        routine, FakeDevice(8), routine.reachable_target()
    )
    assert outcome.steps == 5


@pytest.mark.parametrize("name", ["gp", "cmaes"])
def test_optional_samplers_need_their_packages(name):
    package = {"gp": "torch", "cmaes": "cmaes"}[name]
    if importlib.util.find_spec(package) is None:
        with pytest.raises(ImportError, match=package):
            check_sampler(name)
    else:
        assert check_sampler(name) == name


def test_unknown_sampler_names_the_option_and_the_allowed_ones():
    with pytest.raises(ValueError, match="sampler = 'annealing'") as error:
        BayesianSearch(sampler="annealing")
    assert all(name in str(error.value) for name in SAMPLERS)


@pytest.mark.parametrize("budget", [0, -5])
def test_a_budget_below_one_names_the_budget(budget):
    with pytest.raises(ValueError, match="budget"):
        BayesianSearch(budget=budget)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"tolerance": 0.0}, "tolerance"),
        ({"groups": "quadrants"}, "groups"),
        ({"n_startup_trials": -1}, "n_startup_trials"),
    ],
)
def test_bad_options_name_the_option(options, named):
    with pytest.raises(ValueError, match=named):
        BayesianSearch(**options)


def test_a_tolerance_per_observable_must_match_the_target():
    routine = TwoParameterRoutine(n_units=4)
    with pytest.raises(ValueError, match="tolerance has 3 entries"):
        BayesianSearch(tolerance=[0.1, 0.1, 0.1]).run(routine, FakeDevice(4), np.ones((4, 2)))


def test_every_proposed_code_lies_within_the_parameter_range():
    class Recording(CurveRoutine):
        def apply(self, device, codes):
            self.seen.append(np.array(codes))
            super().apply(device, codes)

    routine = Recording(n_units=8, parameter_range=ParameterRange(100, 103))
    routine.seen = []
    BayesianSearch(budget=30, tolerance=1e-6).run(routine, FakeDevice(8), np.full(8, 0.5))
    seen = np.concatenate(routine.seen)
    assert seen.dtype.kind == "i"
    assert set(np.unique(seen)) == {100, 101, 102, 103}


def test_a_good_initial_guess_is_tried_first():
    routine = CurveRoutine(n_units=N_UNITS)
    target = routine.reachable_target()
    search = BayesianSearch(budget=50, tolerance=0.01, initial=routine.ideal_codes(target))
    outcome = search.run(routine, FakeDevice(N_UNITS), target)
    assert outcome.steps == 1
    np.testing.assert_array_equal(outcome.codes, routine.ideal_codes(target))


def test_an_initial_code_outside_the_range_is_refused():
    routine = TwoParameterRoutine(n_units=4)
    with pytest.raises(ValueError, match="initial code 2000"):
        BayesianSearch(initial=[[2000, 0]] * 4).run(routine, FakeDevice(4), np.ones((4, 2)))
