"""MADC traces: pick the usable samples of a time window, convert to volts, flag bad neurons.

A `TraceWindow` keeps every recorded neuron in the order of the trace. Neurons whose window
cannot be fitted carry a reason ('NaN in trace', 'too few valid samples: 4 < 10', 'flat trace:
no signal above noise', ...) and are skipped by the fitters; the others go on.
"""

from __future__ import annotations

import math
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
NOISE_CLIP_SIGMAS = 4.0
"""Sample-to-sample steps beyond this many sigmas are signal, not noise."""
NOISE_CLIP_ROUNDS = 2
NOISE_SUBSAMPLE_COLUMNS = 256
"""Columns whose median step sets the first clip level of the noise estimate."""


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


def bin_trace(trace: Trace, factor: int) -> Trace:
    """Average every `factor` consecutive samples into one (the ragged end is dropped).

    MADC traces sample far faster than the time constants calibrated here; fitting the bin
    means costs `factor` times less and loses nothing for an exponential (the average of an
    exponential over a bin is the exponential at the bin's centre times a constant). A bin is
    valid only when all its samples are.
    """
    if not (isinstance(factor, int | np.integer) and factor >= 1):
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    validate_trace(trace)
    if factor == 1:
        return trace
    n_bins = trace.times.shape[0] // factor
    if n_bins == 0:
        raise ValueError(f"factor {factor} exceeds the trace's {trace.times.shape[0]} samples")
    used = n_bins * factor

    def mean(array: np.ndarray) -> np.ndarray:
        shaped = np.asarray(array[..., :used], dtype=float)
        return shaped.reshape(*shaped.shape[:-1], n_bins, factor).mean(axis=-1)

    valid = np.asarray(trace.valid, dtype=bool)
    return Trace(
        neurons=trace.neurons,
        times=mean(trace.times),
        codes=mean(trace.codes),
        valid=valid[..., :used].reshape(*valid.shape[:-1], n_bins, factor).all(axis=-1),
    )


def recording_start(trace: Trace) -> float:
    """Time of the first sample of `trace` (0 for an empty one), after checking its shapes."""
    validate_trace(trace)
    times = np.asarray(trace.times, dtype=float)
    return float(times[0]) if times.size else 0.0


def estimate_noise(volts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Noise sigma per row from consecutive-sample differences, robust to the signal itself.

    Steps beyond NOISE_CLIP_SIGMAS sigmas (the few large steps of a fast decay, a spike's
    reset) are signal and left out; the rest give a standard deviation, refined twice. The
    first clip level comes from the median step of a subsample of columns. (A median of all
    steps would not do as the estimate itself: on integer MADC codes it moves in whole codes.)
    Floored at the quantisation noise.
    """
    filled = np.where(mask, volts, 0.0)
    steps = np.diff(filled, axis=1)
    pairs = mask[:, 1:] & mask[:, :-1]
    rows = np.arange(volts.shape[0])
    sigma = np.zeros(volts.shape[0])
    if steps.shape[1] == 0:
        return np.full(volts.shape[0], QUANTISATION_NOISE)
    columns = np.unique(np.linspace(0, steps.shape[1] - 1, NOISE_SUBSAMPLE_COLUMNS).astype(int))
    sub_pairs = pairs[:, columns]
    ordered = np.sort(np.where(sub_pairs, np.abs(steps[:, columns]), np.inf), axis=1)
    middle = np.fmax(sub_pairs.sum(axis=1) - 1, 0) // 2
    median_step = np.where(sub_pairs.any(axis=1), ordered[rows, middle], 0.0)
    step_sigma = np.fmax(MAD_TO_SIGMA * median_step, MADC_VOLTS_PER_CODE)
    for _ in range(NOISE_CLIP_ROUNDS):
        kept = pairs & (np.abs(steps) <= NOISE_CLIP_SIGMAS * step_sigma[:, None])
        count = np.fmax(kept.sum(axis=1), 1)
        kept_steps = np.where(kept, steps, 0.0)
        mean = kept_steps.sum(axis=1) / count
        variance = np.einsum("ij,ij->i", kept_steps, kept_steps) / count - mean**2
        step_sigma = np.sqrt(np.fmax(variance, 0.0))
        sigma = step_sigma / math.sqrt(2.0)
        step_sigma = np.fmax(step_sigma, MADC_VOLTS_PER_CODE)
    return np.fmax(sigma, QUANTISATION_NOISE)


def select_window(
    trace: Trace,
    start_time: float,
    stop_time: float | None = None,
    *,
    min_samples: int = MIN_FIT_SAMPLES,
    check_signal: bool = True,
) -> TraceWindow:
    """The valid samples of `trace` with start_time <= t <= stop_time, in volts, with flags.

    Flags per neuron, first match wins: 'NaN in trace' (a non-finite code among the valid
    samples of the window), 'too few valid samples', and with `check_signal` (what a fit
    needs) 'trace clipped at the MADC range', 'flat trace: no signal above noise'.
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
    valid = np.asarray(trace.valid, dtype=bool)
    in_window = times >= start_time
    if stop_time is not None:
        in_window &= times <= stop_time
    usable_columns = in_window & (valid if valid.ndim == 1 else valid.any(axis=0))
    columns = np.flatnonzero(usable_columns)
    window = slice(columns[0], columns[-1] + 1) if columns.size else slice(0, 0)
    times = times[window]
    codes = np.asarray(trace.codes)[:, window].astype(float)
    mask = np.isfinite(codes)
    has_nan = ~mask.all(axis=1)
    if valid.ndim == 1:
        has_nan = (~mask & usable_columns[window]).any(axis=1) if has_nan.any() else has_nan
        if not usable_columns[window].all():
            mask &= usable_columns[window]
    else:
        usable = valid[:, window] & in_window[window]
        has_nan = (~mask & usable).any(axis=1)
        mask &= usable
    volts = madc_to_volts(codes)
    volts[~mask] = np.nan
    counts = mask.sum(axis=1)
    clipped = (((codes <= 0) | (codes >= MADC_MAX)) & mask).sum(axis=1)
    noise = estimate_noise(volts, mask)
    filled = np.where(mask, volts, 0.0)
    with np.errstate(all="ignore"):
        mean = filled.sum(axis=1) / counts
        spread = np.einsum("ij,ij->i", filled, filled) / counts - mean**2
    signal = np.sqrt(np.fmax(np.nan_to_num(spread, nan=0.0) - noise**2, 0.0))
    flat = signal < FLAT_SIGNAL_TO_NOISE * noise

    too_few = counts < min_samples
    is_clipped = clipped > MAX_CLIPPED_FRACTION * counts
    if not check_signal:
        is_clipped[:] = False
        flat[:] = False
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
