"""SimulatedChip behaviours calibration relies on: settling, crosstalk, potentials, dynamics,
AdEx, faults, drift, ground truth and the ideal-code oracle."""

from __future__ import annotations

import numpy as np
import pytest

from device_model import (
    CurrentStep,
    Faults,
    ResetRelease,
    SimulatedChip,
    SynapticEvents,
    TransientRunError,
)
from device_model import params as p
from device_model.chip import _grid
from device_model.dynamics import Drive, integrate, linear_response

CADC_NOMINAL = {"cadc_ramp_offset": 70, "cadc_ramp_slope": 500}
QUIET = {**CADC_NOMINAL, "threshold_enable": 0, "v_leak": 612, "v_reset": 588}
SLOW_MEMBRANE = {"i_bias_leak": 540, "leak_divide": 1}


def settle(chip: SimulatedChip) -> None:
    """A long run: afterwards every CapMem cell has settled."""
    chip.count_spikes(0.05)


def mean_reading(chip: SimulatedChip, samples: int = 50, **kwargs) -> np.ndarray:
    return chip.read_cadc(samples, **kwargs).astype(float).mean(axis=0)


def test_a_run_right_after_a_write_sees_the_settling_residual():
    chip = SimulatedChip("settling", mismatch_scale=0, noise_scale=0)
    chip.write({**CADC_NOMINAL, "cadc_connect_reference": 1, "v_cadc_reference": 900})
    settle(chip)
    chip.write({"v_cadc_reference": 100})
    first = chip.read_cadc(1)[0].astype(float)
    settle(chip)
    settled = chip.read_cadc(1)[0].astype(float)
    residual_volts = 800 * np.exp(-5) * p.CAPMEM_VOLTS_PER_CODE  # about 2.2 LSB
    assert np.median(first - settled) == pytest.approx(residual_volts / p.CADC_NOMINAL_LSB, abs=1.0)


def test_quadrant_crosstalk_is_small_and_stays_in_its_quadrant():
    chip = SimulatedChip("crosstalk", mismatch_scale=0)
    chip.write(QUIET)
    base = chip.true_quantities()["leak"]
    high = np.full(512, 612)
    high[:128] = 1000  # quadrant 0 far up, except neuron 0 which stays at 612
    high[0] = 612
    shifted = chip.true_quantities({"v_leak": high})["leak"]
    shift = shifted[0] - base[0]
    expected = p.CROSSTALK_COEFFICIENT * (high[:128].mean() - 612) * p.CAPMEM_VOLTS_PER_CODE
    assert shift == pytest.approx(expected / p.CADC_NOMINAL_LSB, rel=0.02)
    assert 0 < shift < 1.0
    assert np.allclose(shifted[128:], base[128:])


def test_leak_bias_disturbs_a_calibrated_leak_potential():
    chip = SimulatedChip("beta")
    chip.write(QUIET)
    slow = chip.true_quantities({"i_bias_leak": 300})["leak"]
    fast = chip.true_quantities({"i_bias_leak": 1000})["leak"]
    change_mv = (fast - slow) * p.CADC_NOMINAL_LSB * 1e3
    assert 1.0 < np.std(change_mv) < 8.0
    ideal = SimulatedChip("beta", mismatch_scale=0)
    ideal.write(QUIET)
    assert np.allclose(
        ideal.true_quantities({"i_bias_leak": 300})["leak"],
        ideal.true_quantities({"i_bias_leak": 1000})["leak"],
    )


