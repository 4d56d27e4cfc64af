"""Experiment-time calls: stored results found again, checked on the chip, injected."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from calib import NeuronResult, NeuronTarget, calibrate, check_result, ensure
from device_model import SimulatedChip
from results_store import ResultsStore

CHIP = "ensure-chip"
AGED_HOURS = 2000.0
"""Offsets random-walk ~0.5 mV per sqrt(hour): after 2000 h most neurons moved > 3 LSB."""


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    store = ResultsStore(tmp_path_factory.mktemp("store") / "results", create=True)
    result = calibrate(SimulatedChip(CHIP), store=store)
    return store, result


def test_loaded_result_is_bit_identical(stored):
    store, result = stored
    loaded = store.latest(CHIP, result.target)
    assert isinstance(loaded, NeuronResult)
    assert loaded.target == result.target
    assert loaded.provenance == result.provenance
    np.testing.assert_array_equal(loaded.success, result.success)
    assert loaded.reasons == result.reasons
    for name, codes in result.codes.items():
        np.testing.assert_array_equal(loaded.codes[name], codes)
        assert loaded.codes[name].dtype == codes.dtype
    for name, values in result.achieved.items():
        np.testing.assert_array_equal(loaded.achieved[name], values)


def test_loaded_result_reproduces_the_calibration_on_a_fresh_chip(stored):
    store, result = stored
    fresh = SimulatedChip(CHIP)
    report = check_result(fresh, store.latest(CHIP))
    assert report.holds, report.summary()
    truth = fresh.true_quantities()
    ok = result.success
    assert np.abs(truth["leak"][ok] - 80).max() < 1.0
    assert np.abs(truth["tau_mem"][ok] / 10e-6 - 1).max() < 0.05


def test_ensure_returns_the_stored_result_when_the_chip_confirms_it(stored):
    store, result = stored
    runs_before = len(store.history(CHIP))
    chip = SimulatedChip(CHIP)
    ensured = ensure(chip, NeuronTarget(), store)
    assert ensured.origin.startswith("stored")
    assert ensured.provenance.created == result.provenance.created
    assert len(store.history(CHIP)) == runs_before
    assert chip.stats.runs < 100


def test_ensure_recalibrates_an_aged_chip(stored):
    store, _ = stored
    runs_before = len(store.history(CHIP))
    ensured = ensure(SimulatedChip(CHIP, drift_hours=AGED_HOURS), NeuronTarget(), store)
    assert ensured.origin.startswith("calibrated (stored result drifted")
    assert len(store.history(CHIP)) == runs_before + 1


def test_ensure_calibrates_when_no_result_exists_for_the_target(stored):
    store, _ = stored
    other = NeuronTarget(leak=90)
    assert store.latest(CHIP, other) is None
    ensured = ensure(SimulatedChip(CHIP), other, store, max_age=timedelta(hours=1))
    assert ensured.origin == "calibrated (no stored result for this target)"
    assert store.latest(CHIP, other) is not None


def test_ensure_refuses_a_missing_store_and_a_bad_age():
    chip = SimulatedChip("untouched")
    with pytest.raises(ValueError, match="store"):
        ensure(chip, NeuronTarget(), None)
    with pytest.raises(ValueError, match="max_age"):
        ensure(chip, NeuronTarget(), object(), max_age=timedelta(0))
    assert chip.stats.runs == 0
