"""Least-squares exponential decays for many rows at once, by variable projection.

For y ~ offset + amplitude * exp(-s / tau) (s >= 0 the time since the decay started) and a fixed
tau, the best offset and amplitude follow in closed form, and the residual sum of squares is
    rss(tau) = sum (y - mean)^2 - B^2 / A,  B = sum (y - mean) e,  A = sum e^2 - (sum e)^2 / n,
with e = exp(-s / tau). So the fit is a one-dimensional search: maximise F = B^2 / A over
u = log tau. A grid over u (one matrix product for every row and grid point), a parabola through
the best grid point, then Newton steps on F with exact first and second derivatives. Every
derivative needs only sums of e and e^2 times s^0, s^1, s^2 and of the centred data times e s^r,
so each Newton iteration passes over the data a handful of times. The covariance of
(offset, amplitude, log tau) at the optimum follows from the same sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from observables.least_squares import batched_inverse

GRID_POINTS_PER_E_FOLD = 4
"""Density of the log(tau) search grid; the Newton steps make the result independent of it."""
MAX_NEWTON_STEPS = 40
LOG_TAU_TOLERANCE = 1e-9
STEP_TOLERANCE = 1e-3
"""Newton stops once a step changes log(tau) by less than LOG_TAU_TOLERANCE or less than
STEP_TOLERANCE of its standard error (further digits are noise)."""
MAX_LOG_TAU_STEP = 1.0
"""Largest change of log(tau) in one step (a trust region for far-off starts)."""
SUBSET_FRACTION = 0.5
"""Once at most this fraction of rows still iterates, iterations work on those rows only."""


@dataclass(frozen=True)
class DecayFit:
    """Per-row least-squares solution of offset + amplitude * exp(-s / tau)."""

    offset: np.ndarray
    amplitude: np.ndarray
    log_tau: np.ndarray
    covariance: np.ndarray
    """(rows, 3, 3) in (offset, amplitude, log tau), scaled by the residual variance."""
    rss: np.ndarray
    converged: np.ndarray
    at_bound: np.ndarray
    """log tau ended on a bound of the searched range."""


class DecaySums:
    """The data a decay fit needs, arranged so that sums for any tau are a few passes."""

    def __init__(self, elapsed: np.ndarray, values: np.ndarray, weight: np.ndarray) -> None:
        self.elapsed = elapsed
        self.count = np.fmax(weight.sum(axis=1), 1.0)
        self.mean = (values * weight).sum(axis=1) / self.count
        centred = (values - self.mean[:, None]) * weight
        self.sum_squares = np.einsum("ij,ij->i", centred, centred)
        self.centred = (centred, centred * elapsed, centred * elapsed**2)
        moments = np.stack([np.ones_like(elapsed), elapsed, elapsed**2])
        # Rows sharing one set of samples (the usual case) share the weight sums' vectors.
        self.shared = bool(np.all(weight == weight[:1]))
        if self.shared:
            self.weights = (weight[0] * moments).T  # (samples, 3)
        else:
            self.weights = tuple(weight * moment for moment in moments)

    def grid(self, log_taus: np.ndarray) -> np.ndarray:
        """F = B^2 / A for every row and every grid value of log tau: (rows, grid)."""
        basis = np.exp(-self.elapsed[None, :] / np.exp(log_taus)[:, None])
        if self.shared:
            sum_e = basis @ self.weights[:, 0]
            sum_ee = (basis * basis) @ self.weights[:, 0]
        else:
            sum_e = self.weights[0] @ basis.T
            sum_ee = self.weights[0] @ (basis * basis).T
        variance = sum_ee - sum_e**2 / self.count[:, None]
        covariance = self.centred[0] @ basis.T
        with np.errstate(all="ignore"):
            explained = np.where(
                variance > 1e-12 * np.fmax(sum_ee, 1e-300), covariance**2 / variance, -np.inf
            )
        return np.nan_to_num(explained, nan=-np.inf)

    def at(self, log_tau: np.ndarray, rows: np.ndarray | None) -> dict[str, np.ndarray]:
        """Sums at one log tau per row (for `rows`, or all rows if None)."""
        pick = (lambda array: array) if rows is None else (lambda array: array[rows])
        rate = np.exp(-log_tau)
        decay = self.elapsed[None, :] * rate[:, None]
        np.exp(np.negative(decay, out=decay), out=decay)
        squared = decay * decay
        if self.shared:
            first = decay @ self.weights
            second = squared @ self.weights
        else:
            first = np.stack([np.einsum("ij,ij->i", pick(w), decay) for w in self.weights], 1)
            second = np.stack([np.einsum("ij,ij->i", pick(w), squared) for w in self.weights], 1)
        data = np.stack([np.einsum("ij,ij->i", pick(c), decay) for c in self.centred], 1)
        return {
            "rate": rate,
            "count": pick(self.count),
            "s1": first,
            "s2": second,
            "y": data,
            "sum_squares": pick(self.sum_squares),
            "mean": pick(self.mean),
        }


def _objective(sums: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F = B^2 / A and its first two derivatives with respect to log tau."""
    rate, count = sums["rate"], sums["count"]
    s10, s11, s12 = sums["s1"].T
    s20, s21, s22 = sums["s2"].T
    y0, y1, y2 = sums["y"].T
    # d/du of e is rate * s * e (u = log tau); of rate^n it is -n rate^n.
    b = y0
    b1 = rate * y1
    b2 = -rate * y1 + rate**2 * y2
    a = s20 - s10**2 / count
    a1 = 2.0 * rate * s21 - 2.0 * rate * s10 * s11 / count
    a2 = (
        -2.0 * rate * s21
        + 4.0 * rate**2 * s22
        - 2.0 * (rate**2 * s11**2 + s10 * (rate**2 * s12 - rate * s11)) / count
    )
    with np.errstate(all="ignore"):
        f = np.where(a > 0, b**2 / a, -np.inf)
        f1 = 2.0 * b * b1 / a - b**2 * a1 / a**2
        f2 = (
            2.0 * (b1**2 + b * b2) / a
            - 4.0 * b * b1 * a1 / a**2
            - b**2 * a2 / a**2
            + 2.0 * b**2 * a1**2 / a**3
        )
    return np.nan_to_num(f, nan=-np.inf), np.nan_to_num(f1), np.nan_to_num(f2)


