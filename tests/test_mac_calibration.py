"""calibrate_mac on the simulated chip, judged on measured values and on the ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from calib.mac import MacResult, MacTarget, calibrate_mac, exact_product, multiply
from device_model import SimulatedChip
from results_store import ResultsStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibrated():
    chip = SimulatedChip("mac-test-0")
    return chip, calibrate_mac(chip, MacTarget())


def test_most_neurons_and_drivers_succeed(calibrated):
    _, result = calibrated
    assert result.neuron_success.mean() > 0.85
    assert result.driver_success.mean() > 0.95


def test_baseline_reaches_its_target(calibrated):
    _, result = calibrated
    ok = result.neuron_success
    assert np.abs(result.achieved["baseline"][ok] - 120).max() <= 3


def test_input_strength_is_matched_across_neurons(calibrated):
    _, result = calibrated
    before = np.std(result.before["amplitude_exc"]) / np.median(result.before["amplitude_exc"])
    after = np.std(result.achieved["amplitude_exc"]) / np.median(result.achieved["amplitude_exc"])
    assert after < 0.25 * before


def test_driver_offsets_agree_with_the_ground_truth(calibrated):
    chip, result = calibrated
    ideal = chip.ideal_driver_offsets()
    assert np.mean(np.abs(result.codes["driver_hagen_offset"] - ideal)) < 0.6


def test_neuron_gains_agree_with_the_ground_truth(calibrated):
    chip, result = calibrated
    gains = chip.true_mac_gains(result.to_settings())
    ok = result.neuron_success
    # The drivers of each hemisphere add a common factor the neurons' gains take up, so the
    # neuron-side truth is matched within each hemisphere.
    for name in ("mac_gain_exc", "mac_gain_inh"):
        for half in (slice(0, 256), slice(256, 512)):
            values = gains[name][half][ok[half]]
            assert np.std(values) / np.median(values) < 0.04


def test_calibration_stays_within_its_hardware_time(calibrated):
    _, result = calibrated
    assert result.provenance["device_stats"]["hardware_time"] <= 15.0


def test_calibrated_multiply_beats_uncalibrated(calibrated):
    chip, result = calibrated
    rng = np.random.default_rng(3)
    weights = rng.integers(-63, 64, (64, 512))
    activations = rng.integers(0, 32, (4, 64))
    exact = exact_product(weights, activations)

    def error(outputs):
        gain = np.sum(outputs * exact) / np.sum(exact**2)
        return np.sqrt(np.mean((outputs - gain * exact) ** 2)) / np.sqrt(
            np.mean((gain * exact) ** 2)
        )

    result.apply(chip)
    calibrated_error = error(multiply(chip, weights, activations, samples=4))
    uniform = {
        cell: int(np.median(result.codes[cell]))
        for cell in (
            "i_bias_syn_exc_gm",
            "i_bias_syn_inh_gm",
            "driver_hagen_offset",
            "stp_i_ramp",
            "syn_i_bias_dac",
        )
    }
    chip.write(uniform)
    chip.write(uniform)
    uncalibrated_error = error(multiply(chip, weights, activations, samples=4))
    assert calibrated_error * 3 < uncalibrated_error


def test_result_round_trips_through_the_store(calibrated, tmp_path):
    _, result = calibrated
    store = ResultsStore(tmp_path / "store", create=True)
    store.save(result)
    loaded = store.latest(result.chip_id)
    assert isinstance(loaded, MacResult)
    assert loaded.origin == "stored"
    assert loaded.target == result.target
    for cell, codes in result.codes.items():
        assert np.array_equal(loaded.codes[cell], codes)
    assert np.array_equal(loaded.driver_success, result.driver_success)
    assert loaded.failures() == result.failures()


def test_summary_names_neurons_and_drivers(calibrated):
    _, result = calibrated
    text = result.summary()
    assert "neurons" in text and "drivers" in text and "driver_offset" in text


def test_measured_tau_syn_agrees_with_the_ground_truth(calibrated):
    chip, result = calibrated
    truth = chip.true_quantities(result.to_settings())
    for kind in ("exc", "inh"):
        name = f"tau_syn_{kind}"
        ok = np.isfinite(result.achieved[name]) & np.isfinite(truth[name])
        assert ok.mean() > 0.95
        ratio = result.achieved[name][ok] / truth[name][ok]
        assert abs(np.median(ratio) - 1) < 0.03
        assert np.mean(np.abs(ratio - 1) < 0.08) > 0.9


@pytest.fixture(scope="module")
def strict_tau():
    chip = SimulatedChip("mac-test-0")
    calls: list[tuple[str, int, int]] = []
    result = calibrate_mac(
        chip,
        MacTarget(max_tau_syn=0.3e-6),
        progress=lambda *call: calls.append(call),
        provenance_extra={"simulation": {"seed": None}},
    )
    return chip, result, calls


def test_progress_reports_every_step_then_the_verification(strict_tau):
    _, _, calls = strict_tau
    assert [index for _, index, _ in calls] == list(range(len(calls)))
    assert {total for _, _, total in calls} == {len(calls)}
    assert calls[0][0] == "cadc" and calls[-1][0] == "verify"
    assert "baseline" in [name for name, _, _ in calls]


def test_provenance_keeps_the_callers_extra(strict_tau, tmp_path):
    _, result, _ = strict_tau
    assert result.provenance["extra"] == {"simulation": {"seed": None}}
    store = ResultsStore(tmp_path / "store.zarr", create=True)
    run_id = store.save(result)
    assert store.get(result.chip_id, run_id).provenance["extra"] == {"simulation": {"seed": None}}


def test_tau_syn_verdicts_follow_the_ground_truth(strict_tau):
    chip, result, _ = strict_tau
    truth = chip.true_quantities(result.to_settings())
    for kind in ("exc", "inh"):
        name = f"tau_syn_{kind}"
        flagged = np.array([name in result.neuron_reasons.get(n, "") for n in range(512)])
        clearly_slow = truth[name] > 1.1 * 0.3e-6
        clearly_fast = truth[name] < 0.9 * 0.3e-6
        assert clearly_slow.sum() > 20 and clearly_fast.sum() > 20
        assert np.all(flagged[clearly_slow])
        assert not np.any(flagged[clearly_fast])
        assert not np.any(result.neuron_success[clearly_slow])
