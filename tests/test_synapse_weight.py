"""Spiking events through synapse rows, and the PSP per weight calibrated through the array."""

from __future__ import annotations

import numpy as np
import pytest

from calib import NeuronTarget, calibrate
from calib.sequences.lif import check_target, selected_plans
from device_model import SimulatedChip
from device_model.stimuli import RowEvents, SynapticEvents

READ_AFTER = 4e-6
VOLLEY = 2e-6


def spiking_chip(**kwargs) -> SimulatedChip:
    chip = SimulatedChip("row-events", **kwargs)
    # Resting potential near 70 LSB on the uncalibrated CADC; both inputs connected, slow
    # enough (tau_mem about 6 us, tau_syn about 3 us) for PSPs of tens of LSB.
    chip.write(
        {
            "threshold_enable": 0,
            "reset_hold": 0,
            "syn_exc_enable": 1,
            "syn_inh_enable": 1,
            "v_leak": 950,
            "v_reset": 900,
            "i_bias_leak": 100,
            "i_bias_syn_exc_tau": 300,
            "i_bias_syn_inh_tau": 300,
            "syn_exc_high_resistance": 1,
            "syn_inh_high_resistance": 1,
        }
    )
    return chip


def rows_at(weight: int, rows: int = 16) -> np.ndarray:
    weights = np.zeros((256, 512), dtype=np.int64)
    weights[:rows] = weight
    return weights


def readable(chip: SimulatedChip) -> np.ndarray:
    """Neurons whose resting potential reads inside the CADC range (room for a PSP either
    way): the uncalibrated chip leaves a few at its ends."""
    base = chip.read_cadc(1)[0].astype(float)
    return (base > 40) & (base < 180)


