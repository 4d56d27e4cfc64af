"""The membrane time constant's readings on a harder chip, against the truth: the coarse CADC
reading a sweep takes, a recording of some neurons only, the range of a few neurons."""

from __future__ import annotations

import numpy as np
import pytest
from readings import assert_coarse_reading_holds, assert_subset_recorded_alone

from calib import NeuronTarget
from calib.algorithms.base import measure_range
from calib.routines.membrane import MembraneTimeConstant
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
    chip.write({"i_bias_leak": chip.ideal_codes("tau_mem", tau)})
    return MembraneTimeConstant(np.full(512, tau), 63, choose_switches=False)


@pytest.mark.parametrize("tau", [1 * US, 10 * US, 40 * US], ids=["1us", "10us", "40us"])
def test_the_coarse_reading_is_unbiased_and_cheaper_than_the_recording(chip, tau):
    assert_coarse_reading_holds(routine_at(chip, tau), chip, "tau_mem")


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
    read = asked & np.isfinite(low)
    assert read.any()
    np.testing.assert_allclose(low[read], truth[1022][read], rtol=0.03)
    # the slow end decays far longer than the recording (five targets): read only as far slower
    assert (high[read] > 10 * low[read]).all() and (high[read] <= truth[0][read]).all()
    # the codes are put back
    np.testing.assert_array_equal(chip.read_settings(["i_bias_leak"])["i_bias_leak"], codes)