@pytest.mark.parametrize("kind", ["exc", "inh"])
def test_enabled_input_offset_is_cancelled_by_its_shift_cell(kind):
    chip = SimulatedChip("offset", noise_scale=0)
    chip.write({**QUIET, **SLOW_MEMBRANE})
    off = chip.true_quantities()["leak"]
    shift = f"i_bias_syn_{kind}_shift"
    on_low = chip.true_quantities({f"syn_{kind}_enable": 1, shift: 100})["leak"]
    on_high = chip.true_quantities({f"syn_{kind}_enable": 1, shift: 900})["leak"]
    typical = ~chip.truth.outlier  # outliers may sit at a rail
    assert np.all((on_low < off)[typical]) and np.all((on_high > off)[typical])
    cancel = chip.truth.__getattribute__(f"syn_{kind}_cancel_code")
    assert 150 <= cancel.min() and cancel.max() <= 850 and cancel.std() > 30
    cancelled = chip.true_quantities({f"syn_{kind}_enable": 1, shift: np.rint(cancel).astype(int)})[
        "leak"
    ]
    assert np.abs(cancelled - off)[typical].max() < 0.2


def test_reset_hold_sits_at_the_finite_clamp():
    chip = SimulatedChip("reset", noise_scale=0)
    chip.write({**QUIET, "v_reset": 400, "reset_hold": 1, "i_bias_reset": 200, "i_bias_leak": 1022})
    settle(chip)
    truth = chip.true_quantities()
    measured = chip.read_cadc(1)[0].astype(float)
    assert np.median(np.abs(measured - truth["reset"])) <= 0.6
    weak_clamp = truth["reset"]
    strong_clamp = chip.true_quantities({"i_bias_reset": 1022})["reset"]
    leak = truth["leak"]
    typical = ~chip.truth.outlier
    # the clamp's pull towards the leak weakens as the reset conductance grows
    assert np.all(np.abs(leak - weak_clamp)[typical] < np.abs(leak - strong_clamp)[typical])


def test_random_phase_samples_of_a_firing_neuron_approach_the_threshold():
    chip = SimulatedChip("threshold", noise_scale=0)
    chip.write(
        {
            **CADC_NOMINAL,
            "v_leak": 1022,
            "v_threshold": 322,
            "refractory_counter": 1,
            "refractory_clock_scale": 0,
            "i_bias_leak": 700,
        }
    )
    settle(chip)
    maximum = chip.read_cadc(400).max(axis=0).astype(float)
    threshold = chip.true_quantities()["threshold"]
    typical = ~chip.truth.outlier
    assert np.median(np.abs(maximum - threshold)[typical]) < 1.0
    chip.write({"threshold_enable": 0})
    assert np.all(chip.read_cadc(1)[0][typical] > maximum[typical])  # no reset: far above


def test_lif_spike_count_follows_the_analytic_interval():
    chip = SimulatedChip("lif", noise_scale=0)
    chip.write(
        {
            **CADC_NOMINAL,
            "v_leak": 700,
            "v_threshold": 250,
            "v_reset": 500,
            "refractory_counter": 50,
            "refractory_clock_scale": 1,
        }
    )
    settle(chip)
    m = chip._membrane()
    firing = (m.e_rest > m.v_threshold) & (m.v_hold < m.v_threshold)
    assert firing.sum() > 400
    with np.errstate(invalid="ignore"):
        isi = (
            p.RESET_PULSE
            + 50 * 4 / 250e6
            + m.tau_mem * np.log((m.e_rest - m.v_hold) / (m.e_rest - m.v_threshold))
        )
    duration = 200e-6
    counts = chip.count_spikes(duration).counts
    assert np.all(np.abs(counts[firing] - np.minimum(duration / isi[firing], 255)) <= 1)


