"""A network exported by another simulator, mapped to targets and calibrated end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calib import NeuronTarget, calibrate, targets_from_nir
from device_model import SimulatedChip

BRAILLE = (
    Path(__file__).resolve().parent
    / "data"
    / "nir-graphs"
    / ("paper_03_rnn_braille_noDelay_noBias_subtract.nir")
)
SPEEDUP = 100.0
"""Inside the graph's feasible range (its synaptic constants are too short at 1000)."""
PSP_HEIGHT = 8.0
"""The mapping leaves synaptic gains to the experimenter (its notes say so); these synaptic
time constants (2-4 us) carry about a third of the default PSP's charge, so ask for less."""


@pytest.fixture(scope="module")
def calibrated():
    mapping = targets_from_nir(BRAILLE, speedup=SPEEDUP)
    target = mapping.target.replace(psp_amplitude_exc=PSP_HEIGHT, psp_amplitude_inh=PSP_HEIGHT)
    chip = SimulatedChip("nir-chip")
    return mapping, chip, calibrate(chip, target)


def test_graph_neurons_reach_their_time_constants(calibrated):
    mapping, chip, result = calibrated
    placed = np.asarray(mapping.placement.chip_neuron)
    assert placed.size == mapping.neuron_count == 47
    ok = result.success[placed]
    assert ok.mean() >= 0.9, result.summary()
    goals = mapping.target.quantities()
    truth = chip.true_quantities()
    for quantity in ("tau_mem", "tau_syn_exc", "tau_syn_inh"):
        achieved = result.achieved[quantity][placed][ok]
        wanted = goals[quantity][placed][ok]
        np.testing.assert_allclose(achieved, wanted, rtol=0.1, err_msg=quantity)
        np.testing.assert_allclose(
            truth[quantity][placed][ok], wanted, rtol=0.1, err_msg=f"{quantity} (ground truth)"
        )


def test_graph_time_constants_are_model_time_over_the_speedup(calibrated):
    mapping, _, _ = calibrated
    placed = np.asarray(mapping.placement.chip_neuron)
    tau_mem = mapping.target.quantities()["tau_mem"][placed]
    # the graph's membrane constants lie between 0.2 and 2 ms of model time
    assert np.all((tau_mem > 0.2e-3 / SPEEDUP) & (tau_mem < 2e-3 / SPEEDUP))


def test_neurons_outside_the_graph_keep_the_default_target(calibrated):
    mapping, _, result = calibrated
    unused = np.setdiff1d(np.arange(512), np.asarray(mapping.placement.chip_neuron))
    default = NeuronTarget().quantities()
    for quantity in ("leak", "tau_mem"):
        assert np.all(mapping.target.quantities()[quantity][unused] == default[quantity][0])
    assert result.success[unused].mean() >= 0.9
