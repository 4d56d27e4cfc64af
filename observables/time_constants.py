"""Time constants from MADC traces: membrane (decay after a reset release) and synaptic (PSP).

These are the measurement procedures routines call; each returns a `FitOutcome` with one row
per recorded neuron, in the order of the trace, values in seconds and volts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

import numpy as np

from device_model.protocol import Trace
from observables.batch_fit import fit_exponential_batch, fit_psp_batch, per_row, psp_peak
from observables.outcome import MAX_REDUCED_CHI_SQUARE, FitOutcome
from observables.traces import MIN_FIT_SAMPLES, TraceWindow, recording_start, select_window

Method = Literal["batch", "lmfit"]
METHODS = ("batch", "lmfit")
PspFit = Literal["psp", "tail"]
PSP_FITS = ("psp", "tail")


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {allowed}, got {value!r}")


def decay_time_constants(
    trace: Trace,
    start_time: float,
    *,
    stop_time: float | None = None,
    method: Method = "batch",
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
    min_samples: int = MIN_FIT_SAMPLES,
) -> FitOutcome:
    """Exponential decay time constant per recorded neuron, from `start_time` on.

    Fits offset + amplitude * exp(-(t - start_time) / tau) to the valid samples in
    [start_time, stop_time] (the rest of the trace by default), e.g. the relaxation towards the
    leak potential after a reset release at `start_time`. `params['tau']` holds tau in seconds,
    NaN for flagged neurons (see `reasons`). `method` 'batch' fits all neurons at once; 'lmfit'
    fits one by one with lmfit (the reference, slower).
    """
    _check_choice("method", method, METHODS)
    window = select_window(trace, start_time, stop_time, min_samples=min_samples)
    if method == "batch":
        return fit_exponential_batch(window, start_time, max_redchi=max_redchi)
    from observables.fitting import fit_exponential_lmfit  # lmfit: imported when asked for

    return fit_exponential_lmfit(window, start_time, max_redchi=max_redchi)


def psp_time_constants(
    trace: Trace,
    event_time: float,
    *,
    tau_mem: float | np.ndarray | None = None,
    fit: PspFit = "psp",
    start_time: float | None = None,
    stop_time: float | None = None,
    method: Method = "batch",
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
    min_samples: int = MIN_FIT_SAMPLES,
) -> FitOutcome:
    """Synaptic time constant per recorded neuron from its response to one event at `event_time`.

    fit='psp' fits the whole post-synaptic potential (params 'offset', 'amplitude', 'tau_mem',
    'tau_syn', 'onset'). With `tau_mem` (scalar or one value per recorded neuron) the membrane
    constant is held at it; without, both are fitted and the slower one is reported as tau_syn
    (measure with tau_mem well below tau_syn).

    fit='tail' fits an exponential to the decay after the peak (params 'offset', 'amplitude' at
    event_time, 'tau_syn'): when tau_mem is much shorter than tau_syn the response decays with
    tau_syn. `tau_mem` is not used then.

    The window runs from `start_time` (default: the first valid sample, so a baseline before the
    event helps) to `stop_time` (default: the end of the trace); it should hold one event only.
    """
    _check_choice("method", method, METHODS)
    _check_choice("fit", fit, PSP_FITS)
    if not np.isfinite(event_time):
        raise ValueError(f"event_time must be a finite time in s, got {event_time!r}")
    begin = recording_start(trace) if start_time is None else start_time
    if begin > event_time:
        raise ValueError(
            f"start_time ({begin!r} s) must not be later than event_time ({event_time!r} s)"
        )
    window = select_window(trace, begin, stop_time, min_samples=min_samples)
    if fit == "tail":
        tail = _after_peak(window, event_time, min_samples)
        if method == "batch":
            outcome = fit_exponential_batch(tail, event_time, max_redchi=max_redchi)
        else:
            from observables.fitting import fit_exponential_lmfit

            outcome = fit_exponential_lmfit(tail, event_time, max_redchi=max_redchi)
        return _renamed(outcome, "tau", "tau_syn")
    fixed = per_row("tau_mem", tau_mem, window.n_rows)
    if method == "batch":
        return fit_psp_batch(window, event_time, tau_mem=fixed, max_redchi=max_redchi)
    from observables.fitting import fit_psp_lmfit

    return fit_psp_lmfit(window, event_time, tau_mem=fixed, max_redchi=max_redchi)


def _after_peak(window: TraceWindow, event_time: float, min_samples: int) -> TraceWindow:
    """The window restricted, row by row, to the samples from the response's peak on."""
    values = np.where(window.mask, window.volts, 0.0)
    _, peak_time = psp_peak(window.times, values, window.mask.astype(float), event_time)
    mask = window.mask & (window.times[None, :] >= peak_time[:, None])
    counts = mask.sum(axis=1)
    reasons = tuple(
        reason
        or (
            f"too few valid samples after the peak: {count} < {min_samples}"
            if count < min_samples
            else ""
        )
        for reason, count in zip(window.reasons, counts, strict=True)
    )
    return replace(window, mask=mask, volts=np.where(mask, window.volts, np.nan), reasons=reasons)


def _renamed(outcome: FitOutcome, old: str, new: str) -> FitOutcome:
    def rename(mapping: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {(new if key == old else key): value for key, value in mapping.items()}

    return replace(
        outcome,
        params=rename(outcome.params),
        stderr=rename(outcome.stderr),
        fitted=rename(outcome.fitted),
    )