def test_refractory_time_is_exact_in_firing_periods():
    chip = SimulatedChip("refractory", noise_scale=0)
    chip.write({**CADC_NOMINAL, "v_leak": 1022, "v_threshold": 330, "refractory_counter": 0})
    settle(chip)
    m = chip._membrane().take(np.flatnonzero(~chip.truth.outlier))
    fastest = np.median(
        m.refractory + m.tau_mem * np.log((m.e_rest - m.v_hold) / (m.e_rest - m.v_threshold))
    )
    t_ref = 125 * 2 / 250e6
    # about 200 spikes per run: enough resolution, no counter overflow
    base = 200 * fastest / np.maximum(chip.count_spikes(200 * fastest).counts, 1e-9)
    chip.write({"refractory_counter": 125, "refractory_clock_scale": 0})
    longer = (
        200
        * (fastest + t_ref)
        / np.maximum(chip.count_spikes(200 * (fastest + t_ref)).counts, 1e-9)
    )
    t_ref = chip.true_quantities()["refractory_time"]
    assert np.all(t_ref == 125 * 2 / 250e6)
    typical = ~chip.truth.outlier
    assert np.isfinite(base[typical]).all() and np.isfinite(longer[typical]).all()
    assert np.median(np.abs((longer - base)[typical] - t_ref[typical]) / t_ref[typical]) < 0.02


def test_madc_decay_after_reset_release_has_tau_mem():
    chip = SimulatedChip("decay", noise_scale=0)
    chip.write({**QUIET, **SLOW_MEMBRANE, "v_reset": 450})
    settle(chip)
    release = 10e-6
    trace = chip.record_madc([5, 6], 60e-6, ResetRelease(release))
    tau = chip.true_quantities()["tau_mem"][[5, 6]]
    codes = trace.codes.astype(float)
    final = codes[:, -1:]
    window = (trace.times > release + 1e-6) & (trace.times < release + 2 * tau.min())
    slopes = [
        np.polyfit(trace.times[window], np.log(final[i] - codes[i, window] + 1e-9), 1)[0]
        for i in range(2)
    ]
    assert -1 / np.array(slopes) == pytest.approx(tau, rel=0.1)
    assert np.all(codes[:, (trace.times > 8e-6) & (trace.times < release)].std(axis=1) < 1)


def test_psp_train_peak_is_about_20_lsb_and_gm_moves_it():
    chip = SimulatedChip("psp", mismatch_scale=0, noise_scale=0)
    tau_code = chip.ideal_codes("tau_syn_exc", 10e-6, {"syn_exc_high_resistance": 1})[0]
    chip.write(
        {
            **QUIET,
            **SLOW_MEMBRANE,
            "syn_exc_enable": 1,
            "syn_exc_high_resistance": 1,
            "i_bias_syn_exc_tau": int(tau_code),
            "i_bias_syn_exc_shift": 500,
            "i_bias_syn_exc_gm": 500,
        }
    )
    settle(chip)
    train = SynapticEvents.regular(2e-6, 1e-6, 5)
    baseline = mean_reading(chip, 1)
    peaks = {
        t: mean_reading(chip, 1, stimulus=train, read_time=t) - baseline
        for t in np.arange(6e-6, 26e-6, 2e-6)
    }
    peak = max(np.median(v) for v in peaks.values())
    assert 15 <= peak <= 25
    best_time = max(peaks, key=lambda t: np.median(peaks[t]))
    chip.write({"i_bias_syn_exc_gm": 100})
    small = np.median(mean_reading(chip, 1, stimulus=train, read_time=best_time) - baseline)
    chip.write({"i_bias_syn_exc_gm": 1022})
    large = np.median(mean_reading(chip, 1, stimulus=train, read_time=best_time) - baseline)
    assert 3 <= small <= 8 and 30 <= large <= 60


def test_inhibitory_events_pull_the_membrane_down_and_disabled_inputs_do_nothing():
    chip = SimulatedChip("inhibition", noise_scale=0)
    chip.write(
        {
            **QUIET,
            **SLOW_MEMBRANE,
            "syn_inh_enable": 1,
            "i_bias_syn_inh_tau": 100,
            "syn_inh_high_resistance": 1,
            "i_bias_syn_inh_shift": np.rint(
                SimulatedChip("inhibition").truth.syn_inh_cancel_code
            ).astype(int),
        }
    )
    settle(chip)
    train = SynapticEvents.regular(2e-6, 1e-6, 5, inhibitory=True)
    baseline = mean_reading(chip, 1)
    typical = ~chip.truth.outlier
    dip = mean_reading(chip, 1, stimulus=train, read_time=12e-6) - baseline
    assert np.all(dip[typical] < -5)
    excitatory = SynapticEvents.regular(2e-6, 1e-6, 5)
    assert np.array_equal(mean_reading(chip, 1, stimulus=excitatory, read_time=12e-6), baseline)


