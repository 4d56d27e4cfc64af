"""SimulatedChip: identity, spreads, monotonic circuits, readouts, accounting and bad input."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from device_model import (
    CELLS,
    CurrentStep,
    Device,
    ResetRelease,
    SimulatedChip,
    SynapticEvents,
)
from device_model import params as p
from device_model.protocol import MADC_INVALID_TIME

CADC_NOMINAL = {"cadc_ramp_offset": 70, "cadc_ramp_slope": 500}
QUIET = {**CADC_NOMINAL, "threshold_enable": 0, "v_leak": 612, "v_reset": 588}


def test_chip_implements_the_device_protocol():
    chip = SimulatedChip("protocol")
    assert isinstance(chip, Device)
    assert chip.n_neurons == 512
    assert chip.chip_id == "protocol"


def test_same_id_is_the_same_chip_with_the_same_readouts():
    first, second = SimulatedChip("chip-7"), SimulatedChip("chip-7")
    assert np.array_equal(first.truth.leak_offset, second.truth.leak_offset)
    assert np.array_equal(first.truth.cadc_channel_offset, second.truth.cadc_channel_offset)
    for chip in (first, second):
        chip.write(QUIET)
    assert np.array_equal(first.read_cadc(5), second.read_cadc(5))
    assert np.array_equal(first.count_spikes(50e-6).counts, second.count_spikes(50e-6).counts)


def test_different_ids_are_different_chips():
    first, second = SimulatedChip("chip-7"), SimulatedChip("chip-8")
    assert not np.allclose(first.truth.leak_offset, second.truth.leak_offset)
    assert first.seed != second.seed


def test_explicit_seed_overrides_the_id():
    assert np.array_equal(
        SimulatedChip("a", seed=5).truth.leak_gain, SimulatedChip("b", seed=5).truth.leak_gain
    )


def test_chip_identity_does_not_depend_on_python_hash_salt():
    code = (
        "from device_model import SimulatedChip; c = SimulatedChip('salt'); "
        "print(c.seed, repr(float(c.truth.leak_offset[3])))"
    )
    outputs = set()
    for salt in ("1", "2"):
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={"PYTHONHASHSEED": salt},
            check=True,
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    chip = SimulatedChip("salt")
    assert outputs.pop().split()[0] == str(chip.seed)


def _typical(chip: SimulatedChip, values: np.ndarray) -> np.ndarray:
    return values[~chip.truth.outlier]


def test_uncalibrated_tau_mem_spread_at_one_code_is_20_to_30_percent():
    for chip_id in ("spread-a", "spread-b"):
        chip = SimulatedChip(chip_id)
        tau = _typical(
            chip, chip.true_quantities({"i_bias_leak": 540, "leak_divide": 1})["tau_mem"]
        )
        assert 0.20 <= tau.std() / tau.mean() <= 0.30
        assert 7e-6 < np.median(tau) < 13e-6


def test_tau_mem_nominal_points():
    chip = SimulatedChip("ideal", mismatch_scale=0)
    fast = chip.true_quantities({"i_bias_leak": 1022})["tau_mem"]
    slow = chip.true_quantities({"i_bias_leak": 540, "leak_divide": 1})["tau_mem"]
    assert 0.6e-6 < fast[0] < 1.0e-6  # about 0.75 us (see params.LEAK_SATURATION_CODE)
    assert 8e-6 < slow[0] < 12e-6


def test_uncalibrated_cadc_channel_offsets_spread_about_8_lsb():
    offsets = SimulatedChip("cadc-spread").truth.cadc_channel_offset
    assert 6.5 < offsets.std() < 9.5


def test_uncalibrated_potential_spreads():
    truth = SimulatedChip("potential-spread").truth
    typical = ~truth.outlier
    leak = (truth.leak_offset - truth.leak_drop)[typical]
    assert 0.018 < leak.std() < 0.032
    assert 0.024 < truth.threshold_offset[typical].std() < 0.036


def test_leak_potential_rises_with_v_leak():
    chip = SimulatedChip("monotonic")
    chip.write(CADC_NOMINAL)
    leaks = np.array(
        [chip.true_quantities({"v_leak": code})["leak"] for code in range(500, 800, 50)]
    )
    assert np.all(np.diff(leaks, axis=0) >= 0)  # outliers may sit at a rail
    assert np.all(np.diff(leaks[:, ~chip.truth.outlier], axis=0) > 0)


def test_tau_mem_falls_with_the_leak_bias():
    chip = SimulatedChip("monotonic")
    taus = np.array(
        [chip.true_quantities({"i_bias_leak": code})["tau_mem"] for code in range(100, 1023, 100)]
    )
    assert np.all(np.diff(taus, axis=0) < 0)


def test_every_membrane_stays_physical_at_the_smallest_capacitance_on_a_harder_chip():
    """The intrinsic capacitance is a normal draw: 3.9 sigma low at mismatch 1.3 (neuron 509
    of this chip) it had gone negative, the membrane's time constant with it, and a read of
    the fastest membrane cast NaN potentials to codes."""
    chip = SimulatedChip("range-chip-3", mismatch_scale=1.3, noise_scale=1.5)
    fastest = {"membrane_capacitance": 0, "i_bias_leak": 1022, "leak_multiply": 1}
    assert np.all(chip.true_quantities(fastest)["tau_mem"] > 0)
    chip.write({**QUIET, **fastest})
    with np.errstate(over="raise", invalid="raise"):
        release = ResetRelease(1e-6)
        codes = chip.read_cadc(samples=4, stimulus=release, read_time=1.05e-6)
    assert codes.shape == (4, 512)


@pytest.mark.parametrize("kind", ["exc", "inh"])
def test_tau_syn_falls_with_its_bias_and_the_high_resistance_switch_lengthens_it(kind):
    chip = SimulatedChip("monotonic")
    cell = f"i_bias_syn_{kind}_tau"
    taus = np.array(
        [chip.true_quantities({cell: code})[f"tau_syn_{kind}"] for code in range(50, 1023, 100)]
    )
    assert np.all(np.diff(taus, axis=0) < 0)
    plain = chip.true_quantities({cell: 300})[f"tau_syn_{kind}"]
    high = chip.true_quantities({cell: 300, f"syn_{kind}_high_resistance": 1})[f"tau_syn_{kind}"]
    assert 4.0 < np.median(high / plain) < 6.0
    ideal = SimulatedChip("ideal", mismatch_scale=0).true_quantities({cell: 920})
    assert 0.25e-6 < ideal[f"tau_syn_{kind}"][0] < 0.35e-6


def test_cadc_code_rises_with_voltage_and_is_clipped():
    chip = SimulatedChip("cadc", noise_scale=0)
    chip.write({**CADC_NOMINAL, "cadc_connect_reference": 1})
    readings = []
    for code in range(0, 1023, 31):
        chip.write({"v_cadc_reference": code})
        readings.append(chip.read_cadc(1)[0])
    readings = np.array(readings, dtype=int)
    assert np.all(np.diff(readings, axis=0) >= 0)
    assert readings.min() == 0 and readings.max() == 255


def test_cadc_reference_anchor_points_on_an_ideal_chip():
    chip = SimulatedChip("ideal", mismatch_scale=0, noise_scale=0)
    chip.write({**CADC_NOMINAL, "cadc_connect_reference": 1, "v_cadc_reference": 70})
    low = chip.read_cadc(1)
    chip.write({"v_cadc_reference": 550})
    high = chip.read_cadc(1)
    assert np.all(np.abs(low.astype(int) - 20) <= 1)
    assert np.all(np.abs(high.astype(int) - 220) <= 2)


def test_readouts_have_their_dtypes_shapes_and_ranges():
    chip = SimulatedChip("readouts")
    chip.write(QUIET)
    codes = chip.read_cadc(7)
    assert codes.dtype == np.uint8 and codes.shape == (7, 512)
    trace = chip.record_madc([3, 4, 5], 20e-6, ResetRelease(10e-6))
    assert trace.codes.dtype == np.uint16
    assert trace.codes.shape == (3, trace.times.size)
    assert trace.codes.max() <= 1023
    assert trace.times.size == math.floor(20e-6 * 29.4e6)
    assert np.allclose(np.diff(trace.times), 1 / 29.4e6)


def test_cadc_read_noise_is_about_one_lsb():
    chip = SimulatedChip("noise")
    chip.write(QUIET)
    spread = chip.read_cadc(300).astype(float).std(axis=0)
    assert 0.8 < np.median(spread) < 1.3


def test_madc_first_8_us_invalid_and_two_neurons_per_run():
    chip = SimulatedChip("madc")
    chip.write(QUIET)
    before = chip.stats
    duration = 30e-6
    trace = chip.record_madc([0, 1, 2, 3, 4], duration)
    spent = chip.stats - before
    assert spent.runs == 3
    assert spent.hardware_time == pytest.approx(3 * (p.RUN_OVERHEAD + duration))
    assert not trace.valid[trace.times < MADC_INVALID_TIME].any()
    assert trace.valid[trace.times >= MADC_INVALID_TIME].all()
    valid = trace.codes[:, trace.valid].astype(float)
    assert valid.std(axis=1).max() < 4  # a resting neuron: only noise
    assert trace.codes[:, ~trace.valid].astype(float).std(axis=1).min() > 20  # start-up garbage


def test_madc_noise_and_scale():
    chip = SimulatedChip("madc-scale", mismatch_scale=0)
    chip.write(QUIET)
    trace = chip.record_madc([10], 40e-6)
    valid = trace.codes[0, trace.valid].astype(float)
    assert 1.0 < valid.std() < 2.0
    rest = np.median(valid) * p.MADC_VOLTS_PER_LSB - p.MADC_OFFSET_VOLTS
    expected = 612 * p.CAPMEM_VOLTS_PER_CODE - p.LEAK_DROP_MEAN
    assert rest == pytest.approx(expected, abs=0.01)


def test_spike_counter_overflows_at_255():
    chip = SimulatedChip("overflow")
    chip.write(
        {
            **CADC_NOMINAL,
            "v_leak": 1022,
            "v_threshold": 300,
            "refractory_counter": 1,
            "refractory_clock_scale": 0,
            "i_bias_leak": 1022,
        }
    )
    result = chip.count_spikes(1e-3)
    typical = ~chip.truth.outlier
    assert np.all(result.counts[typical] == 255)
    assert np.all(result.overflow[typical])
    chip.write({"threshold_enable": 0})
    quiet = chip.count_spikes(1e-3)
    assert not quiet.counts.any() and not quiet.overflow.any()


def test_stats_account_writes_and_runs():
    chip = SimulatedChip("stats")
    start = chip.stats
    chip.write({"v_leak": 500})
    after_analog = chip.stats
    assert (after_analog - start).writes == 1
    assert (after_analog - start).hardware_time == pytest.approx(p.CAPMEM_SETTLING_WAIT)
    chip.write({"threshold_enable": 0})
    after_digital = chip.stats
    assert (after_digital - after_analog).hardware_time == pytest.approx(p.DIGITAL_WRITE_TIME)
    chip.read_cadc(10)
    after_read = chip.stats
    assert (after_read - after_digital).runs == 1
    assert (after_read - after_digital).hardware_time == pytest.approx(
        p.RUN_OVERHEAD + 10 * p.CADC_SAMPLE_TIME
    )
    chip.count_spikes(200e-6)
    assert (chip.stats - after_read).hardware_time == pytest.approx(p.RUN_OVERHEAD + 200e-6)
    stats = chip.stats
    stats.runs += 100
    assert chip.stats.runs != stats.runs  # a copy, not the live counters


def test_read_settings_returns_copies_and_defaults():
    chip = SimulatedChip("settings")
    settings = chip.read_settings()
    assert set(settings) == set(CELLS)
    assert settings["v_leak"][0] == CELLS["v_leak"].default
    settings["v_leak"][:] = 0
    assert chip.read_settings(["v_leak"])["v_leak"][0] == CELLS["v_leak"].default
    chip.write({"v_leak": np.arange(512) % 1023, "cadc_ramp_slope": [1, 2, 3, 4]})
    assert np.array_equal(chip.read_settings(["v_leak"])["v_leak"], np.arange(512))
    assert chip.read_settings(["cadc_ramp_slope"])["cadc_ramp_slope"].tolist() == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"v_leek": 3}, "v_leek"),
        ({"v_leak": np.zeros(511, int)}, "shape"),
        ({"v_leak": 1023}, "0..1022"),
        ({"cadc_channel_offset": -129}, "-128..127"),
        ({"cadc_ramp_offset": np.zeros(512, int)}, "shape"),
        ({"leak_divide": 2}, "0..1"),
        ({"v_leak": 1.5}, "integer"),
    ],
)
def test_bad_writes_name_the_cell_and_apply_nothing(settings, message):
    chip = SimulatedChip("errors")
    before_settings, before_stats = chip.read_settings(), chip.stats
    with pytest.raises(ValueError, match=message):
        chip.write({"v_reset": 100, **settings})
    after = chip.read_settings()
    assert all(np.array_equal(before_settings[name], after[name]) for name in after)
    assert chip.stats == before_stats


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.count_spikes(0.0), "duration"),
        (lambda c: c.count_spikes(-1e-6), "duration"),
        (lambda c: c.count_spikes(float("nan")), "duration"),
        (lambda c: c.record_madc([0], 0.0), "duration"),
        (lambda c: c.record_madc([512], 10e-6), "0..511"),
        (lambda c: c.record_madc([-1], 10e-6), "0..511"),
        (lambda c: c.record_madc([], 10e-6), "neurons"),
        (lambda c: c.read_cadc(0), "samples"),
        (lambda c: c.read_cadc(2.5), "samples"),
        (lambda c: c.read_cadc(1, read_time=-1e-6), "read_time"),
        (lambda c: c.read_cadc(1, stimulus="spikes"), "stimulus"),
        (lambda c: c.count_spikes(1e-6, stimulus=[ResetRelease(0.0), 3]), "stimulus"),
        (lambda c: c.read_settings(["nope"]), "nope"),
        (lambda c: c.ideal_codes("tau_foo", 1.0), "tau_foo"),
    ],
)
def test_bad_run_arguments_raise_value_errors_and_cost_nothing(call, message):
    chip = SimulatedChip("errors")
    before = chip.stats
    with pytest.raises(ValueError, match=message):
        call(chip)
    assert chip.stats == before


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="mismatch_scale"):
        SimulatedChip("x", mismatch_scale=-1)
    with pytest.raises(ValueError, match="chip_id"):
        SimulatedChip("")
    with pytest.raises(ValueError, match="drift_hours"):
        SimulatedChip("x", drift_hours=float("inf"))


def test_mismatch_scale_zero_gives_identical_neurons_and_quadrants():
    chip = SimulatedChip("ideal", mismatch_scale=0)
    chip.write(QUIET)
    quantities = chip.true_quantities()
    for name, values in quantities.items():
        if name.startswith("e_coba") and np.isnan(values).all():
            continue  # no reversal potential with the COBA bias at 0 (current-based input)
        assert np.ptp(values) <= 1e-12 * max(abs(values[0]), 1), name
    assert not chip.truth.outlier.any()
    assert np.ptp(chip.truth.capmem_gain) == 0 and np.ptp(chip.truth.syn_dac_gain) == 0
    exact = SimulatedChip("ideal", mismatch_scale=0, noise_scale=0)
    exact.write(QUIET)
    assert np.ptp(exact.read_cadc(2)) == 0


def test_noise_scale_zero_gives_deterministic_readouts():
    chip = SimulatedChip("quiet", noise_scale=0)
    chip.write({**QUIET, "threshold_enable": 1, "v_threshold": 200})
    chip.count_spikes(0.05)  # a long run: the CapMem cells have settled afterwards
    assert np.array_equal(chip.read_cadc(4), chip.read_cadc(4))
    assert np.ptp(chip.read_cadc(20)[:, ~chip.truth.outlier].astype(int), axis=0).max() > 0
    first = chip.record_madc([0, 1], 20e-6, ResetRelease(10e-6))
    second = chip.record_madc([0, 1], 20e-6, ResetRelease(10e-6))
    assert np.array_equal(first.codes, second.codes)
    assert np.array_equal(chip.count_spikes(40e-6).counts, chip.count_spikes(40e-6).counts)


def test_stimuli_are_accepted_in_sequences():
    chip = SimulatedChip("stimuli")
    chip.write(QUIET)
    chip.read_cadc(2, [ResetRelease(1e-6), CurrentStep(1e-9, 5e-6)], read_time=3e-6)
    chip.count_spikes(10e-6, (SynapticEvents.regular(1e-6, 1e-6, 3),))
