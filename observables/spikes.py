"""Spike-based observables: rates from the spike counters, spike times and inter-spike
intervals from MADC traces (AdEx: ISIs under a current step; f-I curve points)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from device_model.protocol import SPIKE_COUNTER_MAX, SpikeCounts, Trace
from observables.traces import recording_start, select_window

SPIKE_RESET_DROP = 0.05
"""A spike shows in a trace as a reset: the membrane falls by more than this (V) within
RESET_SAMPLES samples. Threshold and reset lie some 100 mV or more apart; noise is ~2.4 mV."""
RESET_SAMPLES = 2
MIN_SPIKES_FOR_INTERVALS = 3
"""Fewest spikes for ISI statistics (two intervals: first and last differ)."""


@dataclass(frozen=True)
class SpikeRates:
    """Firing rate per neuron from the spike counters; NaN where a counter overflowed."""

    rates: np.ndarray
    """Spikes per second (hardware time), shape (n_neurons,)."""
    counts: np.ndarray
    success: np.ndarray
    reasons: dict[int, str]
    """Neuron -> why its rate is NaN."""

    def failures(self) -> dict[int, str]:
        return dict(self.reasons)


def spike_rate(counts: SpikeCounts, duration: float) -> SpikeRates:
    """Spikes per second of each neuron over `duration` seconds (one point of an f-I curve).

    A neuron whose 8-bit counter overflowed fired more than SPIKE_COUNTER_MAX times; its rate is
    unknown: NaN with the reason (measure for a shorter duration).
    """
    if not (isinstance(duration, int | float) and math.isfinite(duration) and duration > 0):
        raise ValueError(f"duration must be a finite time > 0 s, got {duration!r}")
    values = np.asarray(counts.counts)
    overflow = np.asarray(counts.overflow, dtype=bool)
    if values.ndim != 1:
        raise ValueError(f"counts.counts must have shape (n_neurons,), got {values.shape}")
    if overflow.shape != values.shape:
        raise ValueError(
            f"counts.overflow must have the shape of counts.counts {values.shape}, "
            f"got {overflow.shape}"
        )
    if np.any(values < 0):
        raise ValueError(f"counts.counts must be >= 0, got minimum {values.min()}")
    rates = np.where(overflow, np.nan, values / duration)
    limit = (SPIKE_COUNTER_MAX + 1) / duration
    reasons = {
        int(neuron): (
            f"spike counter overflowed: more than {SPIKE_COUNTER_MAX} spikes in {duration:.3g} s "
            f"(rate above {limit:.3g} Hz)"
        )
        for neuron in np.flatnonzero(overflow)
    }
    return SpikeRates(rates=rates, counts=values.copy(), success=~overflow, reasons=reasons)


def spike_times(
    trace: Trace,
    *,
    start_time: float | None = None,
    stop_time: float | None = None,
    min_drop: float = SPIKE_RESET_DROP,
) -> list[np.ndarray]:
    """Spike times (s) of each recorded neuron, in the order of the trace.

    A spike is where the membrane falls by more than `min_drop` volts within RESET_SAMPLES
    samples (the reset); its time is that of the highest sample before the fall. Rows with NaN
    samples give no spikes (`isi_summary` says why).
    """
    begin = recording_start(trace) if start_time is None else start_time
    window = select_window(trace, begin, stop_time, min_samples=2, check_signal=False)
    usable = window.mask & window.usable[:, None]
    rows, times = _resets(window.times, window.volts, usable, min_drop)
    return np.split(times, np.searchsorted(rows, np.arange(1, window.n_rows)))


def _resets(
    times: np.ndarray, volts: np.ndarray, mask: np.ndarray, min_drop: float
) -> tuple[np.ndarray, np.ndarray]:
    """(row, time) of every reset, sorted by row then time."""
    if not (math.isfinite(min_drop) and min_drop > 0):
        raise ValueError(f"min_drop must be a finite voltage > 0 V, got {min_drop!r}")
    if times.size <= RESET_SAMPLES:
        return np.empty(0, dtype=int), np.empty(0)
    fall = volts[:, RESET_SAMPLES:] - volts[:, :-RESET_SAMPLES]
    both_valid = mask[:, RESET_SAMPLES:] & mask[:, :-RESET_SAMPLES]
    falling = both_valid & (fall < -min_drop)
    # A reset spans several falling pairs: keep the first of each run.
    onset = falling & ~np.pad(falling[:, :-1], ((0, 0), (1, 0)))
    rows, columns = np.nonzero(onset)
    # The spike is the highest sample before the fall, not the first of the falling pair.
    before_fall = columns[:, None] + np.arange(RESET_SAMPLES)[None, :]
    peak = np.nanargmax(np.nan_to_num(volts[rows[:, None], before_fall], nan=-np.inf), axis=1)
    return rows, times[columns + peak]


def inter_spike_intervals(times: list[np.ndarray]) -> list[np.ndarray]:
    """Intervals (s) between consecutive spikes, per neuron."""
    return [np.diff(np.asarray(row, dtype=float)) for row in times]


@dataclass(frozen=True)
class IsiSummary:
    """Inter-spike interval statistics per recorded neuron (rows in the order of the trace).

    NaN where a neuron has fewer than `min_spikes` spikes or an unusable trace (see reasons).
    """

    neurons: np.ndarray
    n_spikes: np.ndarray
    first: np.ndarray
    """First interval (s): the onset response to a current step."""
    last: np.ndarray
    """Last interval (s): closest to the adapted, steady state."""
    mean: np.ndarray
    rate: np.ndarray
    """1 / mean interval (Hz)."""
    adaptation_index: np.ndarray
    """Mean of (ISI[k+1] - ISI[k]) / (ISI[k+1] + ISI[k]): 0 without adaptation, > 0 when the
    intervals lengthen."""
    success: np.ndarray
    reasons: tuple[str, ...]

    def failures(self) -> dict[int, str]:
        return {
            int(neuron): reason
            for neuron, reason in zip(self.neurons, self.reasons, strict=True)
            if reason
        }


def isi_summary(
    trace: Trace,
    *,
    start_time: float | None = None,
    stop_time: float | None = None,
    min_drop: float = SPIKE_RESET_DROP,
    min_spikes: int = MIN_SPIKES_FOR_INTERVALS,
) -> IsiSummary:
    """ISI statistics of each recorded neuron between `start_time` and `stop_time` (e.g. while
    a current step is on), computed for all neurons together."""
    if not (isinstance(min_spikes, int) and min_spikes >= 2):
        raise ValueError(f"min_spikes must be an integer >= 2, got {min_spikes!r}")
    begin = recording_start(trace) if start_time is None else start_time
    window = select_window(trace, begin, stop_time, min_samples=2, check_signal=False)
    rows, times = _resets(
        window.times, window.volts, window.mask & window.usable[:, None], min_drop
    )
    n_rows = window.n_rows
    n_spikes = np.bincount(rows, minlength=n_rows)
    # All intervals in one flat array with their row: statistics by bincount, no row loop.
    within = rows[1:] == rows[:-1]
    intervals = (times[1:] - times[:-1])[within]
    owner = rows[1:][within]
    n_intervals = np.bincount(owner, minlength=n_rows)
    enough = (n_spikes >= min_spikes) & window.usable
    with np.errstate(all="ignore"):
        mean = np.bincount(owner, intervals, minlength=n_rows) / n_intervals
        first_index = np.concatenate([[0], np.cumsum(n_intervals)[:-1]])
        last_index = first_index + n_intervals - 1
        padded = np.append(intervals, np.nan)
        first = padded[np.where(n_intervals > 0, first_index, -1)]
        last = padded[np.where(n_intervals > 0, last_index, -1)]
        same_row = owner[1:] == owner[:-1]
        change = (intervals[1:] - intervals[:-1]) / (intervals[1:] + intervals[:-1])
        pairs = np.bincount(owner[1:][same_row], minlength=n_rows)
        adaptation = np.bincount(owner[1:][same_row], change[same_row], minlength=n_rows) / pairs
    reasons = list(window.reasons)
    for row in np.flatnonzero(~enough & window.usable):
        reasons[row] = f"too few spikes: {n_spikes[row]} < {min_spikes}"

    def masked(values: np.ndarray) -> np.ndarray:
        return np.where(enough, values, np.nan)

    return IsiSummary(
        neurons=window.neurons,
        n_spikes=n_spikes,
        first=masked(first),
        last=masked(last),
        mean=masked(mean),
        rate=masked(1.0 / mean),
        adaptation_index=masked(adaptation),
        success=enough,
        reasons=tuple(reasons),
    )