def psp(chip: SimulatedChip, stimulus, samples: int = 1) -> np.ndarray:
    base = chip.read_cadc(samples).astype(float).mean(axis=0)
    peak = chip.read_cadc(samples, stimulus=stimulus, read_time=VOLLEY + READ_AFTER)
    return peak.astype(float).mean(axis=0) - base


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"times": [0.0, 1e-6], "rows": [0, 512]}, r"rows: value 512 at event 1 outside 0\.\.511"),
        ({"times": [0.0], "rows": [0], "addresses": [64]}, r"addresses: value 64.*0\.\.63"),
        ({"times": [0.0, 1e-6], "rows": [0]}, r"rows: got shape \(1,\)"),
        ({"times": [1e-6, 0.0], "rows": [0, 1]}, "sorted"),
        ({"times": [0.0], "rows": [1.5]}, r"rows: got dtype float64"),
    ],
)
def test_row_events_are_validated_when_made(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RowEvents(**kwargs)


def test_volley_through_nominal_rows_equals_events_of_the_same_total_weight():
    chip = spiking_chip(mismatch_scale=0.0, noise_scale=0.0)
    chip.write({"synapse_weight": rows_at(40)})
    through_rows = psp(chip, RowEvents.volley(VOLLEY, np.r_[0:16, 256:272]))
    direct = psp(chip, SynapticEvents((VOLLEY,) * 16, weight=40))
    assert np.median(direct) > 10
    assert np.max(np.abs(through_rows - direct)) <= 1


def test_only_matching_addresses_of_the_rows_hemisphere_pass_events():
    chip = spiking_chip(noise_scale=0.0)
    weights = rows_at(63)
    addresses = np.zeros((256, 512), dtype=np.int64)
    addresses[:, 100:200] = 5
    chip.write({"synapse_weight": weights, "synapse_address": addresses})
    heights = psp(chip, RowEvents.volley(VOLLEY, np.arange(16), address=5))
    chosen = readable(chip)
    assert np.all(heights[100:200][chosen[100:200]] > 5)
    assert np.all(np.abs(np.delete(heights, np.arange(100, 200))) <= 1)


def test_disabled_drivers_and_rows_pass_nothing_and_inhibitory_rows_pull_down():
    chip = spiking_chip(noise_scale=0.0)
    chip.write({"synapse_weight": rows_at(63)})
    volley = RowEvents.volley(VOLLEY, np.r_[0:16, 256:272])
    chip.write({"row_mode": np.r_[np.full(16, 2), np.ones(496, dtype=np.int64)]})
    heights = psp(chip, volley)
    chosen = readable(chip)
    assert np.all(heights[:256][chosen[:256]] < -3) and np.all(heights[256:][chosen[256:]] > 3)
    chip.write({"driver_enable": 0})
    assert np.all(np.abs(psp(chip, volley)) <= 1)
    chip.write({"driver_enable": 1, "row_mode": 0})
    assert np.all(np.abs(psp(chip, volley)) <= 1)


def test_each_synapse_passes_its_own_weight_and_current_mismatch():
    chip = spiking_chip(noise_scale=0.0)
    rng = np.random.default_rng(3)
    weights = np.zeros((256, 512), dtype=np.int64)
    weights[:64] = rng.integers(0, 64, size=(64, 512))
    chip.write({"synapse_weight": weights})
    heights = psp(chip, RowEvents.volley(VOLLEY, np.r_[0:64, 256:320]))
    carried = (weights[:64] * chip.truth.synapses.synapse_gain[:64]).sum(axis=0)
    unit = psp(chip, SynapticEvents((VOLLEY,) * 32, weight=63)) / (32 * 63)
    chosen = readable(chip)
    ratio = heights[chosen] / (carried * unit)[chosen]
    assert chosen.mean() > 0.95 and np.median(heights) > 20
    assert abs(np.median(ratio) - 1) < 0.03
    assert np.mean(np.abs(ratio - 1) < 0.08) > 0.95


def test_numerical_integration_takes_per_neuron_event_weights_like_the_closed_form():
    chip = spiking_chip(mismatch_scale=0.0, noise_scale=0.0)
    weights = np.zeros((256, 512), dtype=np.int64)
    weights[:16] = np.arange(512) % 64
    chip.write({"synapse_weight": weights})
    volley = RowEvents.volley(VOLLEY, np.r_[0:16, 256:272])
    linear = psp(chip, volley)
    # The exponential term switched on far above the membrane: the same neuron, integrated.
    chip.write({"exponential_enable": 1, "v_exp": 1022})
    integrated = psp(chip, volley)
    assert np.max(linear) > 10
    assert np.max(np.abs(integrated - linear)) <= 1


def test_psp_per_weight_is_optional_and_left_out_of_the_default_calibration():
    names = [plan.name for plan in selected_plans(NeuronTarget())]
    assert "psp_per_weight_exc" not in names and "psp_per_weight_inh" not in names
    chosen = [plan.name for plan in selected_plans(NeuronTarget(psp_per_weight_exc=0.05))]
    assert (
        chosen.index("reference_exc")
        < chosen.index("psp_per_weight_exc")
        < chosen.index("psp_amplitude_exc")
    )


def test_psp_per_weight_and_amplitude_of_one_input_are_refused_together():
    with pytest.raises(ValueError, match="psp_per_weight_exc and psp_amplitude_exc"):
        check_target(NeuronTarget(psp_per_weight_exc=0.05, psp_amplitude_exc=10.0))


def test_psp_per_weight_beyond_the_time_constants_is_refused_before_any_run():
    with pytest.raises(ValueError, match=r"psp_per_weight_inh = 0\.4 .*reachable up to"):
        check_target(NeuronTarget(psp_per_weight_inh=0.4))


def test_psp_per_weight_outside_its_range_names_the_field():
    with pytest.raises(ValueError, match=r"psp_per_weight_exc = 0\.9 .*0\.005\.\.0\.5"):
        NeuronTarget(psp_per_weight_exc=0.9)


@pytest.fixture(scope="module")
def calibrated():
    chip = SimulatedChip("psp-per-weight")
    target = NeuronTarget(psp_per_weight_exc=0.05, psp_per_weight_inh=0.04)
    result = calibrate(chip, target)
    result.apply(chip)
    return chip, result, {"exc": 0.05, "inh": 0.04}


@pytest.mark.slow
def test_calibrated_psp_per_weight_reaches_its_target_on_the_ground_truth(calibrated):
    chip, _, goals = calibrated
    truth = chip.true_quantities()
    for kind, goal in goals.items():
        true = truth[f"psp_per_weight_{kind}"]
        ok = np.isfinite(true)
        assert np.mean(np.abs(true[ok] / goal - 1) < 0.10) > 0.95


@pytest.mark.slow
def test_measured_psp_per_weight_agrees_with_the_ground_truth(calibrated):
    chip, result, goals = calibrated
    truth = chip.true_quantities()
    for kind in goals:
        name = f"psp_per_weight_{kind}"
        ok = np.isfinite(truth[name]) & (result.achieved[name] > 0)
        ratio = result.achieved[name][ok] / truth[name][ok]
        assert abs(np.median(ratio) - 1) < 0.02
        assert np.mean(np.abs(ratio - 1) < 0.05) > 0.95


@pytest.mark.slow
def test_psp_per_weight_verdicts_agree_with_the_ground_truth(calibrated):
    chip, result, goals = calibrated
    truth = chip.true_quantities()
    failing = result.failed_quantities()
    for kind, goal in goals.items():
        name = f"psp_per_weight_{kind}"
        judged_ok = np.ones(512, dtype=bool)
        judged_ok[list(failing.get(name, ()))] = False
        true_error = np.abs(truth[name] / goal - 1)
        # Passed neurons are truly within tolerance (a margin for the read noise); clearly
        # missed ones are failed.
        assert np.all(true_error[judged_ok] < 0.13)
        assert not np.any(judged_ok & ~(true_error < 0.2))


def test_oracle_psp_per_weight_is_the_height_a_nominal_synapse_passes():
    chip = spiking_chip(mismatch_scale=0.0, noise_scale=0.0)
    chip.write({"synapse_weight": rows_at(63, rows=32)})
    truth = chip.true_quantities()
    tau_m, tau_s = truth["tau_mem"][0], truth["tau_syn_exc"][0]
    peak_time = tau_m * tau_s / (tau_m - tau_s) * np.log(tau_m / tau_s)
    base = chip.read_cadc(1)[0].astype(float)
    volley = RowEvents.volley(VOLLEY, np.r_[0:32, 256:288])
    peak = chip.read_cadc(1, stimulus=volley, read_time=VOLLEY + peak_time)[0].astype(float)
    height = (peak - base) / (32 * 63)
    assert np.median(peak - base) > 30
    assert np.allclose(height, truth["psp_per_weight_exc"], rtol=0.03)