def _newton_step(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    """Newton step towards the maximum; uphill by the trust radius where F is not concave."""
    with np.errstate(all="ignore"):
        step = np.where(f2 < 0, -f1 / f2, np.sign(f1) * MAX_LOG_TAU_STEP)
    return np.clip(np.nan_to_num(step), -MAX_LOG_TAU_STEP, MAX_LOG_TAU_STEP)


def _small(step: np.ndarray, f2: np.ndarray, sums: dict[str, np.ndarray]) -> np.ndarray:
    """Whether a step in log tau is below the tolerances.

    rss = sum_squares - F, so the curvature of rss is -F'' and the standard error of log tau is
    sqrt(2 * residual variance / -F'')."""
    rss = np.fmax(
        sums["sum_squares"]
        - np.abs(sums["y"][:, 0]) ** 2
        / np.fmax(sums["s2"][:, 0] - sums["s1"][:, 0] ** 2 / sums["count"], 1e-300),
        0.0,
    )
    variance = rss / np.fmax(sums["count"] - 3.0, 1.0)
    with np.errstate(all="ignore"):
        error = np.where(f2 < 0, np.sqrt(2.0 * variance / -f2), np.inf)
    return (np.abs(step) < LOG_TAU_TOLERANCE) | (np.abs(step) < STEP_TOLERANCE * error)


def grid_log_tau(data: DecaySums, log_range: tuple[float, float]) -> np.ndarray:
    """Best log tau per row on a log grid, refined by a parabola through its neighbours."""
    log_low, log_high = log_range
    n_grid = max(8, math.ceil(GRID_POINTS_PER_E_FOLD * (log_high - log_low)) + 1)
    log_taus = np.linspace(log_low, log_high, n_grid)
    explained = data.grid(log_taus)
    best = np.argmax(explained, axis=1)
    inner = np.clip(best, 1, n_grid - 2)
    rows = np.arange(explained.shape[0])
    left, mid, right = (explained[rows, inner + k] for k in (-1, 0, 1))
    with np.errstate(all="ignore"):  # rows without signal explain nothing finite
        curvature = 2.0 * mid - left - right
        shift = np.where(curvature > 0, 0.5 * (right - left) / curvature, 0.0)
    shift = np.where(best == inner, np.clip(np.nan_to_num(shift), -1.0, 1.0), 0.0)
    return log_taus[best] + shift * (log_taus[1] - log_taus[0])


def fit_decays(
    elapsed: np.ndarray,
    values: np.ndarray,
    weight: np.ndarray,
    tau_range: tuple[float, float],
) -> DecayFit:
    """Fit offset + amplitude * exp(-elapsed / tau) to every row, tau within `tau_range`.

    `elapsed` (samples,) is the time since the decay started (>= 0); `weight` (rows, samples)
    is 1 for usable samples and 0 otherwise (`values` there must be finite, e.g. 0).
    """
    log_low, log_high = math.log(tau_range[0]), math.log(tau_range[1])
    data = DecaySums(elapsed, values, weight)
    n_rows = values.shape[0]
    best_u = grid_log_tau(data, (log_low, log_high))
    best = data.at(best_u, None)
    best_f, f1, f2 = _objective(best)
    step = np.clip(best_u + _newton_step(f1, f2), log_low, log_high) - best_u
    converged = _small(step, f2, best)
    for _ in range(MAX_NEWTON_STEPS):
        running = ~converged
        if not running.any():
            break
        subset = running.sum() <= SUBSET_FRACTION * n_rows
        rows = np.flatnonzero(running) if subset else np.arange(n_rows)
        trial_u = best_u[rows] + step[rows]
        trial = data.at(trial_u, rows if subset else None)
        trial_f, f1, f2 = _objective(trial)
        improved = (trial_f >= best_f[rows]) & running[rows]
        # Improved rows move there and take a new Newton step; the others halve their step.
        taken = rows[improved]
        best_u[taken] = trial_u[improved]
        best_f[taken] = trial_f[improved]
        for key, value in trial.items():
            best[key][taken] = value[improved]
        new_step = np.clip(best_u[rows] + _newton_step(f1, f2), log_low, log_high) - best_u[rows]
        step[rows] = np.where(improved, new_step, 0.5 * step[rows])
        converged[rows] |= running[rows] & _small(step[rows], f2, trial)
    return _solution(best, best_u, converged, (log_low, log_high))


def _solution(
    sums: dict[str, np.ndarray],
    log_tau: np.ndarray,
    converged: np.ndarray,
    log_range: tuple[float, float],
) -> DecayFit:
    """Offset, amplitude, residuals and covariance from the sums at the optimum."""
    rate, count = sums["rate"], sums["count"]
    s10, s11, _ = sums["s1"].T
    s20, s21, s22 = sums["s2"].T
    y0 = sums["y"][:, 0]
    variance_e = s20 - s10**2 / count
    with np.errstate(all="ignore"):
        amplitude = y0 / variance_e
    offset = sums["mean"] - amplitude * s10 / count
    rss = np.fmax(sums["sum_squares"] - amplitude * y0, 0.0)
    # J^T J in (offset, amplitude, log tau): columns 1, e, amplitude * rate * s * e.
    slope = amplitude * rate
    normal = np.empty((rate.size, 3, 3))
    normal[:, 0, 0] = count
    normal[:, 0, 1] = normal[:, 1, 0] = s10
    normal[:, 0, 2] = normal[:, 2, 0] = slope * s11
    normal[:, 1, 1] = s20
    normal[:, 1, 2] = normal[:, 2, 1] = slope * s21
    normal[:, 2, 2] = slope**2 * s22
    dof = np.fmax(count - 3.0, 1.0)
    covariance = batched_inverse(normal) * (rss / dof)[:, None, None]
    at_bound = (log_tau <= log_range[0]) | (log_tau >= log_range[1])
    finite = np.isfinite(amplitude) & np.isfinite(offset)
    return DecayFit(
        offset=offset,
        amplitude=amplitude,
        log_tau=log_tau,
        covariance=covariance,
        rss=rss,
        converged=converged & finite,
        at_bound=at_bound,
    )
