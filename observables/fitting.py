"""lmfit models of MADC traces, and the per-neuron lmfit path for any model.

lmfit is the reference the batch fitter is checked against, and the way to fit a model the batch
fitter does not know: `fit_with_lmfit(window, model, guess)` takes any `lmfit.Model` and a guess
function and returns the same `FitOutcome` as the batch fitter. It loops over neurons, so it is
slower; use it for studies and checks, the batch fitter in calibration loops.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

import lmfit
import numpy as np

from observables.batch_fit import per_row, psp_shape, psp_start, tau_search_range
from observables.outcome import (
    MAX_REDUCED_CHI_SQUARE,
    FitOutcome,
    build_outcome,
    flag_uncertain,
    with_reasons,
)
from observables.traces import TraceWindow

Guess = Callable[[np.ndarray, np.ndarray, int], lmfit.Parameters]
"""(values, times, row) -> starting Parameters for one neuron: its usable samples (in lmfit's
data-first order, as in `Model.guess`) and its row in the window, for per-neuron constants."""

TAIL_FRACTION = 0.1
"""The last tenth of a decay window gives the first guess of its offset."""


def exponential_decay(
    t: np.ndarray, offset: float, amplitude: float, tau: float, t0: float = 0.0
) -> np.ndarray:
    """offset + amplitude * exp(-(t - t0) / tau): relaxation towards `offset` from t0 on."""
    return offset + amplitude * np.exp(-np.fmax(t - t0, 0.0) / tau)


def post_synaptic_potential(
    t: np.ndarray,
    offset: float,
    amplitude: float,
    tau_mem: float,
    tau_syn: float,
    onset: float = 0.0,
) -> np.ndarray:
    """offset + amplitude * psp_shape(s, tau_mem, tau_syn), s = t - onset > 0.

    The response of a leaky membrane to an exponentially decaying synaptic current (a
    difference of exponentials, normalised to stay finite where the constants meet); a
    depolarising PSP has a positive amplitude.
    """
    return offset + amplitude * psp_shape(np.asarray(t) - onset, tau_mem, tau_syn)


class ExponentialDecayModel(lmfit.Model):
    """lmfit model of `exponential_decay`; t0 is held fixed at the value the guess is given."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(exponential_decay, independent_vars=["t"], **kwargs)

    def guess(
        self, data: np.ndarray, t: np.ndarray, t0: float = 0.0, **kwargs: object
    ) -> lmfit.Parameters:
        """Offset from the end of the window, tau from where the deflection falls to 1/e."""
        data = np.asarray(data, dtype=float)
        t = np.asarray(t, dtype=float)
        tail = max(3, int(TAIL_FRACTION * data.size))
        offset = float(np.mean(data[-tail:]))
        first = float(np.mean(data[:3])) - offset
        below = np.flatnonzero(np.abs(data - offset) < abs(first) / math.e)
        length = float(t[-1] - t[0]) if t.size > 1 else 1.0
        tau = float(t[below[0]] - t[0]) if below.size and below[0] > 0 else length / 3.0
        interval = float(np.median(np.diff(t))) if t.size > 1 else length
        tau = max(tau, interval)
        amplitude = first * math.exp(min((t[0] - t0) / tau, 50.0))
        params = self.make_params(offset=offset, amplitude=amplitude, tau=tau, t0=t0)
        params["tau"].set(min=interval / 10.0)
        params["t0"].set(vary=False)
        return lmfit.models.update_param_vals(params, self.prefix, **kwargs)