def test_madc_response_with_a_fast_membrane_decays_with_tau_syn():
    chip = SimulatedChip("tau-syn", mismatch_scale=0, noise_scale=0)
    chip.write(
        {
            **QUIET,
            "i_bias_leak": 1022,
            "syn_exc_enable": 1,
            "i_bias_syn_exc_shift": 500,
            "i_bias_syn_exc_tau": 60,
            "i_bias_syn_exc_gm": 1022,
        }
    )
    settle(chip)
    tau_syn = chip.true_quantities()["tau_syn_exc"][0]
    event = 10e-6
    trace = chip.record_madc([0], event + 8 * tau_syn, SynapticEvents((event,) * 20))
    codes = trace.codes[0].astype(float) - np.median(trace.codes[0, trace.valid][:100])
    window = (trace.times > event + tau_syn) & (trace.times < event + 3 * tau_syn)
    slope = np.polyfit(trace.times[window], np.log(np.maximum(codes[window], 1e-3)), 1)[0]
    assert -1 / slope == pytest.approx(tau_syn, rel=0.1)


def test_linear_superposition_and_numerical_integration_agree():
    chip = SimulatedChip("agree", noise_scale=0)
    chip.write(
        {
            **CADC_NOMINAL,
            "v_leak": 680,
            "v_threshold": 270,
            "v_reset": 500,
            **SLOW_MEMBRANE,
            "syn_exc_enable": 1,
            "i_bias_syn_exc_shift": 500,
        }
    )
    settle(chip)
    m = chip._membrane().take(np.arange(64))
    drive = Drive.from_stimuli(
        [SynapticEvents.regular(5e-6, 2e-6, 10), CurrentStep(2e-9, 40e-6, 20e-6)]
    )
    grid = _grid(60e-6, 10e-9)
    exact, exact_counts = linear_response(m, drive, grid, m.v_threshold)
    numeric, numeric_counts, _ = integrate(m, drive, grid, m.v_threshold, record=True)
    assert exact_counts.sum() > 20
    assert np.abs(exact_counts - numeric_counts).max() <= 1
    quiet = exact_counts == 0
    assert np.abs(exact[:, quiet] - numeric[:, quiet]).max() < 2e-3


def test_adaptation_lowers_and_the_exponential_term_raises_the_firing_rate():
    chip = SimulatedChip("adex", noise_scale=0)
    chip.write({**CADC_NOMINAL, "v_leak": 680, "v_threshold": 250, **SLOW_MEMBRANE, "v_reset": 500})
    settle(chip)
    plain = chip.count_spikes(200e-6).counts
    # spike-triggered adaptation only: below the leak potential, a > 0 would depolarise
    chip.write({"adaptation_enable": 1, "i_bias_adapt_b": 300, "i_bias_adapt_tau": 200})
    adapted = chip.count_spikes(200e-6).counts
    chip.write({"adaptation_enable": 0, "exponential_enable": 1, "v_exp": 200, "i_bias_exp": 500})
    exponential = chip.count_spikes(200e-6).counts
    typical = ~chip.truth.outlier & (plain > 3)
    assert typical.sum() > 400
    assert np.all(adapted[typical] <= plain[typical])
    assert np.mean(adapted[typical] < plain[typical]) > 0.9
    # the numerical path may place the first spike one interval apart from the closed form
    assert np.all(exponential[typical] >= plain[typical] - 1)
    assert np.mean(exponential[typical] > plain[typical]) > 0.9
    trace = chip.record_madc([7], 40e-6)
    assert trace.codes.shape[0] == 1


