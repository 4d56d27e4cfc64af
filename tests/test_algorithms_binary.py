"""Plain and noise-robust binary search on synthetic transfer curves."""

import numpy as np
import pytest
from fakes import CurveRoutine, FakeDevice, assert_within_quantisation

from calib.algorithms.binary_search import BinarySearch, LocalScan, NoiseRobustBinarySearch
from calib.core.routine import ParameterRange

SEARCHES = [BinarySearch, NoiseRobustBinarySearch]


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize(
    ("shape", "inverted"), [("linear", False), ("linear", True), ("inverse", True)]
)
def test_reaches_the_closest_code_on_a_noiseless_curve(search, shape, inverted):
    routine = CurveRoutine(shape=shape, inverted=inverted)
    target = routine.reachable_target(0.4)
    outcome = search().run(routine, FakeDevice(), target)
    assert_within_quantisation(routine, outcome.codes, target)
    np.testing.assert_allclose(outcome.measured, routine.truth(outcome.codes))


def test_plain_binary_search_finds_exactly_the_closest_code():
    routine = CurveRoutine(shape="inverse")
    target = routine.reachable_target(0.3)
    outcome = BinarySearch().run(routine, FakeDevice(), target)
    np.testing.assert_array_equal(outcome.codes, routine.ideal_codes(target))


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize(("inverted", "bound"), [(False, -1), (True, 1)])
def test_reports_units_that_cannot_reach_the_target_at_a_bound(search, inverted, bound):
    routine = CurveRoutine(inverted=inverted, unreachable=6)
    outcome = search().run(routine, FakeDevice(), routine.reachable_target())
    stuck = np.flatnonzero(outcome.at_bound)
    np.testing.assert_array_equal(stuck, np.arange(6))
    assert np.all(outcome.at_bound[stuck] == bound)
    side = "lower bound 0" if bound < 0 else "upper bound 1022"
    assert set(outcome.reasons) == set(range(6))
    assert all(side in reason for reason in outcome.reasons.values())


@pytest.mark.parametrize("search", SEARCHES)
def test_is_reusable_two_runs_give_the_same_codes(search):
    algorithm = search()
    routine = CurveRoutine(noise=2e-3)
    target = routine.reachable_target()
    first = algorithm.run(routine, FakeDevice(), target)
    other = algorithm.run(CurveRoutine(seed=5), FakeDevice(), target)
    second = algorithm.run(routine, FakeDevice(), target)
    np.testing.assert_array_equal(first.codes, second.codes)
    assert not np.array_equal(first.codes, other.codes)


def test_binary_search_takes_one_measurement_per_step():
    routine = CurveRoutine()
    device = FakeDevice()
    outcome = BinarySearch(steps=10).run(routine, device, routine.reachable_target())
    assert outcome.steps == device.stats.runs == 10


def test_binary_search_stops_early_on_a_small_range():
    routine = CurveRoutine(parameter_range=ParameterRange(100, 130))
    target = routine.reachable_target()
    outcome = BinarySearch(steps=10).run(routine, FakeDevice(), target)
    assert outcome.steps == 5
    np.testing.assert_array_equal(outcome.codes, routine.ideal_codes(target))


def test_noise_robust_search_runs_a_bounded_number_of_steps():
    search = NoiseRobustBinarySearch(steps=10, scan_radius=2, scan_repeats=3, max_shifts=1)
    routine = CurveRoutine(noise=2e-3)
    outcome = search.run(routine, FakeDevice(), routine.reachable_target())
    assert outcome.steps <= 10 + 2 * 5 * 3


@pytest.mark.parametrize("noise_in_codes", [1.0, 2.0])
def test_noise_robust_search_beats_plain_binary_search_under_noise(noise_in_codes):
    routine = CurveRoutine(noise=noise_in_codes / 1022)
    target = routine.reachable_target()

    def residual_rms(search):
        codes = search.run(routine, FakeDevice(), target).codes
        return np.sqrt(np.mean((routine.truth(codes) - target) ** 2))

    plain = residual_rms(BinarySearch())
    robust = residual_rms(NoiseRobustBinarySearch())
    assert robust < 0.8 * plain


def test_noise_robust_search_refuses_a_bad_scan_radius():
    with pytest.raises(ValueError, match="scan_radius"):
        NoiseRobustBinarySearch(scan_radius=0)


def test_single_parameter_search_refuses_a_multi_parameter_range():
    with pytest.raises(ValueError, match="BayesianSearch"):
        BinarySearch().start((ParameterRange(), ParameterRange()), np.zeros(3), False)


def test_local_scan_moves_from_the_present_codes_to_a_nearby_target_in_few_writes():
    routine = CurveRoutine(noise=0.5 / 1022)
    target = routine.reachable_target()
    device = FakeDevice()
    ideal = routine.ideal_codes(target)
    # the cell holds codes a few steps off the target's (a disturbed quantity's last result)
    device.write({routine.parameter: np.clip(ideal + 6, 0, 1022)})
    outcome = LocalScan().run(routine, device, target)
    assert np.mean(np.abs(outcome.codes - ideal) <= 1) > 0.95
    # three windows of five codes, three reads each, at the most
    assert outcome.steps <= 3 * 5 * 3


def test_local_scan_needs_the_device_codes():
    with pytest.raises(RuntimeError, match="run"):
        LocalScan().start(ParameterRange(), np.zeros(3), False)


def _excess_over_quantisation(search: NoiseRobustBinarySearch, noise_in_codes: float) -> float:
    """Mean squared residual over that of the closest codes, over four chips of units."""
    ratios = []
    for seed in range(4):
        routine = CurveRoutine(noise=noise_in_codes / 1022, seed=seed)
        target = routine.reachable_target()
        codes = search.run(routine, FakeDevice(), target).codes
        ideal = routine.ideal_codes(target)
        achieved = np.mean((routine.truth(codes) - target) ** 2)
        ratios.append(achieved / np.mean((routine.truth(ideal) - target) ** 2))
    return float(np.mean(ratios))


def test_the_binary_phase_reads_near_the_window_sharpen_its_line():
    """At half a code step of read noise (the threshold's), the binary phase's last reads
    in the line cut the residual's excess over quantisation by a fifth or more."""
    alone = _excess_over_quantisation(NoiseRobustBinarySearch(), 0.5)
    joined = _excess_over_quantisation(NoiseRobustBinarySearch(binary_reads=True), 0.5)
    assert joined - 1 < 0.8 * (alone - 1)


def test_a_shifted_window_may_read_its_codes_fewer_times():
    """Six binary steps leave units up to eight codes off: their line meets the target
    outside the first window, and the shifted window, read once a code, brings them in."""
    routine = CurveRoutine(noise=0.5 / 1022)
    target = routine.reachable_target()
    search = NoiseRobustBinarySearch(steps=6, scan_repeats=6, shift_repeats=1, max_shifts=1)
    outcome = search.run(routine, FakeDevice(), target)
    assert outcome.steps == 6 + 5 * 6 + 5 * 1
    assert np.all(np.abs(outcome.codes - routine.ideal_codes(target)) <= 1)
    with pytest.raises(ValueError, match="shift_repeats"):
        NoiseRobustBinarySearch(shift_repeats=0)
