"""Two exponentials, one of known time constant: the tail of a PSP after the input has ended.

After the last event of a burst, a linear membrane is exactly
    V(s) = offset + a_known exp(-s / tau_known) + a exp(-s / tau),   s = t - end of the burst,
whatever the burst's shape: each event adds one membrane and one synaptic exponential, and the
sums of exponentials of one time constant are one exponential. With the membrane constant
known (measured in the same configuration), offset, a_known and a are linear and tau is the
only nonlinear parameter: variable projection. For every row at once the residual sum of
squares is evaluated on a grid of log tau (three linear unknowns solved in closed form per grid
point), then on finer grids around the best point; a parabola through the last three points
gives the minimum and, from its curvature, the standard error of log tau.

Samples before the burst (the baseline) take part with the offset only; samples during the
burst are left out.
"""

from __future__ import annotations

import math

import numpy as np

from observables.least_squares import Evaluate, levenberg_marquardt
from observables.outcome import MAX_REDUCED_CHI_SQUARE, FitOutcome, build_outcome
from observables.traces import TraceWindow

COARSE_POINTS_PER_E_FOLD = 6
"""Density of the first log(tau) grid over the whole searched range."""
REFINE_ROUNDS = 2
REFINE_POINTS = 5
"""Each refinement lays REFINE_POINTS points across the previous grid step around the best."""
PARABOLA_ROUNDS = 2
CHUNK_ELEMENTS = 4_000_000
"""Rows x samples x grid points evaluated at once (bounds the memory of the grid)."""
PARAMS = ("offset", "amplitude_known", "amplitude", "tau_known", "tau")


