"""The synapse array, synapse drivers and MAC mode of the simulated chip."""

from __future__ import annotations

import numpy as np
import pytest

from calib.routines.mac_patterns import mac_mode_settings
from device_model import SimulatedChip
from device_model.protocol import CELLS, N_DRIVERS, validate_settings
from device_model.stimuli import MacActivations
from device_model.synapses import DRIVER_BLOCK


def mac_chip(**kwargs) -> SimulatedChip:
    chip = SimulatedChip("syn-chip", **kwargs)
    # Baseline near 110 LSB on the uncalibrated CADC.
    chip.write({**mac_mode_settings(), "v_reset": 950})
    chip.write({"v_reset": 950})
    return chip


def test_synapse_cells_have_the_array_shapes():
    assert CELLS["synapse_weight"].shape == (256, 512)
    assert CELLS["synapse_address"].shape == (256, 512)
    assert CELLS["driver_hagen_offset"].shape == (N_DRIVERS,)
    assert CELLS["row_mode"].shape == (512,)
    assert CELLS["syn_i_bias_dac"].shape == (4,)


def test_weight_matrix_of_wrong_shape_names_cell_shape_and_range_and_applies_nothing():
    chip = SimulatedChip("syn-chip")
    with pytest.raises(ValueError, match=r"'synapse_weight'.*\(256, 512\).*0\.\.63"):
        chip.write({"v_leak": 10, "synapse_weight": np.zeros((256, 256), dtype=int)})
    assert chip.read_settings(["v_leak"])["v_leak"][0] == CELLS["v_leak"].default
    assert chip.stats.writes == 0


def test_weight_out_of_range_names_the_synapse_and_the_range():
    weights = np.zeros((256, 512), dtype=int)
    weights[3, 7] = 64
    with pytest.raises(ValueError, match=r"'synapse_weight': code 64 at index \(3, 7\).*0\.\.63"):
        validate_settings({"synapse_weight": weights})


def test_non_integer_weights_are_refused():
    with pytest.raises(ValueError, match=r"'synapse_weight' takes integer codes 0\.\.63"):
        validate_settings({"synapse_weight": np.full((256, 512), 1.5)})


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros(255, dtype=int), "shape"),
        (np.full(256, 32), "outside 0..31"),
        (np.full(256, 1.5), "dtype"),
    ],
)
def test_activations_are_validated_when_made(bad, message):
    with pytest.raises(ValueError, match=message):
        MacActivations(bad)


def test_drivers_sit_on_four_capmem_blocks_of_64():
    assert np.bincount(DRIVER_BLOCK).tolist() == [64, 64, 64, 64]
    assert set(DRIVER_BLOCK[:128]) == {0, 1}


def test_mac_reading_follows_the_ground_truth():
    chip = mac_chip()
    rng = np.random.default_rng(0)
    chip.write({"synapse_weight": rng.integers(0, 8, (256, 512))})
    activations = rng.integers(0, 32, 256)
    reading = chip.read_cadc(50, MacActivations(activations)).astype(float).mean(axis=0)
    truth = chip.true_mac(activations)
    inside = (truth > 30) & (truth < 200)
    assert inside.mean() > 0.5
    assert np.abs(reading - truth)[inside].mean() < 1.0


def test_zero_weights_leave_the_baseline():
    chip = mac_chip(noise_scale=0.0)
    zero = chip.true_mac(np.zeros(256, dtype=int))
    full = chip.true_mac(np.full(256, 31))
    assert np.array_equal(zero, full)


def test_inhibitory_rows_pull_the_membrane_down():
    chip = mac_chip(noise_scale=0.0)
    chip.write({"synapse_weight": 2, "row_mode": 2})
    baseline = chip.true_mac(np.zeros(256, dtype=int))
    pulled = chip.true_mac(np.full(256, 16))
    readable = baseline > 20  # a defective reset follower may park a neuron on the rail
    assert readable.mean() > 0.98
    assert np.all(pulled[readable] < baseline[readable])
    assert np.median(baseline - pulled) > 5


def test_output_is_linear_in_activation_with_ideal_driver_offsets():
    chip = mac_chip(noise_scale=0.0)
    chip.write({"synapse_weight": 1, "driver_hagen_offset": chip.ideal_driver_offsets()})
    base = chip.true_mac(np.zeros(256, dtype=int))
    low = chip.true_mac(np.full(256, 8)) - base
    high = chip.true_mac(np.full(256, 24)) - base
    ratio = high / np.where(low > 1, low, np.nan)
    assert np.isfinite(ratio).mean() > 0.9
    assert np.nanmedian(ratio) == pytest.approx(3.0, rel=0.03)


def test_mac_run_costs_reset_events_settling_and_read():
    chip = mac_chip()
    before = chip.stats
    chip.read_cadc(10, MacActivations(np.zeros(256, dtype=int)))
    spent = chip.stats - before
    assert spent.runs == 1
    assert 1e-3 < spent.hardware_time < 1.2e-3


def test_read_time_with_mac_activations_is_an_error():
    chip = mac_chip()
    with pytest.raises(ValueError, match="read_time"):
        chip.read_cadc(1, MacActivations(np.zeros(256, dtype=int)), read_time=1e-6)


def test_new_mismatch_leaves_the_neuron_truth_unchanged():
    chip = SimulatedChip("syn-chip")
    assert chip.truth.synapses is not None
    spread = chip.truth.synapses.synapse_gain.std()
    assert 0.02 < spread < 0.04
    ideal = SimulatedChip("syn-chip", mismatch_scale=0.0)
    assert np.all(ideal.truth.synapses.synapse_gain == 1.0)
    assert np.all(ideal.ideal_driver_offsets() == 32)


def test_default_dac_code_keeps_spiking_synaptic_jump():
    chip = SimulatedChip("syn-chip")
    chip.write({"syn_exc_enable": 1})
    values = chip._refresh()
    jump = values["jump_exc"].copy()
    chip.write({"syn_i_bias_dac": 400})
    assert np.allclose(chip._refresh()["jump_exc"], 0.5 * jump)
