"""Synthetic MADC traces with known parameters, for tests, benchmarks and studies.

Voltages follow the fitted models exactly, are converted to MADC codes with Gaussian noise and
rounding, and carry the same invalid first 8 µs as a real recording.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import MADC_INVALID_TIME, MADC_MAX, MADC_SAMPLE_RATE, Trace
from observables.batch_fit import psp_shape
from observables.traces import volts_to_madc

MADC_NOISE_LSB = 1.5
"""MADC noise of the reference chip, in codes."""


def sample_times(duration: float) -> np.ndarray:
    """MADC sample times (s) of a recording of `duration` seconds."""
    return np.arange(round(duration * MADC_SAMPLE_RATE)) / MADC_SAMPLE_RATE


def trace_from_volts(
    times: np.ndarray,
    volts: np.ndarray,
    *,
    noise_lsb: float = MADC_NOISE_LSB,
    seed: int = 0,
    neurons: ArrayLike | None = None,
) -> Trace:
    """A Trace of `volts` (rows, samples): noise added, rounded and clipped to MADC codes."""
    rng = np.random.default_rng(seed)
    codes = volts_to_madc(volts) + noise_lsb * rng.standard_normal(volts.shape)
    codes = np.clip(np.round(codes), 0, MADC_MAX)
    rows = volts.shape[0]
    return Trace(
        neurons=np.arange(rows) if neurons is None else np.asarray(neurons),
        times=times,
        codes=codes,
        valid=times >= MADC_INVALID_TIME,
    )


def decay_trace(
    taus: ArrayLike,
    duration: float,
    *,
    release_time: float = 10e-6,
    reset: ArrayLike = 0.35,
    leak: ArrayLike = 0.55,
    noise_lsb: float = MADC_NOISE_LSB,
    seed: int = 0,
) -> Trace:
    """Neurons held at `reset` (V) until `release_time`, then relaxing to `leak` with `taus`
    (each a scalar or one value per neuron)."""
    taus = np.atleast_1d(np.asarray(taus, dtype=float))
    reset = np.broadcast_to(np.asarray(reset, dtype=float), taus.shape)[:, None]
    leak = np.broadcast_to(np.asarray(leak, dtype=float), taus.shape)[:, None]
    times = sample_times(duration)
    elapsed = np.fmax(times - release_time, 0.0)
    volts = leak + (reset - leak) * np.exp(-elapsed[None, :] / taus[:, None])
    return trace_from_volts(times, volts, noise_lsb=noise_lsb, seed=seed)


def psp_trace(
    tau_mem: ArrayLike,
    tau_syn: ArrayLike,
    duration: float,
    *,
    onset: float = 15e-6,
    amplitude: float = 0.08,
    rest: float = 0.45,
    noise_lsb: float = MADC_NOISE_LSB,
    seed: int = 0,
) -> Trace:
    """Post-synaptic potentials rest + amplitude * (exp(-s/tau_syn) - exp(-s/tau_mem))."""
    tau_mem = np.atleast_1d(np.asarray(tau_mem, dtype=float))
    tau_syn = np.atleast_1d(np.asarray(tau_syn, dtype=float))
    tau_mem, tau_syn = np.broadcast_arrays(tau_mem, tau_syn)
    times = sample_times(duration)
    shape = psp_shape(times[None, :] - onset, tau_mem[:, None], tau_syn[:, None])
    return trace_from_volts(times, rest + amplitude * shape, noise_lsb=noise_lsb, seed=seed)


def spiking_trace(
    spike_times: list[ArrayLike],
    duration: float,
    *,
    reset: float = 0.3,
    threshold: float = 0.55,
    noise_lsb: float = MADC_NOISE_LSB,
    seed: int = 0,
) -> Trace:
    """Membranes rising linearly from `reset` to `threshold` between the given spike times and
    reset at each (a sawtooth; enough to test spike detection)."""
    times = sample_times(duration)
    volts = np.full((len(spike_times), times.size), reset)
    for row, spikes in enumerate(spike_times):
        previous = 0.0
        for spike in np.asarray(spikes, dtype=float):
            between = (times > previous) & (times <= spike)
            volts[row, between] = reset + (threshold - reset) * (
                (times[between] - previous) / (spike - previous)
            )
            previous = spike
    return trace_from_volts(times, volts, noise_lsb=noise_lsb, seed=seed)