def _solve3(m: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solutions of the symmetric 3x3 systems m x = r (..., 3, 3), (..., 3) by Cramer's rule
    (vectorised, no per-row Python loop), and the determinant."""
    a, b, c = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    d, e, f = m[..., 1, 1], m[..., 1, 2], m[..., 2, 2]
    co00 = d * f - e * e
    co01 = c * e - b * f
    co02 = b * e - c * d
    det = a * co00 + b * co01 + c * co02
    co11 = a * f - c * c
    co12 = b * c - a * e
    co22 = a * d - b * b
    safe = np.where(np.abs(det) > 0, det, 1.0)
    x0 = (co00 * r[..., 0] + co01 * r[..., 1] + co02 * r[..., 2]) / safe
    x1 = (co01 * r[..., 0] + co11 * r[..., 1] + co12 * r[..., 2]) / safe
    x2 = (co02 * r[..., 0] + co12 * r[..., 1] + co22 * r[..., 2]) / safe
    return np.stack([x0, x1, x2], axis=-1), det


class _Sums:
    """What every evaluation of the residual needs, per row, independent of tau."""

    def __init__(
        self,
        elapsed: np.ndarray,
        after: np.ndarray,
        values: np.ndarray,
        weight: np.ndarray,
        tau_known: np.ndarray,
    ) -> None:
        self.elapsed = elapsed
        self.after = after
        self.weight = weight
        self.wy = weight * values
        known = np.where(after[None, :], np.exp(-elapsed[None, :] / tau_known[:, None]), 0.0)
        self.known_w = known * weight
        self.n = weight.sum(axis=1)
        self.sum_k = self.known_w.sum(axis=1)
        self.sum_kk = np.einsum("ij,ij->i", self.known_w, known)
        self.sum_y = self.wy.sum(axis=1)
        self.sum_ky = np.einsum("ij,ij->i", self.known_w, values)
        self.sum_yy = np.einsum("ij,ij->i", self.wy, values)

    def rss(self, log_tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Residual sum of squares (rows, grid) for log tau, one grid for all rows (grid,) or
        one per row (rows, grid), and the linear parameters (rows, grid, 3)."""
        tau = np.exp(log_tau)
        basis = np.where(self.after, np.exp(-self.elapsed / tau[..., None]), 0.0)
        if log_tau.ndim == 1:  # shared: matrix products
            sum_u = self.weight @ basis.T
            sum_uu = self.weight @ (basis * basis).T
            sum_ku = self.known_w @ basis.T
            sum_uy = self.wy @ basis.T
        else:
            sum_u = np.einsum("ij,igj->ig", self.weight, basis)
            sum_uu = np.einsum("ij,igj->ig", self.weight, basis * basis)
            sum_ku = np.einsum("ij,igj->ig", self.known_w, basis)
            sum_uy = np.einsum("ij,igj->ig", self.wy, basis)
        shape = sum_u.shape
        m = np.empty((*shape, 3, 3))
        m[..., 0, 0] = self.n[:, None]
        m[..., 0, 1] = m[..., 1, 0] = self.sum_k[:, None]
        m[..., 0, 2] = m[..., 2, 0] = sum_u
        m[..., 1, 1] = self.sum_kk[:, None]
        m[..., 1, 2] = m[..., 2, 1] = sum_ku
        m[..., 2, 2] = sum_uu
        r = np.stack(
            np.broadcast_arrays(self.sum_y[:, None], self.sum_ky[:, None], sum_uy), axis=-1
        )
        x, det = _solve3(m, r)
        rss = self.sum_yy[:, None] - np.einsum("...i,...i->...", x, r)
        if log_tau.ndim == 1:
            log_tau = np.broadcast_to(log_tau, shape)
        return np.where(np.abs(det) > 0, np.fmax(rss, 0.0), np.inf), x


def _best(rss: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.take_along_axis(grid, np.argmin(rss, axis=1)[:, None], axis=1)[:, 0]


def _fit_rows(
    sums: _Sums, log_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(log tau, its curvature-based variance factor, linear params, rss, at_bound) per row."""
    rows = sums.n.size
    count = max(math.ceil((log_range[1] - log_range[0]) * COARSE_POINTS_PER_E_FOLD), 3)
    coarse = np.linspace(*log_range, count)
    rss, _ = sums.rss(coarse)
    centre = _best(rss, np.broadcast_to(coarse, (rows, count)))
    at_bound = (centre <= log_range[0]) | (centre >= log_range[1])
    step = coarse[1] - coarse[0]
    offsets = np.linspace(-1.0, 1.0, REFINE_POINTS)
    for _ in range(REFINE_ROUNDS):
        grid = np.clip(centre[:, None] + step * offsets[None, :], *log_range)
        rss, _ = sums.rss(grid)
        centre = _best(rss, grid)
        step = step * 2.0 / (REFINE_POINTS - 1)
    # Parabolas through the best point and its neighbours, the second one on a finer step.
    for _ in range(PARABOLA_ROUNDS):
        grid = np.clip(centre[:, None] + step * np.array([-1.0, 0.0, 1.0])[None, :], *log_range)
        rss, _ = sums.rss(grid)
        low, mid, high = rss[:, 0], rss[:, 1], rss[:, 2]
        curvature = (low - 2 * mid + high) / step**2
        with np.errstate(all="ignore"):
            shift = np.where(curvature > 0, -(high - low) / (2 * step * curvature), 0.0)
        centre = np.clip(centre + np.clip(shift, -step, step), *log_range)
        step = step / 4
    log_tau = centre
    final, linear = sums.rss(log_tau[:, None])
    return log_tau, curvature, linear[:, 0], final[:, 0], at_bound


def _two_decays(elapsed: np.ndarray, after: np.ndarray) -> Evaluate:
    """offset + a_1 exp(-s / tau_1) + a_2 exp(-s / tau_2) (zero before the burst) and its
    Jacobian in (offset, a_1, a_2, log tau_1, log tau_2)."""

    def evaluate(
        params: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        offset, a_1, a_2, log_1, log_2 = (params[:, i : i + 1] for i in range(5))
        s_1 = elapsed[None, :] * np.exp(-log_1)
        s_2 = elapsed[None, :] * np.exp(-log_2)
        e_1 = np.where(after, np.exp(-s_1), 0.0)
        e_2 = np.where(after, np.exp(-s_2), 0.0)
        model = offset + a_1 * e_1 + a_2 * e_2
        return model, [None, e_1, e_2, a_1 * e_1 * s_1, a_2 * e_2 * s_2]

    return evaluate


def fit_known_and_free_decay(
    window: TraceWindow,
    end_time: float,
    tau_known: np.ndarray,
    *,
    start_time: float | None = None,
    tau_range: tuple[float, float],
    refit_known: bool | np.ndarray = False,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
) -> FitOutcome:
    """Fit offset + amplitude_known exp(-s / tau_known) + amplitude exp(-s / tau), s = t -
    `end_time` > 0, to every usable row of `window`; before `start_time` (the burst's start)
    the model is the offset alone, samples between `start_time` and `end_time` are not used.

    `tau_known` holds one value per row (s); tau is searched within `tau_range` (s). Params:
    'offset', 'amplitude_known', 'amplitude' (V) and 'tau' (s, the key).

    With `refit_known` the known constant is only the start: both constants are then fitted
    (Levenberg-Marquardt from the projection's solution), 'tau_known' reports the fitted one,
    and a measurement error of the known constant no longer biases tau. Per row where it is an
    array (a row whose known constant spans too few samples keeps it).
    """
    n_rows = window.n_rows
    tau_known = np.broadcast_to(np.asarray(tau_known, dtype=float), (n_rows,))
    refit = np.broadcast_to(np.asarray(refit_known, dtype=bool), (n_rows,))
    if not (0 < tau_range[0] < tau_range[1] and math.isfinite(tau_range[1])):
        raise ValueError(f"tau_range must be 0 < low < high (finite), got {tau_range!r}")
    begin = end_time if start_time is None else start_time
    if begin > end_time:
        raise ValueError(f"start_time ({begin!r} s) must not be after end_time ({end_time!r} s)")
    fitted = {name: np.full(n_rows, np.nan) for name in PARAMS}
    stderr = {name: np.full(n_rows, np.nan) for name in PARAMS}
    redchi = np.full(n_rows, np.nan)
    fit_reasons = [""] * n_rows
    times = window.times
    after = times > end_time
    used = after | (times < begin)
    elapsed = np.where(after, times - end_time, 0.0)
    log_range = (math.log(tau_range[0]), math.log(tau_range[1]))
    usable = window.usable & np.isfinite(tau_known) & (tau_known > 0)
    for row in np.flatnonzero(window.usable & ~usable):
        fit_reasons[row] = "no known time constant"
    grid_points = REFINE_POINTS + int((log_range[1] - log_range[0]) * COARSE_POINTS_PER_E_FOLD)
    size = max(1, CHUNK_ELEMENTS // max(times.size * grid_points, 1))
    candidates = np.flatnonzero(usable)
    for begin_row in range(0, candidates.size, size):
        rows = candidates[begin_row : begin_row + size]
        weight = (window.mask[rows] & used[None, :]).astype(float)
        values = np.where(weight > 0, window.volts[rows], 0.0)
        sums = _Sums(elapsed, after, values, weight, tau_known[rows])
        log_tau, curvature, linear, rss, at_bound = _fit_rows(sums, log_range)
        dof = np.fmax(weight.sum(axis=1) - len(PARAMS), 1.0)
        variance = rss / dof
        with np.errstate(all="ignore"):
            log_error = np.where(curvature > 0, np.sqrt(2 * variance / curvature), np.inf)
        tau = np.exp(log_tau)
        known = tau_known[rows].copy()
        again = refit[rows]
        if again.any():
            start = np.column_stack([linear[again], np.log(known[again]), log_tau[again]])
            bound = np.array([np.inf, np.inf, np.inf, log_range[1], log_range[1]])
            low = np.array([-np.inf, -np.inf, -np.inf, log_range[0], log_range[0]])
            solution = levenberg_marquardt(
                _two_decays(elapsed, after), start, values[again], weight[again], low, bound
            )
            linear[again], known[again] = solution.params[:, :3], np.exp(solution.params[:, 3])
            log_tau[again], rss[again] = solution.params[:, 4], solution.rss
            log_error[again] = np.where(solution.converged, solution.stderr[:, 4], np.inf)
            tau = np.exp(log_tau)
        fitted["offset"][rows] = linear[:, 0]
        fitted["amplitude_known"][rows] = linear[:, 1]
        fitted["amplitude"][rows] = linear[:, 2]
        fitted["tau_known"][rows] = known
        fitted["tau"][rows] = tau
        stderr["tau"][rows] = tau * log_error
        redchi[rows] = rss / (dof * window.noise[rows] ** 2)
        for index in np.flatnonzero(at_bound | ~np.isfinite(log_error)):
            fit_reasons[rows[index]] = (
                f"tau {tau[index]:.3g} s at the edge of the searched range "
                f"{tau_range[0]:.3g}..{tau_range[1]:.3g} s"
                if at_bound[index]
                else "fit did not converge: no curvature at the minimum"
            )
    return build_outcome(
        "known_and_free_decay",
        window,
        fitted,
        stderr,
        redchi,
        fit_reasons,
        window.mask.sum(axis=1),
        key="tau",
        max_redchi=max_redchi,
    )
