"""The result of fitting one model to a batch of neurons: values, uncertainties, quality, flags.

Every fitting path (the vectorised batch fitter and the lmfit reference) returns a `FitOutcome`.
A neuron whose fit failed or fits poorly is flagged with a reason and its values in `params`
are NaN, so no caller uses them by accident; the raw best-fit values stay in `fitted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from observables.traces import TraceWindow

MAX_REDUCED_CHI_SQUARE = 5.0
"""Fits with a larger reduced chi-square (residuals against the estimated noise) are poor.

A correct model on white noise gives about 1; the margin covers the noise estimate's error
and mildly correlated noise."""
MAX_RELATIVE_ERROR = 0.5
"""A fit whose main quantity has a larger relative standard error is too uncertain to use."""


@dataclass(frozen=True)
class FitOutcome:
    """Fit of one model to each recorded neuron (rows in the order of the trace)."""

    model: str
    neurons: np.ndarray
    """Neuron index of each row."""
    params: dict[str, np.ndarray]
    """Parameter name -> value per row; NaN where the fit failed (see `reasons`)."""
    stderr: dict[str, np.ndarray]
    """Parameter name -> standard error per row; NaN where unknown or failed."""
    redchi: np.ndarray
    """Reduced chi-square per row, residuals weighted by the estimated noise (NaN if no fit)."""
    success: np.ndarray
    """Rows whose values may be used."""
    reasons: tuple[str, ...]
    """Per row: '' on success, otherwise why the row failed."""
    fitted: dict[str, np.ndarray]
    """Raw best-fit values, also of flagged rows (NaN where no fit was attempted)."""
    n_samples: np.ndarray
    """Samples each row's fit used."""

    def __getitem__(self, name: str) -> np.ndarray:
        return self.params[name]

    def failures(self) -> dict[int, str]:
        """Neuron index -> reason, for every failed row."""
        return {
            int(neuron): reason
            for neuron, reason in zip(self.neurons, self.reasons, strict=True)
            if reason
        }

    def per_neuron(self, name: str, n_neurons: int) -> np.ndarray:
        """`params[name]` scattered to shape (n_neurons,), NaN for neurons not recorded."""
        if name not in self.params:
            raise ValueError(f"name {name!r} is not a parameter; known: {sorted(self.params)}")
        values = np.full(n_neurons, np.nan)
        values[self.neurons] = self.params[name]
        return values


def build_outcome(
    model: str,
    window: TraceWindow,
    fitted: Mapping[str, np.ndarray],
    stderr: Mapping[str, np.ndarray],
    redchi: np.ndarray,
    fit_reasons: list[str] | tuple[str, ...],
    n_samples: np.ndarray,
    *,
    key: str | None,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
) -> FitOutcome:
    """Combine window flags, fit flags and the quality checks into a FitOutcome.

    `fit_reasons` holds per row '' or why the fit itself failed (e.g. 'fit did not converge');
    a window flag takes precedence, then the fit's own, then a poor reduced chi-square, then
    an uncertain `key` parameter (the quantity the caller measures, e.g. 'tau'; None skips it).
    """
    if not (np.isfinite(max_redchi) and max_redchi > 0):
        raise ValueError(f"max_redchi must be a finite number > 0, got {max_redchi!r}")
    redchi = np.asarray(redchi, dtype=float)
    reasons = []
    for window_reason, fit_reason, chi in zip(window.reasons, fit_reasons, redchi, strict=True):
        if window_reason:
            reasons.append(window_reason)
        elif fit_reason:
            reasons.append(fit_reason)
        elif not np.isfinite(chi):
            reasons.append("fit did not converge: no reduced chi-square")
        elif chi > max_redchi:
            reasons.append(f"poor fit: reduced chi-square {chi:.3g}")
        else:
            reasons.append("")
    fitted = {name: np.asarray(values, dtype=float) for name, values in fitted.items()}
    outcome = FitOutcome(
        model=model,
        neurons=window.neurons,
        params=fitted,
        stderr={name: np.asarray(values, dtype=float) for name, values in stderr.items()},
        redchi=redchi,
        success=np.array([not reason for reason in reasons], dtype=bool),
        reasons=tuple(reasons),
        fitted=fitted,
        n_samples=np.asarray(n_samples),
    )
    return flag_uncertain(outcome, key) if key is not None else with_reasons(outcome, reasons)


def with_reasons(outcome: FitOutcome, reasons: list[str] | tuple[str, ...]) -> FitOutcome:
    """`outcome` with new per-row reasons; success, params and stderr follow them (NaN where
    a row failed), `fitted` keeps the raw values."""
    success = np.array([not reason for reason in reasons], dtype=bool)
    return replace(
        outcome,
        success=success,
        reasons=tuple(reasons),
        params={name: np.where(success, values, np.nan) for name, values in outcome.fitted.items()},
        stderr={name: np.where(success, values, np.nan) for name, values in outcome.stderr.items()},
    )


def flag_uncertain(
    outcome: FitOutcome, key: str, max_relative_error: float = MAX_RELATIVE_ERROR
) -> FitOutcome:
    """Flag successful rows whose `key` parameter has a relative standard error above
    `max_relative_error` (or none at all)."""
    value = outcome.fitted[key]
    error = outcome.stderr[key]
    with np.errstate(all="ignore"):
        uncertain = ~(error <= max_relative_error * np.abs(value))
    reasons = list(outcome.reasons)
    for row in np.flatnonzero(uncertain & np.array([not r for r in reasons], dtype=bool)):
        reasons[row] = f"uncertain fit: {key} {value[row]:.3g} +- {error[row]:.3g}"
    return with_reasons(outcome, reasons)
