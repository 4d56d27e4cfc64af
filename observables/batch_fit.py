"""Vectorised least-squares fits of every recorded neuron at once (no per-neuron Python loop).

Exponential decay, offset + amplitude * exp(-(t - t0) / tau): variable projection (see
`observables.variable_projection`): offset and amplitude in closed form, a grid over log tau for
every neuron at once, then Newton steps on log tau; it ends at the least-squares minimum lmfit
finds.

Post-synaptic potential, offset + amplitude * psp_shape(s) (a normalised difference of
exponentials) for
s = t - onset > 0: the slow time constant comes from the decay after the peak (the same grid),
the fast one from the time to peak; a vectorised Levenberg-Marquardt then fits all parameters.

Uncertainties come from the Jacobian at the minimum scaled by the residual variance (lmfit's
default); the reduced chi-square weights the residuals by each neuron's estimated noise.
"""

from __future__ import annotations

import math

import numpy as np

from observables.least_squares import Evaluate, LeastSquares, levenberg_marquardt
from observables.outcome import MAX_REDUCED_CHI_SQUARE, FitOutcome, build_outcome
from observables.traces import TraceWindow
from observables.variable_projection import DecaySums, fit_decays, grid_log_tau

TAU_SEARCH_LOW_SAMPLES = 0.5
"""Shortest tau searched, in sample intervals."""
TAU_SEARCH_HIGH_WINDOWS = 20.0
"""Longest tau searched, in window lengths (beyond it a decay is a straight line)."""
ELEMENTS_PER_CHUNK = 2_000_000
"""Rows are fitted in chunks of about this many samples, to bound memory for long windows."""
PEAK_SMOOTHING_SAMPLES = 3
"""Moving-average width used to locate a PSP's peak in noise."""
BASELINE_MIN_SAMPLES = 5
"""Fewest pre-event samples for the baseline; otherwise the end of the window serves."""
ONSET_SEARCH_BEFORE = 0.1
ONSET_SEARCH_AFTER = 0.5
"""The PSP onset is searched from event_time - 0.1 to event_time + 0.5 of the time after it."""

EXPONENTIAL_PARAMS = ("offset", "amplitude", "tau")
PSP_PARAMS = ("offset", "amplitude", "tau_mem", "tau_syn", "onset")


def tau_search_range(times: np.ndarray, t0: float) -> tuple[float, float]:
    """The (shortest, longest) tau a fit of this window searches."""
    interval = float(np.median(np.diff(times))) if times.size > 1 else 1.0 / 29.4e6
    length = max(float(times[-1]) - t0, interval) if times.size else interval
    return TAU_SEARCH_LOW_SAMPLES * interval, TAU_SEARCH_HIGH_WINDOWS * length