def test_current_step_raises_the_membrane():
    chip = SimulatedChip("current", noise_scale=0)
    chip.write({**QUIET, "i_bias_leak": 100, "leak_divide": 1})
    settle(chip)
    rest = mean_reading(chip, 1)
    driven = mean_reading(chip, 1, stimulus=CurrentStep(2e-9, 1e-3), read_time=500e-6)
    g_leak = chip._membrane().g_leak
    expected = 2e-9 / g_leak / p.CADC_NOMINAL_LSB
    ok = (driven < 250) & ~chip.truth.outlier
    assert np.median(np.abs((driven - rest)[ok] - expected[ok])) < 1.5


def test_transient_run_failures_occur_at_the_configured_rate_and_repeat():
    def failures(chip: SimulatedChip) -> list[int]:
        failed = []
        for run in range(300):
            try:
                chip.read_cadc(1)
            except TransientRunError:
                failed.append(run)
        return failed

    faults = Faults(run_failure_rate=0.1)
    first = failures(SimulatedChip("flaky", faults=faults))
    assert 15 <= len(first) <= 50
    assert first == failures(SimulatedChip("flaky", faults=faults))
    chip = SimulatedChip("flaky", faults=faults)
    failures(chip)
    assert chip.stats.runs == 300


def test_a_many_run_madc_recording_fails_as_often_as_a_single_read():
    chip = SimulatedChip("flaky-madc", faults=Faults(run_failure_rate=0.1))
    failed = 0
    for _ in range(150):
        before = chip.stats
        try:
            chip.record_madc(np.arange(64), 10e-6)
        except TransientRunError:
            failed += 1
            assert 1 <= (chip.stats - before).runs <= 32
        else:
            assert (chip.stats - before).runs == 32
    assert 5 <= failed <= 30


def test_fault_preset_and_validation():
    preset = Faults.typical()
    assert 0 < preset.run_failure_rate <= 0.05
    assert preset.dead_fraction == pytest.approx(0.005)
    assert preset.stuck_fraction == pytest.approx(0.005)
    with pytest.raises(ValueError, match="dead_fraction"):
        Faults(dead_fraction=1.5)


def test_dead_neurons_ignore_every_cell_and_stuck_neurons_sit_in_reset():
    faults = Faults(dead_fraction=0.05, stuck_fraction=0.05)
    chip = SimulatedChip("faulty", faults=faults, noise_scale=0)
    dead, stuck = chip.truth.dead, chip.truth.stuck
    assert dead.sum() > 5 and stuck.sum() > 5 and not (dead & stuck).any()
    chip.write({**CADC_NOMINAL, "v_leak": 612, "v_threshold": 300})
    settle(chip)
    low = chip.read_cadc(1)[0]
    chip.write({"v_leak": 900, "v_reset": 800})
    settle(chip)
    high = chip.read_cadc(1)[0]
    assert np.array_equal(low[dead], high[dead])
    counts = chip.count_spikes(100e-6).counts
    assert not counts[dead].any() and not counts[stuck].any()
    assert np.median(counts[~dead & ~stuck]) > 5
    chip.write({"reset_hold": 1})
    settle(chip)
    held = chip.read_cadc(1)[0]
    assert np.array_equal(held[stuck], high[stuck])
    trace = chip.record_madc(np.flatnonzero(dead)[:2], 20e-6, ResetRelease(10e-6))
    assert np.ptp(trace.codes[:, trace.valid]) == 0


def test_drift_moves_offsets_a_little_and_deterministically():
    fresh = SimulatedChip("aging")
    aged = SimulatedChip("aging", drift_hours=24.0)
    again = SimulatedChip("aging", drift_hours=24.0)
    later = SimulatedChip("aging", drift_hours=30.0)
    change = aged.truth.leak_offset - fresh.truth.leak_offset
    expected = p.DRIFT_PER_SQRT_HOUR * np.sqrt(24.0)
    assert 0.8 * expected < change.std() < 1.2 * expected
    assert np.array_equal(aged.truth.leak_offset, again.truth.leak_offset)
    step = later.truth.leak_offset - aged.truth.leak_offset
    assert step.std() < change.std()  # the same path, six hours on
    assert np.array_equal(aged.truth.leak_gain, fresh.truth.leak_gain)


