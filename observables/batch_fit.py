"""Vectorised least-squares fits of every neuron at once (no per-neuron Python loop).

Exponential decay, offset + amplitude * exp(-(t - t0) / tau): variable projection. For a fixed
tau the model is linear in offset and amplitude, so the residual sum of squares of every neuron
for every tau of a log-spaced grid comes from a few matrix products in closed form. The best
grid point, refined by a parabola through its neighbours, starts a vectorised
Levenberg-Marquardt on (offset, amplitude, log tau) that converges to the same least-squares
minimum lmfit finds.

Post-synaptic potential: see `fit_psp_batch`; it starts from an exponential fit of the tail.

Uncertainties come from the Jacobian at the minimum, scaled by the residual variance (as lmfit
does by default); the reduced chi-square weights residuals by each neuron's estimated noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from observables.outcome import MAX_REDUCED_CHI_SQUARE, FitOutcome, build_outcome
from observables.traces import TraceWindow

GRID_POINTS_PER_E_FOLD = 4
"""Density of the log(tau) search grid; the refinement makes the result independent of it."""
TAU_SEARCH_LOW_SAMPLES = 0.5
"""Shortest tau searched, in sample intervals."""
TAU_SEARCH_HIGH_WINDOWS = 20.0
"""Longest tau searched, in window lengths (beyond it a decay is a straight line)."""
MAX_ITERATIONS = 60
RELATIVE_COST_TOLERANCE = 1e-12
MAX_DAMPING = 1e10
ELEMENTS_PER_CHUNK = 2_000_000
"""Rows are fitted in chunks of about this many samples, to bound memory for long windows."""

Evaluate = Callable[[np.ndarray], tuple[np.ndarray, list[np.ndarray]]]
"""params (rows, n_params) -> (model (rows, n_samples), Jacobian columns, one per param)."""


@dataclass(frozen=True)
class LeastSquares:
    """Per-row least-squares solution from `levenberg_marquardt`."""

    params: np.ndarray
    """(rows, n_params) best-fit values."""
    covariance: np.ndarray
    """(rows, n_params, n_params), scaled by the residual variance; NaN if singular."""
    rss: np.ndarray
    """Residual sum of squares per row."""
    converged: np.ndarray
    at_bound: np.ndarray
    """Rows with at least one parameter on its bound."""


def _normal_equations(
    jac: list[np.ndarray], residual: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """J^T W J and J^T W r for every row, without materialising a (rows, samples, p) array."""
    n_params = len(jac)
    rows = residual.shape[0]
    hessian = np.empty((rows, n_params, n_params))
    gradient = np.empty((rows, n_params))
    weighted = [column * weight for column in jac]
    for i in range(n_params):
        gradient[:, i] = np.einsum("ij,ij->i", weighted[i], residual)
        for j in range(i + 1):
            hessian[:, i, j] = hessian[:, j, i] = np.einsum("ij,ij->i", weighted[i], jac[j])
    return hessian, gradient


def _invert(matrices: np.ndarray) -> np.ndarray:
    """Batched inverse; singular or non-finite matrices give NaN instead of an error."""
    result = np.full_like(matrices, np.nan)
    finite = np.isfinite(matrices).all(axis=(1, 2))
    if finite.any():
        good = matrices[finite]
        scale = np.sqrt(np.abs(np.einsum("...ii->...i", good))) + 1e-300
        scaled = good / scale[:, :, None] / scale[:, None, :]
        ok = np.linalg.cond(scaled) < 1e14
        inverse = np.full_like(good, np.nan)
        if ok.any():
            inverse[ok] = np.linalg.inv(scaled[ok]) / scale[ok][:, :, None] / scale[ok][:, None, :]
        result[finite] = inverse
    return result


def levenberg_marquardt(
    evaluate: Evaluate,
    start: np.ndarray,
    values: np.ndarray,
    weight: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    max_iterations: int = MAX_ITERATIONS,
) -> LeastSquares:
    """Minimise sum(weight * (values - model)^2) per row, all rows together.

    `weight` is 0 for unusable samples (whose `values` must be finite, e.g. 0) and 1 otherwise.
    Parameters are kept within [lower, upper] (shape (n_params,) or (rows, n_params)).
    Each row has its own damping; rows stop iterating once converged.
    """
    params = np.clip(np.array(start, dtype=float), lower, upper)
    rows, n_params = params.shape
    lower = np.broadcast_to(lower, params.shape)
    upper = np.broadcast_to(upper, params.shape)
    model, _ = evaluate(params)
    cost = np.sum(weight * (values - model) ** 2, axis=1)
    damping = np.full(rows, 1e-3)
    converged = ~np.isfinite(cost)  # hopeless rows stop at once and are reported below
    for _ in range(max_iterations):
        active = np.flatnonzero(~converged)
        if active.size == 0:
            break
        p = params[active]
        model, jac = evaluate(p)
        hessian, gradient = _normal_equations(
            jac, values[active] - model, weight[active]
        )
        diagonal = np.einsum("...ii->...i", hessian)
        damped = hessian + (damping[active, None] * (diagonal + 1e-300))[:, :, None] * np.eye(
            n_params
        )
        with np.errstate(all="ignore"):
            try:
                step = np.linalg.solve(damped, gradient[:, :, None])[:, :, 0]
            except np.linalg.LinAlgError:
                step = (_invert(damped) @ gradient[:, :, None])[:, :, 0]
        trial = np.clip(p + np.nan_to_num(step), lower[active], upper[active])
        trial_model, _ = evaluate(trial)
        trial_cost = np.sum(weight[active] * (values[active] - trial_model) ** 2, axis=1)
        better = trial_cost < cost[active]
        gain = (cost[active] - trial_cost) / np.fmax(cost[active], 1e-300)
        params[active] = np.where(better[:, None], trial, p)
        cost[active] = np.where(better, trial_cost, cost[active])
        damping[active] = np.where(better, damping[active] / 3.0, damping[active] * 4.0)
        # Converged: an accepted step that no longer reduces the cost, or no step that does.
        done = (better & (gain < RELATIVE_COST_TOLERANCE)) | (damping[active] > MAX_DAMPING)
        done |= ~np.isfinite(trial_cost) & (damping[active] > 1e6)
        converged[active] = done
    finite_cost = np.isfinite(cost)
    model, jac = evaluate(params)
    hessian, _ = _normal_equations(jac, values - model, weight)
    n_used = weight.sum(axis=1)
    dof = np.fmax(n_used - n_params, 1.0)
    covariance = _invert(hessian) * (cost / dof)[:, None, None]
    span = np.fmax(upper - lower, 1e-300)
    at_bound = ((params - lower) < 1e-9 * span) | ((upper - params) < 1e-9 * span)
    return LeastSquares(
        params=params,
        covariance=covariance,
        rss=cost,
        converged=converged & finite_cost,
        at_bound=at_bound.any(axis=1),
    )


# -- exponential decay ------------------------------------------------------------------------


def _exponential(elapsed: np.ndarray) -> Evaluate:
    """Model and Jacobian of offset + amplitude * exp(-elapsed / tau) in (offset, amp, log tau)."""

    def evaluate(params: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        offset, amplitude, tau = params[:, 0:1], params[:, 1:2], np.exp(params[:, 2:3])
        scaled = elapsed[None, :] / tau
        decay = np.exp(-scaled)
        model = offset + amplitude * decay
        return model, [np.ones_like(model), decay, amplitude * decay * scaled]

    return evaluate


def _linear_in_offset_amplitude(
    basis: np.ndarray, values: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed-form (offset, amplitude, rss) of values ~ offset + amplitude * basis, per row and
    per candidate basis. `basis` (candidates, samples); results (rows, candidates).

    `values` must be centred per row (weighted mean 0) to keep the sums well conditioned.
    """
    weighted = values * weight
    count = weight.sum(axis=1)[:, None]
    sum_y = weighted.sum(axis=1)[:, None]
    sum_yy = np.einsum("ij,ij->i", weighted, values)[:, None]
    sum_b = weight @ basis.T
    sum_bb = weight @ (basis * basis).T
    sum_by = weighted @ basis.T
    det = count * sum_bb - sum_b**2
    with np.errstate(all="ignore"):
        amplitude = (count * sum_by - sum_b * sum_y) / det
        offset = (sum_y - amplitude * sum_b) / count
    rss = sum_yy - offset * sum_y - amplitude * sum_by
    degenerate = ~np.isfinite(amplitude) | (det <= 1e-12 * count * np.fmax(sum_bb, 1e-300))
    rss = np.where(degenerate, np.inf, rss)
    return offset, amplitude, rss


