"""CADC averages and spike-based observables."""

import numpy as np
import pytest

from device_model.protocol import N_NEURONS, SpikeCounts, Trace
from device_model.stimuli import ResetRelease
from observables import (
    cadc_max,
    cadc_mean,
    cadc_standard_error,
    inter_spike_intervals,
    isi_summary,
    spike_rate,
    spike_times,
)
from observables.synthetic import sample_times, spiking_trace


class FakeCadcDevice:
    """Implements just what the CADC helpers use: reads drawn around a known level."""

    chip_id = "fake-0"
    n_neurons = N_NEURONS

    def __init__(self, level: np.ndarray, noise: float = 1.0, wrong_shape: bool = False):
        self.level = level
        self.noise = noise
        self.wrong_shape = wrong_shape
        self.calls: list[dict] = []
        self.rng = np.random.default_rng(0)

    def read_cadc(self, samples=1, stimulus=None, read_time=None):
        self.calls.append({"samples": samples, "stimulus": stimulus, "read_time": read_time})
        reads = self.level + self.noise * self.rng.standard_normal((samples, self.n_neurons))
        codes = np.clip(np.round(reads), 0, 255).astype(np.uint8)
        return codes.T if self.wrong_shape else codes


LEVEL = np.linspace(40.0, 200.0, N_NEURONS)


def test_cadc_mean_averages_the_reads_of_each_neuron():
    device = FakeCadcDevice(LEVEL)
    mean = cadc_mean(device, samples=400)
    assert mean.shape == (N_NEURONS,) and mean.dtype == float
    np.testing.assert_allclose(mean, LEVEL, atol=0.25)
    assert device.calls == [{"samples": 400, "stimulus": None, "read_time": None}]


def test_cadc_read_arguments_reach_the_device():
    device = FakeCadcDevice(LEVEL)
    stimulus = ResetRelease(2e-6)
    cadc_mean(device, 3, stimulus=stimulus, read_time=5e-6)
    assert device.calls == [{"samples": 3, "stimulus": stimulus, "read_time": 5e-6}]


def test_cadc_max_is_the_largest_read():
    device = FakeCadcDevice(LEVEL, noise=3.0)
    highest = cadc_max(device, samples=200)
    assert np.all(highest >= LEVEL + 3.0)  # 200 reads reach well above one sigma
    assert np.all(highest <= LEVEL + 20.0)


def test_cadc_standard_error_shrinks_with_samples():
    device = FakeCadcDevice(LEVEL, noise=2.0)
    _, error = cadc_standard_error(device, samples=100)
    np.testing.assert_allclose(np.median(error), 2.0 / 10.0, rtol=0.2)


def test_cadc_bad_arguments_and_bad_device_answers_raise():
    with pytest.raises(ValueError, match="samples"):
        cadc_mean(FakeCadcDevice(LEVEL), samples=0)
    with pytest.raises(ValueError, match="samples"):
        cadc_max(FakeCadcDevice(LEVEL), samples=2.5)
    with pytest.raises(ValueError, match="samples"):
        cadc_standard_error(FakeCadcDevice(LEVEL), samples=1)
    with pytest.raises(ValueError, match="shape"):
        cadc_mean(FakeCadcDevice(LEVEL, wrong_shape=True), samples=3)


def test_spike_rates_flag_overflowed_counters():
    counts = np.array([0, 10, 255, 17])
    overflow = np.array([False, False, True, False])
    rates = spike_rate(SpikeCounts(counts, overflow), 1e-3)
    np.testing.assert_allclose(rates.rates[[0, 1, 3]], [0.0, 1e4, 1.7e4])
    assert np.isnan(rates.rates[2])
    np.testing.assert_array_equal(rates.success, ~overflow)
    assert list(rates.failures()) == [2]
    assert rates.failures()[2].startswith("spike counter overflowed")


def test_spike_rate_rejects_bad_input():
    counts = SpikeCounts(np.array([1, 2]), np.array([False, False]))
    with pytest.raises(ValueError, match="duration"):
        spike_rate(counts, 0.0)
    with pytest.raises(ValueError, match="overflow"):
        spike_rate(SpikeCounts(np.array([1, 2]), np.array([False])), 1e-3)
    with pytest.raises(ValueError, match="counts"):
        spike_rate(SpikeCounts(np.ones((2, 2)), np.zeros((2, 2), bool)), 1e-3)


REGULAR = np.arange(12e-6, 60e-6, 4e-6)
ADAPTING = 12e-6 + np.cumsum(np.linspace(2e-6, 6e-6, 8))


def test_spike_times_are_found_at_each_reset():
    trace = spiking_trace([REGULAR, ADAPTING, []], 60e-6)
    found = spike_times(trace)
    interval = sample_times(1e-6)[1]
    for detected, true in zip(found, [REGULAR, ADAPTING, []], strict=True):
        true = np.asarray(true)
        true = true[true < 60e-6 - 2 * interval]
        assert detected.size == true.size
        np.testing.assert_allclose(detected, true, atol=2.5 * interval)  # noise: a sample or two
    np.testing.assert_allclose(inter_spike_intervals(found)[0], 4e-6, atol=2 * interval)


def test_isi_summary_describes_regular_and_adapting_neurons():
    trace = spiking_trace([REGULAR, ADAPTING, [20e-6, 40e-6]], 60e-6)
    summary = isi_summary(trace, start_time=10e-6)
    np.testing.assert_allclose(summary.mean[0], 4e-6, rtol=0.02)
    np.testing.assert_allclose(summary.rate[0], 2.5e5, rtol=0.02)
    assert abs(summary.adaptation_index[0]) < 0.02
    assert summary.last[1] > 2.0 * summary.first[1]
    assert summary.adaptation_index[1] > 0.05
    assert not summary.success[2]
    assert summary.reasons[2] == "too few spikes: 2 < 3"
    assert np.isnan(summary.mean[2])


def test_isi_summary_flags_a_broken_trace_and_goes_on():
    trace = spiking_trace([REGULAR, REGULAR], 60e-6)
    codes = trace.codes.copy()
    codes[0, 500] = np.nan
    broken = Trace(trace.neurons, trace.times, codes, trace.valid)
    summary = isi_summary(broken)
    assert summary.reasons[0] == "NaN in trace"
    assert summary.success[1]
    assert spike_times(broken)[0].size == 0
