"""The membrane time constant's readings on a harder chip, against the truth: the coarse CADC
reading a sweep takes, a recording of some neurons only, the range of a few neurons."""

from __future__ import annotations

import numpy as np
import pytest
from readings import assert_coarse_reading_holds, assert_subset_recorded_alone

from calib import NeuronTarget
from calib.algorithms.base import measure_range
from calib.routines.membrane import CADC_PRECISE_UP_TO, MembraneTimeConstant, record_decays
from calib.sequences.lif import NeuronCalibration
from device_model import SimulatedChip

US = 1e-6


@pytest.fixture(scope="module")
def chip() -> SimulatedChip:
    """A harder chip with a calibrated CADC and leak, membranes at about 10 us."""
    chip = SimulatedChip("membrane-reading-57", mismatch_scale=1.3, noise_scale=1.5)
    steps = dict(NeuronCalibration(chip, NeuronTarget()).steps)
    steps["cadc"]()
    steps["working_point"]()
    chip.write({"v_leak": chip.ideal_codes("leak", 80.0)})
    return chip


def routine_at(chip: SimulatedChip, tau: float) -> MembraneTimeConstant:
    """A measuring routine (the switches as set), the leak bias at the codes reaching `tau`."""
    codes = {"i_bias_leak": chip.ideal_codes("tau_mem", tau)}
    chip.write(codes)
    chip.write(codes)  # settled: a large step leaves an error after one write's wait
    return MembraneTimeConstant(np.full(512, tau), 63, choose_switches=False)


@pytest.mark.parametrize("tau", [1 * US, 10 * US, 40 * US], ids=["1us", "10us", "40us"])
def test_the_coarse_reading_is_unbiased_and_cheaper_than_the_precise_one(chip, tau):
    # Up to 2 us the precise reading is the CADC's too, with four times the repetitions.
    ratio = 0.8 if tau <= CADC_PRECISE_UP_TO else 0.3
    assert_coarse_reading_holds(routine_at(chip, tau), chip, "tau_mem", ratio)


@pytest.fixture
def fast_switches(chip):
    """The leak conductance multiplied, as the calibration chooses for short targets."""
    saved = chip.read_settings(["leak_divide", "leak_multiply", "i_bias_leak"])
    chip.write({"leak_divide": 0, "leak_multiply": 1})
    yield
    chip.write(saved)


@pytest.mark.parametrize("tau", [0.5 * US, 1 * US], ids=["0.5us", "1us"])
def test_a_short_time_constant_is_read_within_a_percent_for_less_than_a_recording(
    chip, fast_switches, tau
):
    routine = routine_at(chip, tau)
    truth = chip.true_quantities()["tau_mem"]
    reached = ~chip.truth.outlier & ~chip.truth.dead & (np.abs(truth / tau - 1) < 0.05)
    routine.prelude(chip)
    try:
        before = chip.stats.hardware_time
        read = routine.measure(chip)
        spent = chip.stats.hardware_time - before
        recording = chip.stats.hardware_time
        recorded = record_decays(chip, 5 * tau, tau / 4)
        recording = chip.stats.hardware_time - recording
    finally:
        routine.postlude(chip)
    assert reached.mean() > 0.9
    relative = read[reached] / truth[reached] - 1
    assert np.sqrt(np.mean(relative**2)) < 0.01
    assert abs(np.median(relative)) < 0.002
    madc = recorded[reached] / truth[reached] - 1
    assert np.sqrt(np.mean(relative**2)) < np.sqrt(np.nanmean(madc**2))  # finer
    assert spent < 0.5 * recording  # and cheaper


def test_a_subset_of_neurons_is_recorded_alone(chip):
    routine = routine_at(chip, 10 * US)
    assert_subset_recorded_alone(routine, chip, np.array([0, 7, 300]), "tau_mem", rtol=0.03)


def test_the_range_of_a_few_neurons_records_only_them(chip):
    routine = routine_at(chip, 10 * US)
    asked = np.zeros(512, dtype=bool)
    asked[[5, 6, 200]] = True
    codes = chip.read_settings(["i_bias_leak"])["i_bias_leak"]
    before = chip.stats.runs
    low, high = measure_range(routine, chip, np.flatnonzero(asked))
    runs = chip.stats.runs - before
    assert runs <= 4  # two recordings of two runs each, where all neurons take 512
    assert np.isnan(low[~asked]).all() and np.isnan(high[~asked]).all()
    truth = {
        code: chip.true_quantities({"i_bias_leak": np.full(512, code)})["tau_mem"]
        for code in (0, 1022)
    }
    # An end that a recording five targets long cannot fit (the slow end's decay lasts a
    # millisecond) leaves the range NaN (`measure_range`); where both ends are read:
    read = asked & np.isfinite(low)
    np.testing.assert_allclose(low[read], truth[1022][read], rtol=0.03)
    # the slow end decays far longer than the recording (five targets): read only as far slower
    assert (high[read] > 10 * low[read]).all() and (high[read] <= truth[0][read]).all()
    # the codes are put back
    np.testing.assert_array_equal(chip.read_settings(["i_bias_leak"])["i_bias_leak"], codes)
