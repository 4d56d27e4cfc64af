"""A Levenberg-Marquardt solver for many independent small least-squares problems at once.

Each row (neuron) is its own problem with a handful of parameters; every iteration works on all
rows still running with array operations, each row with its own damping. The model supplies
values and analytic Jacobian columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MAX_ITERATIONS = 100
RELATIVE_COST_TOLERANCE = 1e-10
"""A row has converged when an accepted step lowers its cost by less than this fraction..."""
STEP_TOLERANCE = 1e-3
"""... or moves no parameter by more than this fraction of its standard error."""
MAX_DAMPING = 1e10
"""A row has converged when no step lowers its cost even with this much damping."""
INITIAL_DAMPING = 1e-3
SUBSET_FRACTION = 0.5
"""Once at most this fraction of rows still runs, iterations work on those rows only."""
MAX_CONDITION = 1e14
"""Normal matrices worse conditioned than this (after scaling) give NaN covariances."""

Evaluate = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, list[np.ndarray | None]]]
"""(params (k, n_params), row indices (k,)) -> (model (k, n_samples), one Jacobian column
(k, n_samples) per parameter, None for a constant 1). The row indices let a model use fixed
per-row constants. Returned arrays must be new (the solver updates them in place)."""


@dataclass(frozen=True)
class LeastSquares:
    """Per-row least-squares solution."""

    params: np.ndarray
    """(rows, n_params) best-fit values."""
    covariance: np.ndarray
    """(rows, n_params, n_params), scaled by the residual variance; NaN if singular."""
    rss: np.ndarray
    """Residual sum of squares per row."""
    converged: np.ndarray
    at_bound: np.ndarray
    """(rows, n_params): parameters that ended on their bound."""

    @property
    def stderr(self) -> np.ndarray:
        """(rows, n_params) standard errors."""
        return np.sqrt(np.fmax(np.einsum("...ii->...i", self.covariance), 0.0))


def normal_equations(
    jac: list[np.ndarray | None], residual: np.ndarray, weight: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """J^T W J and J^T W r for every row, without materialising a (rows, samples, p) array.

    A Jacobian column None stands for a constant 1 (an offset parameter); `weight` None means
    every sample counts fully. Both save passes over the data."""
    n_params = len(jac)
    rows = residual.shape[0]
    hessian = np.empty((rows, n_params, n_params))
    gradient = np.empty((rows, n_params))
    if weight is None:
        weighted = jac
        count = np.full(rows, float(residual.shape[1]))
    else:
        weighted = [weight if column is None else column * weight for column in jac]
        count = weight.sum(axis=1)
    for i in range(n_params):
        left = weighted[i]
        gradient[:, i] = residual.sum(axis=1) if left is None else _dot(left, residual)
        for j in range(i + 1):
            right = jac[j]
            if right is None:
                value = count if left is None else left.sum(axis=1)
            else:
                value = right.sum(axis=1) if left is None else _dot(left, right)
            hessian[:, i, j] = hessian[:, j, i] = value
    return hessian, gradient


def _dot(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", left, right)


def batched_inverse(matrices: np.ndarray) -> np.ndarray:
    """Inverse of each matrix in a stack; singular or non-finite ones give NaN, not an error."""
    result = np.full_like(matrices, np.nan)
    finite = np.isfinite(matrices).all(axis=(1, 2))
    if not finite.any():
        return result
    good = matrices[finite]
    # Scale to unit diagonal first, so the condition number reflects the problem, not units.
    scale = np.sqrt(np.abs(np.einsum("...ii->...i", good))) + 1e-300
    outer = scale[:, :, None] * scale[:, None, :]
    scaled = good / outer
    ok = np.linalg.cond(scaled) < MAX_CONDITION
    inverse = np.full_like(good, np.nan)
    if ok.any():
        inverse[ok] = np.linalg.inv(scaled[ok]) / outer[ok]
    result[finite] = inverse
    return result


def _cost(values: np.ndarray, model: np.ndarray, weight: np.ndarray | None) -> np.ndarray:
    residual = values - model
    if weight is not None:
        residual *= weight
    return np.einsum("ij,ij->i", residual, residual)


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

    `weight` is 0 for unusable samples (whose `values` must still be finite, e.g. 0) and 1
    otherwise. Parameters stay within [lower, upper] (shape (n_params,) or (rows, n_params)).
    Each row has its own damping and stops once converged. The model and Jacobian at the
    current parameters are kept, so each iteration evaluates the model once.
    """
    params = np.array(start, dtype=float)
    rows, n_params = params.shape
    lower = np.broadcast_to(np.asarray(lower, dtype=float), params.shape)
    upper = np.broadcast_to(np.asarray(upper, dtype=float), params.shape)
    params = np.clip(params, lower, upper)
    n_used = weight.sum(axis=1)
    full_weight: np.ndarray | None = None if np.all(weight == 1.0) else weight
    everyone = np.arange(rows)
    model, jac = evaluate(params, everyone)
    cost = _cost(values, model, full_weight)
    damping = np.full(rows, INITIAL_DAMPING)
    converged = np.zeros(rows, dtype=bool)
    running = np.isfinite(cost)
    identity = np.eye(n_params)
    for _ in range(max_iterations):
        still = running & ~converged
        if not still.any():
            break
        # While most rows still run, working on all of them (and discarding the updates of
        # the finished ones) is cheaper than gathering the running ones.
        subset = still.sum() <= SUBSET_FRACTION * rows
        active = np.flatnonzero(still) if subset else everyone
        p = params[active]
        y = values[active] if subset else values
        w = full_weight[active] if subset and full_weight is not None else full_weight
        now_model = model[active] if subset else model
        now_jac = [_take(column, active, subset) for column in jac]
        hessian, gradient = normal_equations(now_jac, y - now_model, w)
        diagonal = np.einsum("...ii->...i", hessian) + 1e-300
        damped = hessian + damping[active, None, None] * diagonal[:, :, None] * identity
        inverse = batched_inverse(damped)
        with np.errstate(all="ignore"):
            step = (inverse @ gradient[:, :, None])[:, :, 0]
            variance = cost[active] / np.fmax(n_used[active] - n_params, 1.0)
            error_scale = np.sqrt(np.einsum("...ii->...i", inverse) * variance[:, None])
        trial = np.clip(p + np.nan_to_num(step), lower[active], upper[active])
        trial_model, trial_jac = evaluate(trial, active)
        trial_cost = _cost(y, trial_model, w)
        better = (trial_cost < cost[active]) & still[active]
        gain = (cost[active] - trial_cost) / np.fmax(cost[active], 1e-300)
        tiny_step = np.all(np.abs(trial - p) <= STEP_TOLERANCE * error_scale, axis=1)
        params[active] = np.where(better[:, None], trial, p)
        cost[active] = np.where(better, trial_cost, cost[active])
        rejected = still[active] & ~better
        damping[active] *= np.where(better, 1.0 / 3.0, np.where(rejected, 4.0, 1.0))
        converged[active] |= (better & ((gain < RELATIVE_COST_TOLERANCE) | tiny_step)) | (
            damping[active] > MAX_DAMPING
        )
        # Keep model and Jacobian at the accepted parameters for the next iteration.
        if not subset:
            if better.all():
                model, jac = trial_model, trial_jac
            else:
                take = better[:, None]
                model = np.where(take, trial_model, model)
                jac = [
                    None if old is None else np.where(take, new, old)
                    for new, old in zip(trial_jac, jac, strict=True)
                ]
        else:
            accepted = active[better]
            model[accepted] = trial_model[better]
            for column, new in zip(jac, trial_jac, strict=True):
                if column is not None:
                    column[accepted] = new[better]
    hessian, _ = normal_equations(jac, values - model, full_weight)
    dof = np.fmax(n_used - n_params, 1.0)
    covariance = batched_inverse(hessian) * (cost / dof)[:, None, None]
    at_bound = (params <= lower) | (params >= upper)  # clipping puts them exactly there
    return LeastSquares(
        params=params,
        covariance=covariance,
        rss=cost,
        converged=converged & np.isfinite(cost),
        at_bound=at_bound,
    )


def _take(column: np.ndarray | None, rows: np.ndarray, subset: bool) -> np.ndarray | None:
    return column[rows] if subset and column is not None else column
