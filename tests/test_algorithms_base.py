"""The shared driver loop: retries, failure reasons, and option checks."""

import numpy as np
import pytest
from fakes import CurveRoutine, FakeDevice, TwoParameterRoutine

from calib.algorithms.base import (
    MAX_RUN_RETRIES,
    CodeSweep,
    RoutineFailed,
    bound_reasons,
    check_int_option,
)
from calib.algorithms.binary_search import BinarySearch, NoiseRobustBinarySearch
from calib.core.routine import ParameterRange


def test_driver_retries_transient_failures_then_succeeds():
    routine = CurveRoutine(n_units=8)
    device = FakeDevice(n_units=8, transient_failures=MAX_RUN_RETRIES)
    outcome = BinarySearch().run(routine, device, routine.reachable_target())
    ideal = routine.ideal_codes(routine.reachable_target())
    np.testing.assert_array_equal(outcome.codes, ideal)


def test_driver_raises_routine_failed_naming_the_routine_after_bounded_retries():
    routine = CurveRoutine(n_units=8, name="leak")
    device = FakeDevice(n_units=8, transient_failures=MAX_RUN_RETRIES + 1)
    with pytest.raises(RoutineFailed, match="'leak'"):
        BinarySearch().run(routine, device, routine.reachable_target())
    assert device.stats.runs == MAX_RUN_RETRIES + 1


def test_driver_restores_through_postlude_when_the_routine_fails():
    class Recording(CurveRoutine):
        restored = False

        def postlude(self, device):
            self.restored = True

    routine = Recording(n_units=4)
    with pytest.raises(RoutineFailed):
        BinarySearch().run(routine, FakeDevice(4, transient_failures=99), np.zeros(4))
    assert routine.restored


def test_outcome_names_units_at_a_bound_with_side_and_code():
    routine = CurveRoutine(n_units=4, name="tau_mem")
    reasons = bound_reasons(routine, ParameterRange(0, 1022), np.array([0, 5, 1022, 7]))
    assert reasons == {0: "tau_mem: code at lower bound 0", 2: "tau_mem: code at upper bound 1022"}


def test_code_sweep_averages_repeats_per_candidate():
    sweep = CodeSweep(np.array([[1, 2], [3, 4]]), repeats=2)
    seen = []
    for value in (1.0, 3.0, 10.0, 20.0):
        seen.append(sweep.codes.tolist())
        sweep.record(np.array([value, -value]))
    assert sweep.done
    assert seen == [[1, 2], [1, 2], [3, 4], [3, 4]]
    np.testing.assert_allclose(sweep.means, [[2.0, -2.0], [15.0, -15.0]])


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_integer_options_out_of_range_name_the_option(value):
    with pytest.raises(ValueError, match="steps"):
        check_int_option("steps", value, 1)


def test_multi_parameter_bound_reasons_name_the_cell():
    routine = TwoParameterRoutine(n_units=3)
    codes = np.array([[0, 500], [500, 500], [1022, 1022]])
    reasons = bound_reasons(routine, routine.parameter_ranges, codes)
    assert reasons == {
        0: "fake_pair: fake_cell_x code at lower bound 0",
        2: "fake_pair: fake_cell_x code at upper bound 1022, fake_cell_y code at upper bound 1022",
    }


def test_repeated_measurements_of_unchanged_codes_are_not_rewritten():
    routine = CurveRoutine(n_units=8, noise=1e-3)
    device = FakeDevice(n_units=8)
    search = NoiseRobustBinarySearch(steps=10, scan_radius=1, scan_repeats=4, max_shifts=0)
    outcome = search.run(routine, device, routine.reachable_target())
    assert outcome.steps == 10 + 3 * 4
    # One write per binary step, one per scanned code, one for the final codes.
    assert device.stats.writes == 10 + 3 + 1