def tau_search_range(times: np.ndarray, t0: float) -> tuple[float, float]:
    """The (shortest, longest) tau the exponential fit searches for this window."""
    interval = float(np.median(np.diff(times))) if times.size > 1 else 1.0 / 29.4e6
    length = max(float(times[-1]) - t0, interval) if times.size else interval
    return TAU_SEARCH_LOW_SAMPLES * interval, TAU_SEARCH_HIGH_WINDOWS * length


def exponential_start(
    times: np.ndarray,
    values: np.ndarray,
    weight: np.ndarray,
    t0: float,
    tau_range: tuple[float, float],
) -> np.ndarray:
    """Start values (offset, amplitude, log tau) per row from the variable-projection grid."""
    log_low, log_high = math.log(tau_range[0]), math.log(tau_range[1])
    n_grid = max(8, math.ceil(GRID_POINTS_PER_E_FOLD * (log_high - log_low)) + 1)
    log_taus = np.linspace(log_low, log_high, n_grid)
    elapsed = times - t0
    count = np.fmax(weight.sum(axis=1), 1.0)
    mean = (values * weight).sum(axis=1) / count
    centred = (values - mean[:, None]) * weight
    basis = np.exp(-elapsed[None, :] / np.exp(log_taus)[:, None])
    _, _, rss = _linear_in_offset_amplitude(basis, centred, weight)
    best = np.argmin(rss, axis=1)
    # A parabola through the best grid point and its neighbours (in log tau) refines it.
    inner = np.clip(best, 1, n_grid - 2)
    rows = np.arange(values.shape[0])
    left, mid, right = rss[rows, inner - 1], rss[rows, inner], rss[rows, inner + 1]
    curvature = left - 2.0 * mid + right
    with np.errstate(all="ignore"):
        shift = np.where(curvature > 0, 0.5 * (left - right) / curvature, 0.0)
    shift = np.where(best == inner, np.clip(np.nan_to_num(shift), -1.0, 1.0), 0.0)
    step = log_taus[1] - log_taus[0]
    log_tau = log_taus[best] + shift * step
    refined = np.exp(-elapsed[None, :] / np.exp(log_tau)[:, None])
    # Closed-form offset and amplitude for each row's own tau.
    weighted = centred
    sum_b = np.einsum("ij,ij->i", weight, refined)
    sum_bb = np.einsum("ij,ij->i", weight, refined * refined)
    sum_by = np.einsum("ij,ij->i", weighted, refined)
    with np.errstate(all="ignore"):
        amplitude = sum_by / (sum_bb - sum_b**2 / count)
        offset = mean - amplitude * sum_b / count
    return np.stack([np.nan_to_num(offset), np.nan_to_num(amplitude), log_tau], axis=1)


