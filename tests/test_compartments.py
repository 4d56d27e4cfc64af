"""Multi-compartment neurons: connected pairs on the chip, the tau_icc target and its plan."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest
from fingerprints import RTOL, float_checksum, truth_arrays
from typer.testing import CliRunner

from calib import NeuronTarget, calibrate
from calib.cli import app
from calib.cli.target_file import build_target, target_to_toml
from calib.cli.target_flags import flag_params
from calib.core.failures import FailureKind
from calib.core.plans import PLANS
from calib.core.retry import retrying
from calib.operations.study import parse_target_grid, reachable, run_study
from calib.routines.compartments import InterCompartmentTime, decay_rate, layout_pairs
from calib.sequences.check import check_result
from calib.sequences.lif import NeuronCalibration, selected_plans
from calib.sequences.session import CalibrationOptions, CalibrationSession
from device_model import SimulatedChip
from device_model.compartments import pair_traces
from device_model.dynamics import Membrane
from device_model.readout import madc_times
from device_model.stimuli import CompartmentConnect

LIF_FINGERPRINT = "80eecc622a8c33c3"
"""NeuronTarget().fingerprint() before compartments existed."""


def _right_pairs(chip: SimulatedChip, owners: np.ndarray) -> None:
    right = np.zeros(512, dtype=np.int64)
    right[owners] = 1
    chip.write({"icc_connect_right": right})


# -- device model -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chip_id, scale, checksum",
    [("truth-check-a", 1.0, 981728.9716154644), ("truth-check-b", 1.3, 984758.7613768321)],
)
def test_existing_ground_truth_and_readouts_are_unchanged(chip_id, scale, checksum):
    chip = SimulatedChip(chip_id, mismatch_scale=scale)
    # the values before compartments existed (`fingerprints`: retaken in a form that holds
    # across machines, with the model unchanged)
    assert float_checksum(truth_arrays(chip)) == pytest.approx(checksum, rel=RTOL)
    assert chip.truth.compartments is not None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"icc_connect_right": np.eye(1, 512, 255, dtype=int)[0]}, "neuron 255.*no right"),
        ({"icc_connect_down": np.eye(1, 512, 300, dtype=int)[0]}, "neuron 300.*no neuron below"),
        (
            {"icc_connect_right": np.eye(1, 512, 4, dtype=int)[0], "icc_connect_down": 0},
            None,
        ),
    ],
)
def test_connections_the_chip_cannot_make_are_refused_at_write(settings, message):
    chip = SimulatedChip("icc-write")
    if message is None:
        chip.write(settings)
        assert chip.read_settings(["icc_connect_right"])["icc_connect_right"][4] == 1
        return
    with pytest.raises(ValueError, match=message):
        chip.write(settings)


def test_a_neuron_in_two_connections_is_refused_naming_it():
    chip = SimulatedChip("icc-write")
    down = np.zeros(512, dtype=int)
    down[5] = 1
    chip.write({"icc_connect_down": down})
    with pytest.raises(ValueError, match=r"neuron 5 is connected to neurons 4 and 261"):
        chip.write({"icc_connect_right": np.eye(1, 512, 4, dtype=int)[0]})


def test_pair_traces_solve_the_coupled_membranes():
    chip = SimulatedChip("icc-dynamics")
    # inside the rails, with a slow leak so that the coupling dominates
    settings = {"v_leak": np.where(np.arange(512) % 2 == 0, 600, 800), "i_bias_leak": 0}
    chip.write({**settings, "leak_divide": 1})
    chip.write(settings)
    values = chip._refresh()
    m = Membrane.from_values(values, chip.truth.dead, chip.truth.stuck)
    owners, partners = np.array([0, 10]), np.array([1, 266])
    conductance = np.array([150e-9, 40e-9])
    times = np.linspace(0, 30e-6, 3001)
    first, second = pair_traces(m, owners, partners, conductance, times, connect_time=5e-6)
    # Euler integration of the same equations, from each compartment at its own rest
    step = times[1] - times[0]
    v1, v2 = m.e_rest[owners].copy(), m.e_rest[partners].copy()
    for index, time in enumerate(times[:-1]):
        assert np.allclose(first[:, index], v1, atol=2e-4)
        assert np.allclose(second[:, index], v2, atol=2e-4)
        coupling = conductance * (v1 - v2) if time >= 5e-6 else 0.0
        dv1 = (-m.g_leak[owners] * (v1 - m.e_rest[owners]) - coupling) / m.capacitance[owners]
        dv2 = (-m.g_leak[partners] * (v2 - m.e_rest[partners]) + coupling) / m.capacitance[partners]
        v1, v2 = v1 + step * dv1, v2 + step * dv2
    assert (
        np.abs(first[:, -1] - second[:, -1]).max()
        < 0.1 * np.abs(m.e_rest[owners] - m.e_rest[partners]).max()
    )


def test_recording_a_connected_pair_shows_the_difference_decay_of_the_true_tau_icc():
    chip = SimulatedChip("icc-record", noise_scale=0.0)
    _right_pairs(chip, np.array([0, 2]))
    v_leak = np.full(512, 500)
    v_leak[[1, 3]] = 800
    chip.write({"i_bias_icc": 200, "v_leak": v_leak, "threshold_enable": 0, "leak_divide": 1})
    chip.write({"i_bias_leak": 0})
    truth = chip.true_quantities()["tau_icc"]
    assert np.isnan(truth[4:]).all() and truth[0] == truth[1]
    trace = chip.record_madc([0, 1, 2, 3], 40e-6, CompartmentConnect(10e-6))
    difference = trace.codes[0::2].astype(float) - trace.codes[1::2]
    rate, settled = decay_rate(difference, trace.times, trace.valid, 10e-6, truth[[0, 2]] / 2)
    measured = 2 / (rate * (1 - settled))
    assert np.allclose(measured, truth[[0, 2]], rtol=0.01)
    # without the stimulus the pair rests connected: flat traces
    flat = chip.record_madc([0, 1], 20e-6).codes[:, madc_times(20e-6) > 8e-6]
    assert np.ptp(flat, axis=1).max() <= 1


def test_ideal_icc_codes_reach_the_target_on_the_ground_truth():
    chip = SimulatedChip("icc-oracle")
    _right_pairs(chip, np.arange(0, 512, 2))
    chip.write({"icc_divide": 1})
    codes = chip.ideal_codes("tau_icc", 10e-6)
    tau = chip.true_quantities({"i_bias_icc": codes})["tau_icc"]
    assert np.median(np.abs(tau / 10e-6 - 1)) < 0.01
    assert (codes[0::2] == codes[1::2]).all()


# -- target -----------------------------------------------------------------------------------


def test_the_default_target_is_unaffected():
    target = NeuronTarget()
    assert target.tau_icc is None and target.compartments is None
    assert target.fingerprint() == LIF_FINGERPRINT
    assert "tau_icc" not in {plan.name for plan in selected_plans(target)}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"tau_icc": 2e-6}, "tau_icc needs a compartment layout"),
        ({"compartments": "right"}, "needs a tau_icc target"),
        ({"tau_icc": 40e-6, "compartments": "right"}, r"tau_icc = 4e-05 .* 1e-07\.\.3e-05 s"),
        ({"tau_icc": 2e-6, "compartments": "255+256"}, r"neurons 255 and 256: .*different rows"),
        ({"tau_icc": 2e-6, "compartments": "3+5"}, r"neurons 3 and 5: they are not neighbours"),
        ({"tau_icc": 2e-6, "compartments": "2+3,3+259"}, r"neuron 3 is in two connections"),
        ({"tau_icc": 2e-6, "compartments": "0+1,zz"}, r"'zz' is no connection"),
        ({"tau_icc": 2e-6, "compartments": [(0, 1, 2)]}, "no pair of neuron indices"),
    ],
)
def test_bad_compartment_targets_fail_naming_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        NeuronTarget(**fields)


def test_a_per_neuron_tau_icc_asks_one_value_per_connection():
    tau = np.full(512, 2e-6)
    tau[7] = 3e-6
    with pytest.raises(ValueError, match=r"differs within the connection 6\+7"):
        NeuronTarget(tau_icc=tau, compartments="right")
    assert NeuronTarget(tau_icc=tau, compartments="0+1,256+257").tau_icc[7] == 3e-6


def test_layouts_are_canonical_and_round_trip_through_target_files():
    target = NeuronTarget(tau_icc=3e-6, compartments=[(1, 0), (10, 266), (2, 3)])
    assert target.compartments == "0+1,2+3,10+266"
    assert NeuronTarget(tau_icc=3e-6, compartments="2+3, 0+1,266+10") == target
    text = target_to_toml(target)
    assert 'compartments = "0+1,2+3,10+266"' in text
    assert build_target(tomllib.loads(text)) == target
    assert layout_pairs("down")[5].tolist() == [5, 261]
    with pytest.raises(ValueError, match=r"file\.toml: compartments: .*neurons 0 and 9"):
        build_target({"tau_icc": 2.0, "compartments": "0+9"}, source="file.toml")


def test_the_command_line_has_the_flags(tmp_path):
    options = {param.name: param for param in flag_params()}
    assert "tau_icc" in options and "compartments" in options
    assert "µs" in (options["tau_icc"].help or "")
    spec = PLANS.quantities()["tau_icc"]
    assert (spec.unit, spec.display.label, spec.default) == ("s", "µs", None)
    store = tmp_path / "store"
    args = ["calibrate", "--chip", "icc-cli", "--store", str(store), "--tau-icc", "2"]
    result = CliRunner().invoke(app, [*args, "--compartments", "0+9"])
    assert result.exit_code == 2, result.output
    assert "compartments: the chip cannot connect neurons 0 and 9" in result.stderr
    result = CliRunner().invoke(app, [*args, "--compartments", "0+1", "--tau-icc", "31"])
    assert result.exit_code == 2 and "tau_icc = 31 is outside the allowed range 0.1..30 µs" in (
        result.stderr
    )
    assert not store.exists()
    listing = CliRunner().invoke(app, ["targets"])
    assert listing.exit_code == 0
    row = next(line for line in listing.output.splitlines() if line.strip().startswith("tau_icc"))
    assert "µs" in row and "not calibrated" in row and "0.1..30" in row and "5 %" in row


def test_the_plan_runs_last_and_only_when_asked():
    target = NeuronTarget(tau_icc=5e-6, compartments="right")
    names = [plan.name for plan in selected_plans(target)]
    assert names[-1] == "tau_icc" and names.index("leak_final") < names.index("tau_icc")
    assert (
        len(NeuronCalibration(SimulatedChip("icc-steps"), NeuronTarget()).steps)
        == len(NeuronCalibration(SimulatedChip("icc-steps"), target).steps) - 1
    )


# -- the routine and its judgement on the chip --------------------------------------------------


def _calibrate_icc_only(chip: SimulatedChip, target: NeuronTarget):
    """The tau_icc plan alone (search, verification, judgement) on an otherwise default chip."""
    session = CalibrationSession(retrying(chip), target, CalibrationOptions())
    plan = PLANS["tau_icc"]
    assert plan.action is not None and plan.routine is not None and plan.judge is not None
    plan.action(session, plan)
    achieved = {"tau_icc": session.measure(plan.routine(session))}
    failures = plan.judge(session, achieved)
    plan.extra["configure_after_verify"](session)
    return session, achieved, failures


def _judged_against_truth(chip, target, failures):
    goal = np.broadcast_to(target.tau_icc, (512,))
    truth = chip.true_quantities()["tau_icc"]
    connected = np.zeros(512, dtype=bool)
    connected[layout_pairs(target.compartments).reshape(-1)] = True
    failed = np.zeros(512, dtype=bool)
    failed[[f.neuron for f in failures]] = True
    within = np.abs(truth / goal - 1) <= 0.05
    return connected, failed, within


def test_per_neuron_targets_on_a_hard_chip_are_reached_and_judged_on_the_truth():
    chip = SimulatedChip("icc-hard-7", mismatch_scale=1.3, noise_scale=1.5)
    rng = np.random.default_rng(3)
    per_pair = np.exp(rng.uniform(np.log(0.3e-6), np.log(25e-6), 256))
    target = NeuronTarget(tau_icc=np.repeat(per_pair, 2), compartments="right")
    _, achieved, failures = _calibrate_icc_only(chip, target)
    connected, failed, within = _judged_against_truth(chip, target, failures)
    assert within[connected].mean() >= 0.95
    agree = (~failed == within) | np.isnan(chip.true_quantities()["tau_icc"])
    assert agree[connected].mean() >= 0.99
    assert np.isnan(achieved["tau_icc"][~connected]).all()


def test_unreachable_connections_fail_as_unreachable_with_their_range():
    chip = SimulatedChip("icc-hard-2", mismatch_scale=2.0, noise_scale=1.5)
    pairs = ",".join(f"{n}+{n + 256}" for n in range(0, 256, 2))
    target = NeuronTarget(tau_icc=0.1e-6, compartments=pairs)
    _, _, failures = _calibrate_icc_only(chip, target)
    unreachable = [f for f in failures if f.kind == FailureKind.UNREACHABLE]
    assert unreachable
    text = unreachable[0].text()
    assert "unreachable: tau_icc 0.1 µs outside this neuron's range" in text
    # the layout is closed on the device (and in the codes a result keeps), others untouched
    codes = chip.read_settings(["icc_connect_down", "icc_connect_right", "i_bias_icc"])
    assert codes["icc_connect_down"][0:256:2].all() and not codes["icc_connect_down"][1::2].any()
    assert not codes["icc_connect_right"].any()
    assert (codes["i_bias_icc"][1:256:2] == 500).all()


def test_the_measurement_needs_one_run_per_pair():
    chip = SimulatedChip("icc-runs")
    routine = InterCompartmentTime(5e-6, "0+1,2+3,300+301", 63)
    routine.prelude(chip)
    before = chip.stats.runs
    values = routine.measure(chip)
    routine.postlude(chip)
    assert chip.stats.runs - before == 3
    assert np.isfinite(values[[0, 1, 2, 3, 300, 301]]).all()
    assert np.isnan(np.delete(values, [0, 1, 2, 3, 300, 301])).all()
    assert not chip.read_settings(["icc_connect_right"])["icc_connect_right"].any()


@pytest.mark.slow
def test_a_full_calibration_with_compartments_agrees_with_the_ground_truth():
    chip = SimulatedChip("icc-full-11", mismatch_scale=1.3, noise_scale=1.5)
    target = NeuronTarget(tau_icc=1.5e-6, compartments="down")
    result = calibrate(chip, target)
    truth = chip.true_quantities(result.to_settings())["tau_icc"]
    failed = result.failed_quantities().get("tau_icc", set())
    within = np.abs(truth / 1.5e-6 - 1) <= 0.05
    assert within.mean() >= 0.95
    verdict = np.ones(512, dtype=bool)
    verdict[list(failed)] = False
    assert ((verdict == within) | np.isnan(truth)).mean() >= 0.99
    assert result.codes["icc_connect_down"][:256].all()
    assert "tau_icc" in result.summary()
    # a quick check measures single membranes with the connections opened, then closes them
    report = check_result(chip, result)
    assert not report.quantities["tau_mem"].stale
    assert chip.read_settings(["icc_connect_down"])["icc_connect_down"][:256].all()


def test_a_mismatch_study_can_scan_tau_icc_on_the_ground_truth():
    grid = parse_target_grid("tau_icc=0.5:20:3")
    assert np.allclose(grid["tau_icc"], [0.5e-6, 10.25e-6, 20e-6])
    chip = SimulatedChip("icc-study")
    right = np.zeros(512, dtype=np.int64)
    right[0::2] = 1
    settings = {**chip.read_settings(), "icc_connect_right": right}
    for tau in grid["tau_icc"]:
        assert reachable(chip, settings, "tau_icc", float(tau)).mean() > 0.95
    with pytest.raises(ValueError, match="grid tau_icc: the study target needs a compartments"):
        run_study(1, grid={"tau_icc": [3e-6]}, client=object())