def _chunks(rows: np.ndarray, n_samples: int) -> list[np.ndarray]:
    size = max(1, ELEMENTS_PER_CHUNK // max(n_samples, 1))
    return [rows[i : i + size] for i in range(0, rows.size, size)]


def _offset_amplitude(
    basis: np.ndarray, values: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares (offset, amplitude) of values ~ offset + amplitude * basis, per row
    (basis, values and weight all of shape (rows, samples))."""
    count = np.fmax(weight.sum(axis=1), 1.0)
    mean_y = (weight * values).sum(axis=1) / count
    mean_b = (weight * basis).sum(axis=1) / count
    centred_b = (basis - mean_b[:, None]) * weight
    with np.errstate(all="ignore"):
        amplitude = np.einsum("ij,ij->i", centred_b, values - mean_y[:, None]) / np.einsum(
            "ij,ij->i", centred_b, basis - mean_b[:, None]
        )
    amplitude = np.nan_to_num(amplitude)
    return mean_y - amplitude * mean_b, amplitude


# -- exponential decay ------------------------------------------------------------------------


def exponential_start(
    times: np.ndarray,
    values: np.ndarray,
    weight: np.ndarray,
    t0: float,
    tau_range: tuple[float, float],
) -> np.ndarray:
    """Start values (offset, amplitude, log tau) per row from the variable-projection grid."""
    elapsed = np.fmax(times - t0, 0.0)  # the decay starts at t0
    data = DecaySums(elapsed, values, weight)
    log_tau = grid_log_tau(data, (math.log(tau_range[0]), math.log(tau_range[1])))
    refined = np.exp(-elapsed[None, :] / np.exp(log_tau)[:, None])
    offset, amplitude = _offset_amplitude(refined, values, weight)
    return np.stack([offset, amplitude, log_tau], axis=1)


def _tau_bound_reason(name: str, value: float, tau_range: tuple[float, float]) -> str:
    return (
        f"{name} {value:.3g} s at the edge of the searched range "
        f"{tau_range[0]:.3g}..{tau_range[1]:.3g} s"
    )


def fit_exponential_batch(
    window: TraceWindow,
    t0: float,
    *,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
) -> FitOutcome:
    """Fit offset + amplitude * exp(-(t - t0) / tau) to every usable row of `window`.

    Params: 'offset' (V), 'amplitude' (V, the deflection at t0) and 'tau' (s).
    """
    n_rows = window.n_rows
    fitted = {name: np.full(n_rows, np.nan) for name in EXPONENTIAL_PARAMS}
    stderr = {name: np.full(n_rows, np.nan) for name in EXPONENTIAL_PARAMS}
    redchi = np.full(n_rows, np.nan)
    fit_reasons = [""] * n_rows
    times = window.times
    tau_range = tau_search_range(times, t0)
    elapsed = np.fmax(times - t0, 0.0)  # the decay starts at t0
    for rows in _chunks(np.flatnonzero(window.usable), times.size):
        weight = window.mask[rows].astype(float)
        values = np.where(window.mask[rows], window.volts[rows], 0.0)
        solution = fit_decays(elapsed, values, weight, tau_range)
        tau = np.exp(solution.log_tau)
        errors = np.sqrt(np.fmax(np.einsum("...ii->...i", solution.covariance), 0.0))
        fitted["offset"][rows] = solution.offset
        fitted["amplitude"][rows] = solution.amplitude
        fitted["tau"][rows] = tau
        stderr["offset"][rows] = errors[:, 0]
        stderr["amplitude"][rows] = errors[:, 1]
        stderr["tau"][rows] = tau * errors[:, 2]  # first order in log tau, as lmfit reports
        dof = np.fmax(weight.sum(axis=1) - len(EXPONENTIAL_PARAMS), 1.0)
        redchi[rows] = solution.rss / (dof * window.noise[rows] ** 2)
        for index in np.flatnonzero(~solution.converged | solution.at_bound):
            fit_reasons[rows[index]] = (
                "fit did not converge"
                if not solution.converged[index]
                else _tau_bound_reason("tau", tau[index], tau_range)
            )
    return build_outcome(
        "exponential_decay",
        window,
        fitted,
        stderr,
        redchi,
        fit_reasons,
        window.mask.sum(axis=1),
        key="tau",
        max_redchi=max_redchi,
    )


def _reduced_chi_square(
    solution: LeastSquares, weight: np.ndarray, noise: np.ndarray
) -> np.ndarray:
    n_params = solution.params.shape[1]
    dof = np.fmax(weight.sum(axis=1) - n_params, 1.0)
    return solution.rss / (dof * noise**2)


# -- post-synaptic potential ------------------------------------------------------------------


def _mixed_decay(
    elapsed: np.ndarray, slow: np.ndarray, fast: np.ndarray, rate_gap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """h = (slow - fast) / D and dh/dD for D = rate_gap, with slow = exp(-rate_syn s) and
    fast = exp(-rate_mem s): bounded everywhere, and finite (series) as D -> 0."""
    product = rate_gap * elapsed
    small = np.abs(product) < 1e-4
    safe_gap = np.where(small, 1.0, rate_gap)
    h = np.where(small, slow * elapsed * (1 - 0.5 * product), (slow - fast) / safe_gap)
    h_gap = np.where(
        small,
        slow * elapsed**2 * (-0.5 + product / 6),
        (elapsed * fast - h) / safe_gap,
    )
    return h, h_gap


def psp_shape(elapsed: np.ndarray, tau_mem: np.ndarray, tau_syn: np.ndarray) -> np.ndarray:
    """(exp(-s/tau_syn) - exp(-s/tau_mem)) * tau_syn / (tau_syn - tau_mem) for s = elapsed > 0,
    zero before the onset.

    The factor keeps the shape finite and smooth where the two constants meet (it tends to
    (s/tau) exp(-s/tau) there), so a fit may pass through tau_syn = tau_mem; for well separated
    constants it is close to 1 and the amplitude is about the PSP's height.
    """
    positive = np.fmax(elapsed, 0.0)
    rate_mem, rate_syn = 1.0 / np.asarray(tau_mem), 1.0 / np.asarray(tau_syn)
    slow, fast = np.exp(-positive * rate_syn), np.exp(-positive * rate_mem)
    h, _ = _mixed_decay(positive, slow, fast, rate_mem - rate_syn)
    return np.where(elapsed > 0, rate_mem * h, 0.0)


def _psp(times: np.ndarray, fixed: np.ndarray, free: tuple[int, ...]) -> Evaluate:
    """PSP model and Jacobian in the `free` subset of (offset, amplitude, log tau_mem,
    log tau_syn, onset); the other entries are taken per row from `fixed` (rows, 5)."""

    def evaluate(
        params: np.ndarray, rows: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray | None]]:
        full = fixed[rows].copy()
        full[:, free] = params
        offset, amplitude, log_tau_mem, log_tau_syn, onset = (full[:, i : i + 1] for i in range(5))
        rate_mem, rate_syn = np.exp(-log_tau_mem), np.exp(-log_tau_syn)
        elapsed = np.fmax(times[None, :] - onset, 0.0)
        started = elapsed > 0
        slow = np.exp(elapsed * -rate_syn)
        slow *= started
        fast = np.exp(elapsed * -rate_mem)
        fast *= started
        h, h_gap = _mixed_decay(elapsed, slow, fast, rate_mem - rate_syn)
        shape = rate_mem * h
        model = shape * amplitude
        model += offset
        # d shape / d rate_syn and d rate_mem; d rate / d log tau = -rate
        d_rate_syn = -rate_mem * (elapsed * h + h_gap)
        d_rate_mem = h + rate_mem * h_gap
        d_elapsed = rate_mem * (fast - rate_syn * h)
        columns: list[np.ndarray | None] = [
            None,  # offset: a constant 1
            shape,
            -amplitude * rate_mem * d_rate_mem,
            -amplitude * rate_syn * d_rate_syn,
            -amplitude * d_elapsed,
        ]
        return model, [columns[i] for i in free]

    return evaluate


def _masked_moving_average(values: np.ndarray, weight: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average over usable samples only (NaN where none is in reach)."""
    pad = width // 2
    total = np.cumsum(np.pad(values * weight, ((0, 0), (pad + 1, pad))), axis=1)
    count = np.cumsum(np.pad(weight, ((0, 0), (pad + 1, pad))), axis=1)
    sums = total[:, width:] - total[:, :-width]
    counts = count[:, width:] - count[:, :-width]
    with np.errstate(all="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def psp_peak(
    times: np.ndarray, values: np.ndarray, weight: np.ndarray, event_time: float
) -> tuple[np.ndarray, np.ndarray]:
    """(baseline, peak time) per row: the resting level and the largest deflection after it."""
    before = (times < event_time)[None, :] * weight
    tail_columns = max(BASELINE_MIN_SAMPLES, times.size // 10)
    end = np.zeros_like(weight)
    end[:, -tail_columns:] = weight[:, -tail_columns:]
    use_before = before.sum(axis=1) >= BASELINE_MIN_SAMPLES
    reference = np.where(use_before[:, None], before, end)
    baseline = (values * reference).sum(axis=1) / np.fmax(reference.sum(axis=1), 1.0)
    smooth = _masked_moving_average(values, weight, PEAK_SMOOTHING_SAMPLES)
    deflection = np.where(
        (times >= event_time)[None, :] & (weight > 0), np.abs(smooth - baseline[:, None]), -1.0
    )
    deflection = np.nan_to_num(deflection, nan=-1.0)
    return baseline, times[np.argmax(deflection, axis=1)]


def _fast_from_rise(rise: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """The faster tau of a PSP that peaks `rise` after onset, given the slower one.

    A difference of exponentials peaks at ln(S/F) * S F / (S - F), which for F/S = r in (0, 1)
    is S * g(r) with g(r) = r ln(1/r) / (1 - r) rising from 0 to 1: solved by bisection.
    """
    target = np.clip(rise / slow, 1e-3, 0.95)
    low = np.full(rise.shape, -14.0)  # log r
    high = np.full(rise.shape, -1e-9)
    for _ in range(50):
        middle = 0.5 * (low + high)
        ratio = np.exp(middle)
        g = ratio * -middle / (1.0 - ratio)
        too_high = g > target
        high = np.where(too_high, middle, high)
        low = np.where(too_high, low, middle)
    return slow * np.exp(0.5 * (low + high))


def psp_start(
    times: np.ndarray,
    values: np.ndarray,
    weight: np.ndarray,
    event_time: float,
    tau_range: tuple[float, float],
    tau_mem: np.ndarray | None = None,
) -> np.ndarray:
    """Start values (offset, amplitude, log tau_mem, log tau_syn, onset) per row.

    The slower time constant is the decay after the peak, the faster one follows from the
    time to peak. With `tau_mem` given, tau_syn is whichever of the two lies farther from it;
    otherwise tau_syn is the slower one.
    """
    _, peak_time = psp_peak(times, values, weight, event_time)
    after_peak = weight * (times[None, :] >= peak_time[:, None])
    tail = exponential_start(times, values, after_peak, event_time, tau_range)
    slow = np.exp(tail[:, 2])
    fast = _fast_from_rise(np.fmax(peak_time - event_time, 0.0), slow)
    if tau_mem is None:
        tau_m, tau_s = fast, slow
    else:
        tau_m = np.asarray(tau_mem, dtype=float)
        slow_is_membrane = np.abs(np.log(slow / tau_m)) < np.abs(np.log(fast / tau_m))
        tau_s = np.where(slow_is_membrane, fast, slow)
    tau_low, tau_high = tau_range
    if tau_mem is None:  # a given tau_mem stays as it is: it is held fixed
        tau_m = np.clip(tau_m, tau_low, tau_high)
    tau_s = np.clip(tau_s, tau_low, tau_high)
    # Separate equal time constants a little: the difference of exponentials vanishes there.
    tau_s = np.where(np.abs(np.log(tau_s / tau_m)) < 0.05, tau_s * 1.2, tau_s)
    onset = np.full(values.shape[0], float(event_time))
    shape = psp_shape(times[None, :] - onset[:, None], tau_m[:, None], tau_s[:, None])
    offset, amplitude = _offset_amplitude(shape, values, weight)
    return np.stack([offset, amplitude, np.log(tau_m), np.log(tau_s), onset], axis=1)


def fit_psp_batch(
    window: TraceWindow,
    event_time: float,
    *,
    tau_mem: float | np.ndarray | None = None,
    max_redchi: float = MAX_REDUCED_CHI_SQUARE,
) -> FitOutcome:
    """Fit a PSP, offset + amplitude * psp_shape(s, tau_mem, tau_syn), s = t - onset > 0.

    `tau_mem` (scalar or one value per row) is held fixed when given; otherwise both time
    constants are fitted and tau_syn is reported as the slower one (the amplitude's sign follows,
    positive for a depolarising PSP; see `psp_shape` for its normalisation).
    The onset is fitted when usable samples precede the event,
    else held at `event_time`. Params: 'offset', 'amplitude' (V), 'tau_mem', 'tau_syn', 'onset' (s).
    """
    n_rows = window.n_rows
    fixed_tau_mem = per_row("tau_mem", tau_mem, n_rows)
    fitted = {name: np.full(n_rows, np.nan) for name in PSP_PARAMS}
    stderr = {name: np.full(n_rows, np.nan) for name in PSP_PARAMS}
    redchi = np.full(n_rows, np.nan)
    fit_reasons = [""] * n_rows
    times = window.times
    span = float(times[-1]) - event_time if times.size else 0.0
    tau_range = tau_search_range(times, event_time)
    log_tau = (math.log(tau_range[0]), math.log(tau_range[1]))
    onset_free = times.size > 0 and times[0] < event_time
    onset_range = (event_time - ONSET_SEARCH_BEFORE * span, event_time + ONSET_SEARCH_AFTER * span)
    lower = np.array([-np.inf, -np.inf, log_tau[0], log_tau[0], onset_range[0]])
    upper = np.array([np.inf, np.inf, log_tau[1], log_tau[1], onset_range[1]])
    held = {2} if fixed_tau_mem is not None else set()
    if not onset_free:
        held.add(4)
    free = tuple(i for i in range(5) if i not in held)
    for rows in _chunks(np.flatnonzero(window.usable), times.size):
        weight = window.mask[rows].astype(float)
        values = np.where(window.mask[rows], window.volts[rows], 0.0)
        given = None if fixed_tau_mem is None else fixed_tau_mem[rows]
        start = psp_start(times, values, weight, event_time, tau_range, given)
        evaluate = _psp(times, start, free)
        solution = levenberg_marquardt(
            evaluate, start[:, free], values, weight, lower[list(free)], upper[list(free)]
        )
        full = start.copy()
        full[:, free] = solution.params
        errors = np.zeros_like(full)
        errors[:, free] = solution.stderr
        taus = np.exp(full[:, 2:4])
        tau_errors = taus * errors[:, 2:4]
        if fixed_tau_mem is None:
            # Report the slower constant as tau_syn; the shape's normalisation then scales the
            # amplitude by the ratio of the two constants.
            swap = taus[:, 0] > taus[:, 1]
            full[:, 1] = np.where(swap, full[:, 1] * taus[:, 1] / taus[:, 0], full[:, 1])
            taus = np.where(swap[:, None], taus[:, ::-1], taus)
            tau_errors = np.where(swap[:, None], tau_errors[:, ::-1], tau_errors)
        for name, values_, errors_ in (
            ("offset", full[:, 0], errors[:, 0]),
            ("amplitude", full[:, 1], errors[:, 1]),
            ("tau_mem", taus[:, 0], tau_errors[:, 0]),
            ("tau_syn", taus[:, 1], tau_errors[:, 1]),
            ("onset", full[:, 4], errors[:, 4]),
        ):
            fitted[name][rows] = values_
            stderr[name][rows] = errors_
        redchi[rows] = _reduced_chi_square(solution, weight, window.noise[rows])
        tau_columns = [k for k, i in enumerate(free) if i in (2, 3)]
        at_tau_bound = solution.at_bound[:, tau_columns].any(axis=1)
        for index in np.flatnonzero(~solution.converged | at_tau_bound):
            row = rows[index]
            fit_reasons[row] = (
                "fit did not converge"
                if not solution.converged[index]
                else _tau_bound_reason("a time constant", float(taus[index].max()), tau_range)
            )
    return build_outcome(
        "post_synaptic_potential",
        window,
        fitted,
        stderr,
        redchi,
        fit_reasons,
        window.mask.sum(axis=1),
        key="tau_syn",
        max_redchi=max_redchi,
    )


def per_row(name: str, value: float | np.ndarray | None, n_rows: int) -> np.ndarray | None:
    """A scalar or per-row array as a (n_rows,) float array; ValueError on shape or value."""
    if value is None:
        return None
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        array = np.full(n_rows, float(array))
    if array.shape != (n_rows,):
        raise ValueError(
            f"{name} must be a scalar or have one value per recorded neuron ({n_rows},), "
            f"got shape {array.shape}"
        )
    bad = ~(np.isfinite(array) & (array > 0))
    if bad.any():
        raise ValueError(f"{name} must be finite times > 0 s, got {array[bad][:3]} (first bad)")
    return array
