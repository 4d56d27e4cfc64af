"""The threshold's verification against the truth: a neuron whose leak at its top stays below
its threshold never fires, and the top of its reads is its rest, not a threshold."""

from __future__ import annotations

import numpy as np

from calib import NeuronTarget
from calib.core.plans import UNMEASURED_STATE
from calib.core.retry import retrying
from calib.routines.neuron_potentials import verify_threshold
from calib.sequences.lif import NeuronCalibration
from calib.sequences.session import CalibrationOptions, CalibrationSession
from device_model import SimulatedChip
from device_model.protocol import CAPMEM_MAX


def test_a_neuron_that_cannot_fire_is_not_given_a_threshold():
    chip = SimulatedChip("threshold-verify-5", mismatch_scale=1.3, noise_scale=1.5)
    target = NeuronTarget(leak=160, reset=155, threshold=215)
    dict(NeuronCalibration(chip, target).steps)["cadc"]()
    chip.write({"v_reset": chip.ideal_codes("reset", 100.0)})
    threshold = chip.ideal_codes("threshold", 215.0)
    above = np.arange(0, 512, 4)
    threshold[above] = CAPMEM_MAX  # beyond what most leaks reach at their top
    chip.write({"v_threshold": threshold})
    leak_top = chip.true_quantities({"v_leak": np.full(512, CAPMEM_MAX)})["leak"]
    true_threshold = chip.true_quantities()["threshold"]
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    # a margin either side: a leak that barely clears its threshold fires, slowly
    silent = healthy & (leak_top < true_threshold - 2)
    firing = healthy & (leak_top > true_threshold + 5)
    assert silent.sum() >= 20 and firing.sum() >= 300
    session = CalibrationSession(retrying(chip), target, CalibrationOptions())
    measured = verify_threshold(session)["threshold"]
    assert np.all(np.isnan(measured[silent]))
    assert np.all(np.abs(measured[firing] - true_threshold[firing]) <= 2)
    why = session.state[UNMEASURED_STATE]["threshold"]
    assert set(np.flatnonzero(silent)) <= set(why)
    assert "the threshold lies above the leak's range" in why[int(np.flatnonzero(silent)[0])]