def test_about_one_percent_of_neurons_cannot_reach_a_typical_target():
    unreachable = []
    for index in range(4):
        chip = SimulatedChip(f"yield-{index}")
        chip.write(CADC_NOMINAL)
        for quantity, target, cell_settings in (
            ("leak", 80.0, {}),
            ("reset", 70.0, {}),
            ("threshold", 125.0, {}),
            ("tau_mem", 10e-6, {"leak_divide": 1}),
        ):
            codes = chip.ideal_codes(quantity, target, cell_settings)
            cell = {
                "leak": "v_leak",
                "reset": "v_reset",
                "threshold": "v_threshold",
                "tau_mem": "i_bias_leak",
            }[quantity]
            reached = chip.true_quantities({**cell_settings, cell: codes})[quantity]
            tolerance = 3.0 if quantity != "tau_mem" else 0.1 * target
            unreachable.append(np.abs(reached - target) > tolerance)
    per_neuron = np.array(unreachable).reshape(4, 4, 512).any(axis=1)
    assert 0.002 < per_neuron.mean() < 0.025
    ideal = SimulatedChip("yield-ideal", mismatch_scale=0)
    ideal.write(CADC_NOMINAL)
    codes = ideal.ideal_codes("leak", 80.0)
    assert np.all(np.abs(ideal.true_quantities({"v_leak": codes})["leak"] - 80) < 1)


@pytest.mark.parametrize(
    ("quantity", "cell", "target", "settings"),
    [
        ("leak", "v_leak", 80.0, {}),
        ("reset", "v_reset", 70.0, {}),
        ("threshold", "v_threshold", 125.0, {}),
        ("tau_mem", "i_bias_leak", 10e-6, {"leak_divide": 1}),
        ("tau_syn_exc", "i_bias_syn_exc_tau", 5e-6, {"syn_exc_high_resistance": 1}),
        ("tau_syn_inh", "i_bias_syn_inh_tau", 1e-6, {}),
    ],
)
def test_ideal_codes_beat_every_neighbouring_code(quantity, cell, target, settings):
    chip = SimulatedChip("oracle")
    chip.write({**CADC_NOMINAL, **settings})
    codes = chip.ideal_codes(quantity, target)
    assert codes.dtype == np.int64 and codes.shape == (512,)

    def error(candidate: np.ndarray) -> np.ndarray:
        return np.abs(chip.true_quantities({cell: np.clip(candidate, 0, 1022)})[quantity] - target)

    best = error(codes)
    # moving every neuron at once also moves the quadrant crosstalk a little: allow 0.01 LSB
    slack = 1e-2 if "tau" not in quantity else 1e-9
    for neighbour in (codes - 1, codes + 1, codes - 5, codes + 5):
        valid = (neighbour >= 0) & (neighbour <= 1022)
        assert np.all((best <= error(neighbour) + slack)[valid])
    inside = (codes > 0) & (codes < 1022)
    assert inside.mean() > 0.97


def test_true_quantities_follow_overrides_without_writing():
    chip = SimulatedChip("truth")
    before = chip.read_settings()
    fast = chip.true_quantities({"i_bias_leak": 1000})["tau_mem"]
    slow = chip.true_quantities({"i_bias_leak": 200})["tau_mem"]
    assert np.all(fast < slow)
    after = chip.read_settings()
    assert all(np.array_equal(before[name], after[name]) for name in before)
    assert set(chip.true_quantities()) == {
        "leak",
        "reset",
        "threshold",
        "tau_mem",
        "tau_syn_exc",
        "tau_syn_inh",
        "refractory_time",
        "firing_rate",
        "holdoff_time",
        "psp_per_weight_exc",
        "psp_per_weight_inh",
        "e_coba_exc",
        "e_coba_inh",
    }