class PostSynapticPotentialModel(lmfit.Model):
    """lmfit model of `post_synaptic_potential`."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(post_synaptic_potential, independent_vars=["t"], **kwargs)

    def guess(
        self,
        data: np.ndarray,
        t: np.ndarray,
        event_time: float = 0.0,
        tau_mem: float | None = None,
        **kwargs: object,
    ) -> lmfit.Parameters:
        """Slow time constant from the decay after the peak, fast one from the time to peak.

        `tau_mem`, when given, is held fixed. The onset varies only if samples precede the event.
        """
        data = np.asarray(data, dtype=float)[None, :]
        t = np.asarray(t, dtype=float)
        fixed = None if tau_mem is None else np.array([float(tau_mem)])
        tau_range = tau_search_range(t, event_time)
        start = psp_start(t, data, np.ones_like(data), event_time, tau_range, fixed)[0]
        params = self.make_params(
            offset=start[0],
            amplitude=start[1],
            tau_mem=math.exp(start[2]),
            tau_syn=math.exp(start[3]),
            onset=start[4],
        )
        for name in ("tau_mem", "tau_syn"):
            params[name].set(min=tau_range[0], max=tau_range[1])
        params["tau_mem"].set(vary=tau_mem is None)
        params["onset"].set(vary=bool(t.size and t[0] < event_time))
        return lmfit.models.update_param_vals(params, self.prefix, **kwargs)


def fit_with_lmfit(
    window: TraceWindow,
    model: lmfit.Model,
    guess: Guess,
    *,
    key: str | None = None,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
    name: str | None = None,
) -> FitOutcome:
    """Fit `model` to every usable row of `window`, one lmfit fit per neuron.

    Residuals are weighted by each row's estimated noise, so the reduced chi-square is about 1
    for a good fit. Rows the window flags are not fitted; a fit lmfit reports as failed, or
    one without error bars, is flagged; the other rows go on.
    """
    if not isinstance(model, lmfit.Model):
        raise ValueError(f"model must be an lmfit.Model, got {type(model).__name__}")
    if len(model.independent_vars) != 1:
        raise ValueError(
            f"model must have exactly one independent variable (time), got {model.independent_vars}"
        )
    time_name = model.independent_vars[0]
    n_rows = window.n_rows
    names = list(model.param_names)
    fitted = {param: np.full(n_rows, np.nan) for param in names}
    stderr = {param: np.full(n_rows, np.nan) for param in names}
    redchi = np.full(n_rows, np.nan)
    fit_reasons = [""] * n_rows
    for row in np.flatnonzero(window.usable):
        usable = window.mask[row]
        values = window.volts[row, usable]
        times = window.times[usable]
        try:
            result = model.fit(
                values,
                guess(values, times, int(row)),
                weights=np.full(values.size, 1.0 / window.noise[row]),
                **{time_name: times},
            )
        except (ValueError, TypeError, ArithmeticError) as error:
            fit_reasons[row] = f"fit did not converge: {error}"
            continue
        for param in names:
            fitted[param][row] = result.params[param].value
            error = result.params[param].stderr
            if not result.params[param].vary:
                error = 0.0
            stderr[param][row] = np.nan if error is None else error
        redchi[row] = result.redchi
        at_bound = [
            param
            for param in names
            if result.params[param].vary
            and result.params[param].value in (result.params[param].min, result.params[param].max)
        ]
        if not result.success:
            fit_reasons[row] = f"fit did not converge: {result.message}"
        elif not result.errorbars:
            fit_reasons[row] = "fit did not converge: no uncertainties (singular covariance)"
        elif at_bound:
            fit_reasons[row] = f"{at_bound[0]} {result.params[at_bound[0]].value:.3g} at its bound"
    return build_outcome(
        name or model.name,
        window,
        fitted,
        stderr,
        redchi,
        fit_reasons,
        window.mask.sum(axis=1),
        key=key,
        max_redchi=max_redchi,
    )


def fit_exponential_lmfit(
    window: TraceWindow, t0: float, *, max_redchi: float = MAX_REDUCED_CHI_SQUARE
) -> FitOutcome:
    """The lmfit reference for `fit_exponential_batch`: same parameters, same flags."""
    model = ExponentialDecayModel()
    outcome = fit_with_lmfit(
        window,
        model,
        lambda values, times, row: model.guess(values, times, t0=t0),
        key="tau",
        max_redchi=max_redchi,
        name="exponential_decay",
    )
    return _without(outcome, "t0")


def fit_psp_lmfit(
    window: TraceWindow,
    event_time: float,
    *,
    tau_mem: float | np.ndarray | None = None,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
) -> FitOutcome:
    """The lmfit reference for `fit_psp_batch`: same parameters and conventions."""
    fixed = per_row("tau_mem", tau_mem, window.n_rows)
    model = PostSynapticPotentialModel()

    def guess(values: np.ndarray, times: np.ndarray, row: int) -> lmfit.Parameters:
        given = None if fixed is None else float(fixed[row])
        return model.guess(values, times, event_time=event_time, tau_mem=given)

    outcome = fit_with_lmfit(
        window, model, guess, max_redchi=max_redchi, name="post_synaptic_potential"
    )
    if fixed is None:
        outcome = _slower_as_tau_syn(outcome)
    return flag_uncertain(outcome, "tau_syn")


def _without(outcome: FitOutcome, name: str) -> FitOutcome:
    def drop(mapping: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: value for key, value in mapping.items() if key != name}

    return replace(
        outcome,
        params=drop(outcome.params),
        stderr=drop(outcome.stderr),
        fitted=drop(outcome.fitted),
    )


def _slower_as_tau_syn(outcome: FitOutcome) -> FitOutcome:
    """Swap tau_mem and tau_syn where the fit put the slower constant into tau_mem; the
    shape's normalisation (see `psp_shape`) scales the amplitude by their ratio."""
    swap = outcome.fitted["tau_mem"] > outcome.fitted["tau_syn"]
    ratio = outcome.fitted["tau_syn"] / outcome.fitted["tau_mem"]

    def swapped(mapping: dict[str, np.ndarray], rescale: bool) -> dict[str, np.ndarray]:
        result = dict(mapping)
        result["tau_mem"] = np.where(swap, mapping["tau_syn"], mapping["tau_mem"])
        result["tau_syn"] = np.where(swap, mapping["tau_mem"], mapping["tau_syn"])
        if rescale:
            result["amplitude"] = np.where(swap, mapping["amplitude"] * ratio, mapping["amplitude"])
        return result

    swapped_outcome = replace(
        outcome, fitted=swapped(outcome.fitted, True), stderr=swapped(outcome.stderr, False)
    )
    return with_reasons(swapped_outcome, outcome.reasons)
