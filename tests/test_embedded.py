"""Embedded mode: the LIF calibration with the CADC and the spike counters only."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from calib import NeuronTarget, calibrate
from calib.algorithms.secant import SecantSearch
from calib.core.plans import PLANS, Plan
from calib.routines.embedded.membrane import FINE_RUNS, FiringRateTimeConstant
from calib.routines.embedded.synaptic_input import FINE_SAMPLES, IntegratedInputTimeConstant
from calib.sequences.lif import NeuronCalibration, selected_plans
from device_model import SimulatedChip
from device_model import params as p
from tests.fakes import CurveRoutine, FakeDevice

LIF_QUANTITIES = ("leak", "reset", "threshold", "tau_mem", "tau_syn_exc", "tau_syn_inh")


class NoMadc:
    """A chip whose MADC is refused: any use of it fails the test."""

    def __init__(self, chip: SimulatedChip) -> None:
        self.chip = chip
        self.chip_id = chip.chip_id
        self.n_neurons = chip.n_neurons

    @property
    def stats(self) -> Any:
        return self.chip.stats

    def record_madc(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the embedded mode used the MADC")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.chip, name)


# -- plans and modes ------------------------------------------------------------------------


def test_embedded_plans_cover_the_lif_target_and_no_host_plan_runs():
    plans = selected_plans(NeuronTarget(), "embedded")
    assert all("embedded" in plan.modes for plan in plans)
    covered = {name for plan in plans for name in plan.quantity_names}
    assert set(LIF_QUANTITIES) <= covered


def test_embedded_tau_mem_runs_after_the_potentials_and_the_leak_again_after_it():
    calibration = NeuronCalibration(
        SimulatedChip("embedded-steps"), NeuronTarget(), mode="embedded"
    )
    names = [name for name, _ in calibration.steps]
    tau = names.index("tau_mem")
    assert names.index("threshold") < tau < names.index("tau_syn_exc")
    assert names[tau + 1] == "leak"


def test_host_mode_is_unchanged_by_the_embedded_plans():
    plans = selected_plans(NeuronTarget())
    assert all(plan.modes == ("host",) for plan in plans)


def test_a_quantity_without_an_embedded_plan_is_refused():
    with pytest.raises(ValueError, match="no embedded plan calibrates"):
        selected_plans(NeuronTarget(exp_onset=110.0, exp_rate=50e3), "embedded")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        calibrate(SimulatedChip("mode-chip"), mode="satellite")
    with pytest.raises(ValueError, match="unknown mode"):
        Plan(name="toy", rank=1, action=lambda context, plan: None, modes=("satellite",))


def test_a_quantity_may_be_declared_once_per_mode():
    host = PLANS["leak"]
    twin = Plan(
        name="toy_leak", rank=1, quantities=host.quantities, action=lambda context, plan: None
    )
    with pytest.raises(ValueError, match="declared by plan"):
        PLANS.register(twin)


# -- the cost model -------------------------------------------------------------------------


def test_runs_of_an_embedded_program_have_no_host_round_trip():
    chip = SimulatedChip("cost-chip")
    with chip.embedded_program():
        before = chip.stats
        chip.read_cadc(samples=10)
        run = chip.stats - before
        chip.write({"v_leak": 500})
        write = chip.stats - before - run
    assert run.embedded_runs == 1 and run.host_runs == 0
    assert run.hardware_time == pytest.approx(p.EMBEDDED_RUN_OVERHEAD + 10 * p.CADC_SAMPLE_TIME)
    assert write.hardware_time == pytest.approx(p.CAPMEM_SETTLING_WAIT)
    chip.read_cadc(samples=10)
    assert chip.stats.host_runs == 1 and chip.stats.embedded_runs == 1


# -- the indirect measurements --------------------------------------------------------------


@pytest.fixture(scope="module")
def potentials_set() -> SimulatedChip:
    """A chip with leak, reset and threshold at 80, 70, 125 LSB (codes from the truth)."""
    chip = SimulatedChip("embedded-routines-3")
    calibration = NeuronCalibration(chip, NeuronTarget(), mode="embedded")
    for name, step in calibration.steps[:2]:
        assert name in ("cadc", "working_point")
        step()
    for quantity, cell, goal in (
        ("leak", "v_leak", 80.0),
        ("reset", "v_reset", 70.0),
        ("threshold", "v_threshold", 125.0),
    ):
        chip.write({cell: chip.ideal_codes(quantity, np.full(512, goal))})
    return chip


def test_tau_mem_from_firing_periods_matches_the_truth(potentials_set):
    chip = potentials_set
    routine = FiringRateTimeConstant(10e-6, 63, 80.0, 70.0, choose_switches=False, runs=FINE_RUNS)
    routine.prelude(chip)
    try:
        measured = routine.measure(chip)
    finally:
        routine.postlude(chip)
    truth = chip.true_quantities()["tau_mem"]
    error = (measured - truth) / truth
    usable = np.isfinite(error)
    assert usable.mean() > 0.97
    assert np.sqrt(np.mean(error[usable] ** 2)) < 0.005
    with pytest.raises(AssertionError, match="MADC"):
        NoMadc(chip).record_madc([0], 1e-5)


def test_tau_syn_from_timed_cadc_reads_matches_the_truth(potentials_set):
    chip = potentials_set
    truth = chip.true_quantities()
    routine = IntegratedInputTimeConstant(
        10e-6, False, truth["tau_mem"], 80.0, samples=FINE_SAMPLES
    )
    chip.write({"i_bias_syn_exc_tau": 250})
    routine.prelude(chip)
    try:
        measured = routine.measure(chip)
    finally:
        routine.postlude(chip)
    expected = chip.true_quantities()["tau_syn_exc"]
    error = (measured - expected) / expected
    usable = np.isfinite(error)
    assert usable.mean() > 0.97
    # one reading scatters by about 1 % RMS (read to read 0.97..1.1 %); unbiased
    assert np.sqrt(np.mean(error[usable] ** 2)) < 0.015
    assert abs(np.median(error[usable])) < 0.003


def test_secant_search_reaches_a_noiseless_curve_in_few_steps():
    device = FakeDevice()
    routine = CurveRoutine(shape="linear")
    target = routine.reachable_target(0.4)
    outcome = SecantSearch(512, steps=5, slope=float(np.median(routine.gain)) / 1022).run(
        routine, device, target
    )
    ideal = routine.ideal_codes(target)
    assert np.mean(np.abs(outcome.codes - ideal) <= 1) > 0.98
    assert device.stats.runs == 5


# -- the whole calibration ------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded_result():
    chip = SimulatedChip("test-embedded-7")
    result = calibrate(NoMadc(chip), NeuronTarget(), mode="embedded")
    return chip, result


@pytest.mark.slow
def test_embedded_calibration_succeeds_without_the_host_or_the_madc(embedded_result):
    chip, result = embedded_result
    assert result.success.mean() >= 0.97
    assert result.provenance.extra["mode"] == "embedded"
    assert chip.stats.host_runs == 0 and chip.stats.embedded_runs > 0
    assert result.provenance.device_stats["hardware_time"] <= 10.0


@pytest.mark.slow
def test_embedded_verdicts_agree_with_the_ground_truth(embedded_result):
    chip, result = embedded_result
    fresh = SimulatedChip(chip.chip_id)
    result.apply(fresh)
    truth = fresh.true_quantities()
    goals = result.target.quantities()
    ok = result.success
    within = np.ones(512, dtype=bool)
    for quantity in LIF_QUANTITIES:
        spec = PLANS.quantities()[quantity]
        tolerance = spec.tolerance_for(goals[quantity])
        within &= np.abs(truth[quantity] - goals[quantity]) <= tolerance
    assert np.mean(within[ok]) >= 0.995
