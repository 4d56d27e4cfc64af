"""MADC traces: pick the usable samples of a time window, convert to volts, flag bad neurons.

A `TraceWindow` keeps every recorded neuron in the order of the trace. Neurons whose window
cannot be fitted carry a reason ('NaN in trace', 'too few valid samples: 4 < 10', 'flat trace:
no signal above noise', ...) and are skipped by the fitters; the others go on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from device_model.protocol import MADC_MAX, Trace

MADC_VOLTS_PER_CODE = 1.6e-3
"""MADC step size: volts per code (1.6 mV per LSB)."""
MADC_VOLTS_AT_CODE_ZERO = -0.17
"""Membrane voltage that reads as MADC code 0."""
QUANTISATION_NOISE = MADC_VOLTS_PER_CODE / math.sqrt(12.0)
"""Standard deviation of rounding to one MADC code: the noise floor of any trace (V)."""
MIN_FIT_SAMPLES = 10
"""Fewest usable samples a neuron's window needs before a fit is attempted."""
FLAT_SIGNAL_TO_NOISE = 1.0
"""A window whose signal (sample spread beyond the noise) is below this many noise sigmas is
flat: there is nothing to fit."""
MAX_CLIPPED_FRACTION = 0.01
"""A window with more than this fraction of samples at code 0 or MADC_MAX is clipped."""
MAD_TO_SIGMA = 1.4826
"""Median absolute deviation to standard deviation, for Gaussian noise."""


def madc_to_volts(codes: np.ndarray) -> np.ndarray:
    """Membrane voltage (V) of MADC codes: code * 1.6 mV - 0.17 V."""
    return np.asarray(codes, dtype=float) * MADC_VOLTS_PER_CODE + MADC_VOLTS_AT_CODE_ZERO


def volts_to_madc(volts: np.ndarray) -> np.ndarray:
    """The (unrounded) MADC code of a membrane voltage; inverse of `madc_to_volts`."""
    return (np.asarray(volts, dtype=float) - MADC_VOLTS_AT_CODE_ZERO) / MADC_VOLTS_PER_CODE


@dataclass(frozen=True)
class TraceWindow:
    """The usable part of a trace within a time window, one row per recorded neuron.

    `volts` is NaN wherever `mask` is False. `reasons[i]` is '' for a neuron that can be fitted
    and says why not otherwise.
    """

    neurons: np.ndarray
    """Neuron index of each row, in the order of the trace."""
    times: np.ndarray
    """Sample times (s), shape (n_samples,), shared by every row."""
    volts: np.ndarray
    """Membrane voltage (V), shape (n_rows, n_samples)."""
    mask: np.ndarray
    """Usable samples, shape (n_rows, n_samples)."""
    noise: np.ndarray
    """Estimated noise standard deviation (V) per row, never below QUANTISATION_NOISE."""
    reasons: tuple[str, ...]

    @property
    def n_rows(self) -> int:
        return int(self.volts.shape[0])

    @property
    def usable(self) -> np.ndarray:
        """Rows that can be fitted."""
        return np.array([not reason for reason in self.reasons], dtype=bool)

    @property
    def sample_interval(self) -> float:
        if self.times.size < 2:
            return 1.0 / 29.4e6
        return float(np.median(np.diff(self.times)))


def validate_trace(trace: Trace) -> None:
    """Check the shapes of a trace; ValueError names the field and what was expected."""
    codes = np.asarray(trace.codes)
    times = np.asarray(trace.times)
    neurons = np.asarray(trace.neurons)
    valid = np.asarray(trace.valid)
    if codes.ndim != 2:
        raise ValueError(f"trace.codes must have shape (n_neurons, n_samples), got {codes.shape}")
    if times.shape != (codes.shape[1],):
        raise ValueError(
            f"trace.times must have shape ({codes.shape[1]},) to match trace.codes "
            f"{codes.shape}, got {times.shape}"
        )
    if neurons.shape != (codes.shape[0],):
        raise ValueError(
            f"trace.neurons must have shape ({codes.shape[0]},) to match trace.codes "
            f"{codes.shape}, got {neurons.shape}"
        )
    if valid.shape not in (times.shape, codes.shape):
        raise ValueError(
            f"trace.valid must have shape {times.shape} or {codes.shape}, got {valid.shape}"
        )
    if times.size > 1 and not np.all(np.diff(times) > 0):
        raise ValueError("trace.times must increase strictly")


