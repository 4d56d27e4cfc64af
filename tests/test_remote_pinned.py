"""Algorithm behaviour pinned by a recorded device session: the search replays without the
simulator and ends where it ended when it was recorded (tests/data/recordings/record.py)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from device_remote.recording import ReplayDevice, ReplayMismatchError

RECORDINGS = Path(__file__).resolve().parent / "data" / "recordings"


def _recorder():
    spec = importlib.util.spec_from_file_location("record", RECORDINGS / "record.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_leak_search_replays_its_recorded_session_and_ends_on_the_same_codes() -> None:
    recorder = _recorder()
    expected = json.loads(recorder.LEAK_EXPECTED.read_text())
    with ReplayDevice(recorder.LEAK_SESSION) as device:
        outcome = recorder.leak_search(device)
    np.testing.assert_array_equal(outcome.codes, expected["codes"])
    assert outcome.steps == expected["steps"]


def test_a_search_that_asks_otherwise_fails_at_the_first_differing_call() -> None:
    recorder = _recorder()
    from calib.algorithms import BinarySearch
    from calib.routines.neuron_potentials import LeakPotential

    device = ReplayDevice(recorder.LEAK_SESSION)
    with pytest.raises(ReplayMismatchError, match="call"):
        BinarySearch().run(
            LeakPotential(recorder.LEAK_SAMPLES + 1),
            device,
            np.full(device.n_neurons, recorder.LEAK_TARGET),
        )
