"""The synaptic time constant's reading at short constants on a harder chip, against the truth:
the fast membrane it needs, the headroom of the inhibitory input, defective neurons."""

from __future__ import annotations

import numpy as np
import pytest

from calib import NeuronTarget
from calib.algorithms.base import measure_once
from calib.routines.synaptic_input import SynapticTimeConstant
from calib.sequences.lif import NeuronCalibration
from device_model import SimulatedChip

US = 1e-6


@pytest.fixture(scope="module")
def chip() -> SimulatedChip:
    """A harder chip with a calibrated CADC, resting at 80 LSB, both inputs at 1.5 us."""
    chip = SimulatedChip("syn-reading-23", mismatch_scale=1.3, noise_scale=1.5)
    dict(NeuronCalibration(chip, NeuronTarget()).steps)["cadc"]()
    chip.write({"v_leak": chip.ideal_codes("leak", 80.0)})
    for kind in ("exc", "inh"):
        switch = {f"syn_{kind}_high_resistance": np.zeros(512, dtype=np.int64)}
        chip.write(switch)
        chip.write({f"i_bias_syn_{kind}_tau": chip.ideal_codes(f"tau_syn_{kind}", 1.5 * US)})
    return chip


@pytest.mark.parametrize("inhibitory", [False, True], ids=["exc", "inh"])
def test_short_constants_are_read_within_a_few_percent(chip, inhibitory):
    kind = "inh" if inhibitory else "exc"
    truth = chip.true_quantities()[f"tau_syn_{kind}"]
    measured = measure_once(SynapticTimeConstant(np.full(512, 1.5 * US), inhibitory), chip)
    relative = np.abs(measured / truth - 1)
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    # a neuron is read within 5 % or flagged (NaN); a wrong value passed on is the failure
    assert np.mean(np.isfinite(measured[healthy])) >= 0.98
    assert np.mean(relative[healthy & np.isfinite(measured)] <= 0.05) >= 0.995
    assert np.nanmedian(relative) <= 0.01
