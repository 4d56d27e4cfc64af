"""Records the device sessions the replay tests pin algorithm behaviour with.

    python tests/data/recordings/record.py

Run it again, and commit what it writes, only when a change to an algorithm or a routine is
meant to change what it asks of the device (the replay tests then fail with the first call that
differs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from calib.algorithms import NoiseRobustBinarySearch
from calib.algorithms.base import SearchOutcome
from calib.routines.neuron_potentials import LeakPotential
from device_model import SimulatedChip
from device_model.protocol import Device
from device_remote.recording import RecordingDevice

HERE = Path(__file__).resolve().parent
LEAK_SESSION = HERE / "leak-search.zarr"
LEAK_EXPECTED = HERE / "leak-search.json"
LEAK_TARGET = 80.0
LEAK_SAMPLES = 20
"""Few samples per read: a small recording (the search is the same)."""


def leak_search(device: Device) -> SearchOutcome:
    """The pinned search: the leak potential of every neuron to LEAK_TARGET."""
    return NoiseRobustBinarySearch().run(
        LeakPotential(LEAK_SAMPLES), device, np.full(device.n_neurons, LEAK_TARGET)
    )


def main() -> None:
    shutil.rmtree(LEAK_SESSION, ignore_errors=True)
    with RecordingDevice(SimulatedChip("pinned-leak-0"), LEAK_SESSION) as device:
        outcome = leak_search(device)
    LEAK_EXPECTED.write_text(
        json.dumps({"codes": outcome.codes.tolist(), "steps": outcome.steps}) + "\n"
    )
    print(f"{LEAK_SESSION.name}: {device.calls} calls; {LEAK_EXPECTED.name} written")


if __name__ == "__main__":
    main()
