"""Time constants from MADC traces: membrane (decay after a reset release) and synaptic (PSP).

These are the measurement procedures routines call; each returns a `FitOutcome` with one row
per recorded neuron, in the order of the trace.
"""

from __future__ import annotations

from typing import Literal

from device_model.protocol import Trace
from observables.batch_fit import fit_exponential_batch
from observables.outcome import MAX_REDUCED_CHI_SQUARE, FitOutcome
from observables.traces import MIN_FIT_SAMPLES, select_window

Method = Literal["batch", "lmfit"]
METHODS = ("batch", "lmfit")


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


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
    [start_time, stop_time] (the whole rest of the trace by default). `params['tau']` holds tau
    in seconds, NaN for flagged neurons (see `reasons`).
    """
    _check_method(method)
    window = select_window(trace, start_time, stop_time, min_samples=min_samples)
    if method == "batch":
        return fit_exponential_batch(window, start_time, max_redchi=max_redchi)
    from observables.fitting import fit_exponential_lmfit

    return fit_exponential_lmfit(window, start_time, max_redchi=max_redchi)