def estimate_noise(volts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Noise sigma per row from consecutive-sample differences (robust to the signal itself).

    The median absolute deviation of first differences ignores the few large steps of a fast
    decay, so the estimate stays that of the noise. Floored at the quantisation noise.
    """
    pairs = mask[:, 1:] & mask[:, :-1]
    steps = np.where(pairs, np.diff(np.where(mask, volts, 0.0), axis=1), np.nan)
    with _quiet_nan_warnings():
        centre = np.nanmedian(steps, axis=1, keepdims=True)
        mad = np.nanmedian(np.abs(steps - centre), axis=1)
    sigma = MAD_TO_SIGMA * mad / math.sqrt(2.0)
    return np.fmax(np.nan_to_num(sigma, nan=0.0), QUANTISATION_NOISE)


def select_window(
    trace: Trace,
    start_time: float,
    stop_time: float | None = None,
    *,
    min_samples: int = MIN_FIT_SAMPLES,
) -> TraceWindow:
    """The valid samples of `trace` with start_time <= t <= stop_time, in volts, with flags.

    Flags per neuron, first match wins: 'NaN in trace' (a non-finite code among the valid
    samples of the window), 'too few valid samples', 'trace clipped at the MADC range',
    'flat trace: no signal above noise'.
    """
    validate_trace(trace)
    if not math.isfinite(start_time):
        raise ValueError(f"start_time must be a finite time in s, got {start_time!r}")
    if stop_time is not None and not (math.isfinite(stop_time) and stop_time > start_time):
        raise ValueError(
            f"stop_time must be a finite time after start_time ({start_time!r} s), "
            f"got {stop_time!r}"
        )
    if not (isinstance(min_samples, int | np.integer) and min_samples >= 2):
        raise ValueError(f"min_samples must be an integer >= 2, got {min_samples!r}")

    times = np.asarray(trace.times, dtype=float)
    codes = np.asarray(trace.codes, dtype=float)
    valid = np.broadcast_to(np.asarray(trace.valid, dtype=bool), codes.shape)
    in_window = times >= start_time
    if stop_time is not None:
        in_window &= times <= stop_time
    columns = np.flatnonzero(in_window & valid.any(axis=0))
    if columns.size:
        columns = np.arange(columns[0], columns[-1] + 1)
    times = times[columns]
    codes = codes[:, columns]
    mask = valid[:, columns] & in_window[columns]

    has_nan = (mask & ~np.isfinite(codes)).any(axis=1)
    mask &= np.isfinite(codes)
    volts = np.where(mask, madc_to_volts(np.where(mask, codes, 0.0)), np.nan)
    counts = mask.sum(axis=1)
    clipped = (mask & ((codes <= 0) | (codes >= MADC_MAX))).sum(axis=1)
    noise = estimate_noise(volts, mask)
    with _quiet_nan_warnings():
        spread = np.nanstd(volts, axis=1)
    signal = np.sqrt(np.fmax(np.nan_to_num(spread, nan=0.0) ** 2 - noise**2, 0.0))
    flat = signal < FLAT_SIGNAL_TO_NOISE * noise

    too_few = counts < min_samples
    is_clipped = clipped > MAX_CLIPPED_FRACTION * counts
    reasons = [""] * codes.shape[0]
    # Only flagged rows get a message; the first matching flag wins.
    for row in np.flatnonzero(has_nan | too_few | is_clipped | flat):
        if has_nan[row]:
            reasons[row] = "NaN in trace"
        elif too_few[row]:
            reasons[row] = f"too few valid samples: {counts[row]} < {min_samples}"
        elif is_clipped[row]:
            reasons[row] = f"trace clipped at the MADC range: {clipped[row]} samples"
        else:
            reasons[row] = "flat trace: no signal above noise"
    return TraceWindow(
        neurons=np.asarray(trace.neurons).copy(),
        times=times,
        volts=volts,
        mask=mask,
        noise=noise,
        reasons=tuple(reasons),
    )


@contextmanager
def _quiet_nan_warnings() -> Iterator[None]:
    """Silence 'all-NaN slice' warnings: all-NaN rows are flagged, not errors."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
