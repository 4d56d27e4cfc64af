"""COBA synaptic inputs: the device model's reversal potentials, the e_coba targets and their
calibration, judged on the chip's ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from fingerprints import RTOL, float_checksum, integer_digest, truth_arrays
from typer.testing import CliRunner

from calib import PLANS, NeuronTarget, calibrate, recalibrate
from calib.cli import app
from calib.cli.target_file import build_target
from calib.operations.study import parse_target_grid, reachable
from calib.routines.coba import BIAS_RANGE, MAX_DISTANCE, MIN_DISTANCE, extrapolated_zero
from calib.sequences.lif import selected_plans
from device_model import SimulatedChip
from device_model.oracle import COBA_QUANTITY_CELLS
from device_model.stimuli import SynapticEvents
from reports.units import display_unit

COBA_PLANS = {"coba_reference_exc", "e_coba_exc", "coba_reference_inh", "e_coba_inh"}


# -- device model ---------------------------------------------------------------------------


def _fingerprint(chip: SimulatedChip) -> tuple[float, str, float]:
    """Every neuron and synapse ground-truth array, and a few readouts with the inputs on
    (`fingerprints`), with the hardware time they took."""
    truth = float_checksum(truth_arrays(chip))
    chip.write({"threshold_enable": 0, "syn_exc_enable": 1, "syn_inh_enable": 1})
    readouts = [chip.read_cadc(samples=20)]
    for inhibitory, times in ((False, (2e-6, 3e-6)), (True, (2e-6,))):
        stimulus = SynapticEvents(times, inhibitory=inhibitory)
        readouts.append(chip.read_cadc(samples=20, stimulus=stimulus, read_time=8e-6))
    return truth, integer_digest(readouts), chip.stats.hardware_time


def test_existing_chips_are_bit_identical_with_the_coba_cells_at_their_defaults() -> None:
    # Fingerprints of the chips as they were before the COBA cells existed (retaken in a form
    # that holds across machines, with the model unchanged).
    for chip, checksum, readouts in (
        (SimulatedChip("frozen-truth"), 985917.680639797, "d89068f75d9f02cb"),
        (
            SimulatedChip("frozen-truth-hard", mismatch_scale=1.3, noise_scale=1.5),
            989737.0472450022,
            "9eb8fa54d87a9b97",
        ),
    ):
        truth, codes, hardware_time = _fingerprint(chip)
        assert truth == pytest.approx(checksum, rel=RTOL)
        assert codes == readouts
        assert hardware_time == pytest.approx(3.61e-3, rel=RTOL)


@pytest.mark.parametrize("kind", ["exc", "inh"])
def test_the_psp_extrapolates_to_zero_at_the_true_reversal_potential(kind: str) -> None:
    chip = SimulatedChip(f"coba-line-{kind}")
    on = {
        f"syn_{kind}_enable": 1,
        f"syn_{'inh' if kind == 'exc' else 'exc'}_enable": 0,
        f"i_bias_syn_{kind}_coba": 300,
        f"v_syn_{kind}_coba_reference": 200,
    }
    points = []
    for v_leak in (560, 640):
        truth = chip.true_quantities({**on, "v_leak": v_leak})
        points.append((truth["leak"], truth[f"psp_per_weight_{kind}"]))
    (rest, psp), (other_rest, other_psp) = points
    # Neurons whose leak lies beyond E_rev feel nothing; a gross outlier's rests at a rail.
    both = (psp > 0) & (other_psp > 0) & ~chip.truth.outlier
    assert both.mean() > 0.9
    zero = rest + psp * (other_rest - rest) / np.where(both, psp - other_psp, 1.0)
    reversal = chip.true_quantities(on)[f"e_coba_{kind}"]
    np.testing.assert_allclose(zero[both], reversal[both], atol=1e-6)
    falls = (other_psp - psp) * (1 if kind == "inh" else -1) > 0  # smaller nearer E_rev
    assert np.all(falls[both])


def test_beyond_its_reversal_potential_an_input_does_nothing() -> None:
    chip = SimulatedChip("coba-beyond")
    near = {"syn_exc_enable": 1, "i_bias_syn_exc_coba": 1000, "v_syn_exc_coba_reference": 200}
    truth = chip.true_quantities({**near, "v_leak": 700})
    above = truth["leak"] > truth["e_coba_exc"]
    assert above.mean() > 0.9
    assert np.all(truth["psp_per_weight_exc"][above] == 0)


def test_without_the_coba_bias_there_is_no_reversal_potential() -> None:
    truth = SimulatedChip("coba-off").true_quantities()
    assert np.isnan(truth["e_coba_exc"]).all() and np.isnan(truth["e_coba_inh"]).all()


def test_the_oracle_finds_the_bias_code_of_a_reversal_potential() -> None:
    chip = SimulatedChip("coba-oracle")
    settings = {"syn_exc_enable": 1, "v_syn_exc_coba_reference": 350}
    codes = chip.ideal_codes("e_coba_exc", 170.0, settings)
    below, at, above = (
        chip.true_quantities({**settings, "i_bias_syn_exc_coba": codes + step})["e_coba_exc"]
        for step in (-1, 0, 1)
    )
    miss = np.abs(at - 170.0)
    assert np.all((miss <= np.abs(below - 170.0)) & (miss <= np.abs(above - 170.0)))


# -- targets --------------------------------------------------------------------------------


def test_the_reversal_potentials_are_optional_target_fields_in_lsb() -> None:
    specs = PLANS.quantities()
    for name in COBA_QUANTITY_CELLS:
        assert specs[name].optional and specs[name].unit == "CADC LSB"
        assert display_unit(name).label == "LSB"
        assert getattr(NeuronTarget(), name) is None
    assert not COBA_PLANS & {plan.name for plan in selected_plans(NeuronTarget())}


def test_a_coba_target_runs_reference_then_bias_after_the_input_strength() -> None:
    names = [plan.name for plan in selected_plans(NeuronTarget(e_coba_exc=170, e_coba_inh=40))]
    for kind in ("exc", "inh"):
        assert (
            names.index(f"psp_amplitude_{kind}")
            < names.index(f"coba_reference_{kind}")
            < names.index(f"e_coba_{kind}")
            < names.index("leak_final")
        )
    only_exc = {plan.name for plan in selected_plans(NeuronTarget(e_coba_exc=170))}
    assert {"coba_reference_exc", "e_coba_exc"} <= only_exc
    assert not {"coba_reference_inh", "e_coba_inh"} & only_exc


def test_the_command_line_and_target_files_know_the_reversal_potentials() -> None:
    result = CliRunner().invoke(app, ["calibrate", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--e-coba-exc" in result.output and "--e-coba-inh" in result.output
    assert build_target({"e_coba_exc": 170, "e_coba_inh": 40}).e_coba_inh == 40
    listing = CliRunner().invoke(app, ["targets"], env={"COLUMNS": "200"})
    assert "e_coba_exc" in listing.output and "e_coba_inh" in listing.output


def test_a_reversal_potential_outside_its_range_names_the_field_and_the_range() -> None:
    with pytest.raises(ValueError, match=r"e_coba_exc.*70.*280"):
        NeuronTarget(e_coba_exc=300)
    with pytest.raises(ValueError, match=r"e_coba_inh.*-70.*140"):
        NeuronTarget(e_coba_inh=-100)


@pytest.mark.parametrize(
    ("fields_", "named"),
    [
        ({"e_coba_exc": 120.0}, ("e_coba_exc", "threshold")),
        ({"e_coba_exc": 210.0, "threshold": 100.0, "leak": 80.0}, ("e_coba_exc", "leak")),
        ({"e_coba_inh": 70.0}, ("e_coba_inh", "leak")),
        ({"e_coba_inh": 90.0}, ("e_coba_inh", "leak")),
    ],
)
def test_a_contradicting_reversal_potential_is_one_error_before_any_run(
    fields_: dict, named: tuple[str, str]
) -> None:
    chip = SimulatedChip("coba-contradiction")
    with pytest.raises(ValueError) as error:
        calibrate(chip, NeuronTarget(**fields_))
    assert all(name in str(error.value) for name in named)
    assert chip.stats.runs == 0


def test_a_per_neuron_contradiction_names_the_neuron() -> None:
    asked = np.full(512, 150.0)
    asked[17] = 80.0 + MAX_DISTANCE + 5
    with pytest.raises(ValueError, match=r"neuron 17, 1 neurons in all"):
        calibrate(SimulatedChip("coba-per-neuron"), NeuronTarget(e_coba_exc=asked))


def test_the_extrapolation_reads_far_away_without_a_fall_towards_reversal() -> None:
    rest, moved = np.full(3, 80.0), np.full(3, 40.0)
    psp = np.array([20.0, 20.0, 20.0])
    moved_psp = np.array([30.0, 20.0, 10.0])
    zero = extrapolated_zero(rest, psp, moved, moved_psp, inhibitory=False)
    assert zero[0] == pytest.approx(80.0 + 20.0 * 40.0 / 10.0)
    assert zero[1] > 1000 and zero[2] > 1000


# -- calibration, judged on the ground truth ------------------------------------------------


@pytest.fixture(scope="module")
def calibrated() -> tuple[SimulatedChip, NeuronTarget, object]:
    """A harder chip, per-neuron excitatory targets and an inhibitory one at the nearest
    distance, which the weakest OTAs cannot reach."""
    rng = np.random.default_rng(2024)
    target = NeuronTarget(e_coba_exc=rng.uniform(130.0, 195.0, 512), e_coba_inh=80.0 - MIN_DISTANCE)
    chip = SimulatedChip("coba-judged", mismatch_scale=1.3, noise_scale=1.5)
    return chip, target, calibrate(chip, target)


def _judged(chip: SimulatedChip, result, target: NeuronTarget, name: str):
    settings = result.to_settings()
    goal = target.quantities()[name]
    ideal = chip.ideal_codes(name, goal, settings)
    best = chip.true_quantities({**settings, COBA_QUANTITY_CELLS[name]: ideal})[name]
    reachable_ = (ideal > BIAS_RANGE.low) & (ideal < BIAS_RANGE.high) & (np.abs(best - goal) <= 3)
    within = np.abs(chip.true_quantities(settings)[name] - goal) <= 3
    failed = np.zeros(512, bool)
    failed[sorted(result.failed_quantities().get(name, set()))] = True
    return reachable_, within, failed


@pytest.mark.parametrize("name", ["e_coba_exc", "e_coba_inh"])
def test_reachable_neurons_reach_their_reversal_potential_on_the_ground_truth(
    calibrated, name: str
) -> None:
    chip, target, result = calibrated
    reachable_, within, failed = _judged(chip, result, target, name)
    assert reachable_.mean() > 0.9
    assert within[reachable_].mean() >= 0.97
    assert np.mean(failed == ~within) >= 0.98


def test_a_neuron_out_of_reach_fails_as_unreachable_with_its_range(calibrated) -> None:
    chip, target, result = calibrated
    reachable_, within, _ = _judged(chip, result, target, "e_coba_inh")
    out_of_reach = np.flatnonzero(~reachable_ & ~within)
    assert out_of_reach.size > 0
    texts = result.failures()
    for neuron in out_of_reach:
        assert (
            f"unreachable: e_coba_inh {80 - MIN_DISTANCE:g} CADC LSB outside this neuron's range"
            in texts[neuron]
        )


def test_the_result_reports_and_exports_the_reversal_potentials(calibrated) -> None:
    _, _, result = calibrated
    assert "e_coba_exc" in result.summary() and "e_coba_inh" in result.summary()
    exported = result.to_xarray()
    for kind in ("exc", "inh"):
        names = [f"{group}.e_coba_{kind}" for group in ("achieved", "before", "target")]
        assert all(exported[name].attrs["units"] == "CADC LSB" for name in names)
    assert "codes.i_bias_syn_exc_coba" in exported and "codes.v_syn_inh_coba_reference" in exported


def test_the_mismatch_study_scans_a_reversal_potential(calibrated) -> None:
    chip, _, result = calibrated
    grid = parse_target_grid("e_coba_exc=140:190:3")
    assert grid["e_coba_exc"].tolist() == [140.0, 165.0, 190.0]
    assert reachable(chip, result.to_settings(), "e_coba_exc", 165.0).mean() > 0.9


def test_a_reversal_potential_is_recalibrated_alone(calibrated) -> None:
    chip, target, result = calibrated
    again = recalibrate(chip, result, ["e_coba_exc"])
    assert set(again.provenance.steps) >= {"e_coba_exc"}
    assert not {"coba_reference_exc", "psp_amplitude_exc", "leak"} & set(again.provenance.steps)
    reachable_, within, _ = _judged(chip, again, target, "e_coba_exc")
    assert within[reachable_].mean() >= 0.97