def _chunks(n_rows: int, n_samples: int) -> list[slice]:
    size = max(1, ELEMENTS_PER_CHUNK // max(n_samples, 1))
    return [slice(i, min(i + size, n_rows)) for i in range(0, n_rows, size)]


def fit_exponential_batch(
    window: TraceWindow,
    t0: float,
    *,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
) -> FitOutcome:
    """Fit offset + amplitude * exp(-(t - t0) / tau) to every usable row of `window`.

    Returns a FitOutcome with params 'offset' (V), 'amplitude' (V, at t0) and 'tau' (s).
    """
    n_rows = window.n_rows
    usable = np.flatnonzero(window.usable)
    names = ("offset", "amplitude", "tau")
    fitted = {name: np.full(n_rows, np.nan) for name in names}
    stderr = {name: np.full(n_rows, np.nan) for name in names}
    redchi = np.full(n_rows, np.nan)
    fit_reasons = [""] * n_rows
    times = window.times
    tau_range = tau_search_range(times, t0) if times.size else (1.0, 1.0)
    lower = np.array([-np.inf, -np.inf, math.log(tau_range[0])])
    upper = np.array([np.inf, np.inf, math.log(tau_range[1])])
    evaluate = _exponential(times - t0)
    for chunk in _chunks(usable.size, times.size):
        rows = usable[chunk]
        weight = window.mask[rows].astype(float)
        values = np.where(window.mask[rows], window.volts[rows], 0.0)
        start = exponential_start(times, values, weight, t0, tau_range)
        solution = levenberg_marquardt(evaluate, start, values, weight, lower, upper)
        tau = np.exp(solution.params[:, 2])
        errors = np.sqrt(np.fmax(np.einsum("...ii->...i", solution.covariance), 0.0))
        fitted["offset"][rows] = solution.params[:, 0]
        fitted["amplitude"][rows] = solution.params[:, 1]
        fitted["tau"][rows] = tau
        stderr["offset"][rows] = errors[:, 0]
        stderr["amplitude"][rows] = errors[:, 1]
        stderr["tau"][rows] = tau * errors[:, 2]  # first order, as lmfit's covariance gives
        n_used = weight.sum(axis=1)
        redchi[rows] = solution.rss / (np.fmax(n_used - 3, 1) * window.noise[rows] ** 2)
        for index in np.flatnonzero(~solution.converged | solution.at_bound):
            fit_reasons[rows[index]] = (
                "fit did not converge"
                if not solution.converged[index]
                else f"tau {tau[index]:.3g} s at the edge of the searched range "
                f"{tau_range[0]:.3g}..{tau_range[1]:.3g} s"
            )
    return build_outcome(
        "exponential_decay",
        window,
        fitted,
        stderr,
        redchi,
        fit_reasons,
        window.mask.sum(axis=1),
        max_redchi=max_redchi,
    )
