"""Linear search on synthetic transfer curves."""

import numpy as np
import pytest
from fakes import CurveRoutine, FakeDevice

from calib.algorithms.linear_search import LinearSearch


@pytest.mark.parametrize(
    ("shape", "inverted"), [("linear", False), ("linear", True), ("inverse", True)]
)
@pytest.mark.parametrize("step", [1, 8, 50])
def test_reaches_the_closest_code_on_a_noiseless_curve(shape, inverted, step):
    routine = CurveRoutine(shape=shape, inverted=inverted)
    target = routine.reachable_target(0.35)
    outcome = LinearSearch(step=step).run(routine, FakeDevice(), target)
    np.testing.assert_array_equal(outcome.codes, routine.ideal_codes(target))


def test_a_good_start_needs_few_steps():
    routine = CurveRoutine()
    target = routine.reachable_target()
    start = routine.ideal_codes(target) + 2
    outcome = LinearSearch(step=1, initial=start).run(routine, FakeDevice(), target)
    np.testing.assert_array_equal(outcome.codes, routine.ideal_codes(target))
    assert outcome.steps <= 4


@pytest.mark.parametrize(("inverted", "bound"), [(False, -1), (True, 1)])
def test_reports_units_that_cannot_reach_the_target_at_a_bound(inverted, bound):
    routine = CurveRoutine(inverted=inverted, unreachable=4)
    outcome = LinearSearch(step=16).run(routine, FakeDevice(), routine.reachable_target())
    np.testing.assert_array_equal(np.flatnonzero(outcome.at_bound), np.arange(4))
    assert np.all(outcome.at_bound[:4] == bound)


def test_runs_a_bounded_number_of_steps():
    routine = CurveRoutine(noise=0.02)
    step = 16
    outcome = LinearSearch(step=step).run(routine, FakeDevice(), routine.reachable_target())
    assert outcome.steps <= 1023 // step + step + 2


def test_a_step_limit_names_units_that_did_not_cross():
    routine = CurveRoutine()
    target = routine.reachable_target(0.9)
    outcome = LinearSearch(step=1, max_steps=5).run(routine, FakeDevice(), target)
    assert outcome.steps == 5
    assert outcome.reasons
    assert all("no crossing within 5 steps" in reason for reason in outcome.reasons.values())


def test_is_reusable():
    algorithm = LinearSearch(step=8)
    routine = CurveRoutine(noise=1e-3)
    target = routine.reachable_target()
    first = algorithm.run(routine, FakeDevice(), target).codes
    algorithm.run(CurveRoutine(seed=3), FakeDevice(), target)
    np.testing.assert_array_equal(first, algorithm.run(routine, FakeDevice(), target).codes)


@pytest.mark.parametrize(
    ("options", "named"), [({"step": 0}, "step"), ({"max_steps": 0}, "max_steps")]
)
def test_bad_options_name_the_option(options, named):
    with pytest.raises(ValueError, match=named):
        LinearSearch(**options)


def test_an_initial_code_outside_the_range_is_refused():
    routine = CurveRoutine(n_units=3)
    with pytest.raises(ValueError, match="initial code 2000"):
        LinearSearch(initial=2000).run(routine, FakeDevice(3), np.zeros(3))
