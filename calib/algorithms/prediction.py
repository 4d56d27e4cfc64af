"""Prediction from a characterised transfer curve: sweep, fit per unit, invert, verify, refine.

A `TransferModel` describes observable = f(code; params) with one parameter set per unit and
fits every unit of a sweep at once (shared or per-unit codes, optional per-point weights).
`TransferCurves` holds a fitted model (per-unit parameter arrays plus the code range) and
predicts the codes for any new target without another sweep; its `params` are what
`NeuronResult.models[quantity]` stores, and `TransferCurves(model, params, range)` rebuilds it
from there. `Prediction` runs the search: a sweep (given, evenly spread, or suggested by the
routine's `sweep_hint(target, device)`), the model's prediction, then local refinements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms.base import (
    Algorithm,
    BestTracker,
    CodeSweep,
    Ranges,
    SearchOutcome,
    check_int_option,
    parameter_names,
    single_range,
)
from calib.core.routine import ParameterRange, Routine, SupportsSweepHint
from device_model.protocol import CAPMEM_MAX, Device

Params = dict[str, np.ndarray]

DEFAULT_SWEEP = 5
"""Evenly spread sweep codes when neither the caller nor the routine places them."""
MAX_REFINE = 16


class TransferModel(ABC):
    """observable = f(code; params), one parameter set per unit."""

    name: str = "model"
    param_names: tuple[str, ...] = ()

    @abstractmethod
    def fit(
        self, codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
    ) -> Params:
        """Fit every unit: `values` (n_points, n_units) -> name -> (n_units,).

        `codes` is (n_points,) shared by every unit, or (n_points, n_units). `weights`
        (n_points, n_units), optional, scales each point's share of the fit (on top of what the
        model weighs itself). Non-finite values are left out; a unit with too few finite points
        gets NaN parameters.
        """

    @abstractmethod
    def evaluate(self, params: Params, codes: np.ndarray) -> np.ndarray:
        """f at `codes` of shape (n_units,) or (n_codes, n_units), for every unit."""

    def linearise(self, values: np.ndarray) -> np.ndarray:
        """The observable transformed so that the curve is nearly a straight line locally (a
        refinement fits a line there); the identity unless a model knows better."""
        return np.asarray(values, dtype=float)


def point_codes(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`codes` as a float array (n_points, n_units) matching `values`."""
    codes = np.asarray(codes, dtype=float)
    if codes.ndim == 1:
        codes = codes[:, None]
    return np.broadcast_to(codes, np.shape(values))


def fit_weights(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Finite values weigh 1 (times `weights` where given); non-finite ones 0."""
    finite = finite_weights(values)
    if weights is None:
        return finite
    weights = np.asarray(weights, dtype=float)
    return np.where(finite > 0, np.where(np.isfinite(weights), weights, 0.0), 0.0)


def weighted_least_squares(
    design: np.ndarray, values: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Per unit solution of a weighted linear least-squares problem.

    `design` is (n_points, n_terms) shared by every unit, or (n_points, n_units, n_terms);
    `values` and `weights` are (n_points, n_units). Returns (n_units, n_terms); units whose normal
    matrix is singular get NaN.
    """
    if design.ndim == 2:
        design = np.broadcast_to(design[:, None, :], (*values.shape, design.shape[1]))
    safe_values = np.where(weights > 0, values, 0.0)
    normal = np.einsum("pu,pui,puj->uij", weights, design, design)
    rhs = np.einsum("pu,pui,pu->ui", weights, design, safe_values)
    n_terms = design.shape[2]
    solvable = np.linalg.matrix_rank(normal) == n_terms
    identity = np.broadcast_to(np.eye(n_terms), normal.shape)
    solution = np.linalg.solve(np.where(solvable[:, None, None], normal, identity), rhs[..., None])
    return np.where(solvable[:, None], solution[..., 0], np.nan)


def finite_weights(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values).astype(float)


class PolynomialModel(TransferModel):
    """observable = sum_k p_k x^k with x = (code - 511) / 511, the code range scaled to -1..1.

    The fixed scaling keeps the fit well conditioned and the stored coefficients meaningful on
    their own.
    """

    name = "polynomial"
    centre = CAPMEM_MAX / 2

    def __init__(self, degree: int = 2) -> None:
        self.degree = check_int_option("degree", degree, 1, 6)
        self.param_names = tuple(f"p{k}" for k in range(self.degree + 1))

    def _scaled(self, codes: np.ndarray) -> np.ndarray:
        return (np.asarray(codes, dtype=float) - self.centre) / self.centre

    def fit(
        self, codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
    ) -> Params:
        design = self._scaled(point_codes(codes, values))[..., None] ** np.arange(self.degree + 1)
        coefficients = weighted_least_squares(design, values, fit_weights(values, weights))
        return {name: coefficients[:, k] for k, name in enumerate(self.param_names)}

    def evaluate(self, params: Params, codes: np.ndarray) -> np.ndarray:
        x = self._scaled(codes)
        result = np.zeros(np.broadcast_shapes(x.shape, params["p0"].shape))
        for name in reversed(self.param_names):  # Horner's scheme
            result = result * x + params[name]
        return result


@dataclass(frozen=True)
class TransferCurves:
    """A fitted transfer model for every unit, and the code range it may predict in."""

    model: TransferModel
    params: Params
    parameter_range: ParameterRange

    @property
    def n_units(self) -> int:
        return len(next(iter(self.params.values())))

    @property
    def valid(self) -> np.ndarray:
        """Per unit: whether the fit produced finite parameters."""
        return np.all([np.isfinite(values) for values in self.params.values()], axis=0)

    def evaluate(self, codes: np.ndarray) -> np.ndarray:
        return self.model.evaluate(self.params, codes)

    def predict(self, target: float | np.ndarray) -> np.ndarray:
        """Per unit, the code in range whose fitted observable is closest to `target`.

        Inverts the curve on every code of the range, so any monotonic or not model works, and a
        target beyond reach lands on the nearer bound. Units without a valid fit get the middle
        of the range.
        """
        target = np.broadcast_to(np.asarray(target, dtype=float), (self.n_units,))
        grid = np.arange(self.parameter_range.low, self.parameter_range.high + 1)
        values = self.evaluate(np.broadcast_to(grid[:, None], (grid.size, self.n_units)))
        distance = np.abs(values - target)
        distance = np.where(np.isnan(distance), np.inf, distance)
        codes = grid[np.argmin(distance, axis=0)]
        middle = (self.parameter_range.low + self.parameter_range.high) // 2
        return np.where(self.valid, codes, middle).astype(np.int64)


SweepHint = Callable[[np.ndarray], ArrayLike]
"""A routine's `sweep_hint(target, device)` bound to the device: codes (n_codes,) or
(n_codes, n_units) worth sweeping, given the configuration its prelude left."""

LOCALITY = 0.05
"""Relative distance from the target at which a point's weight in the local line has halved."""
SETTLE = 0.5
"""Code jump, as a fraction of the new code, at which a read's weight has halved: an analog
cell written far from its last value may not have settled fully when the read starts."""
BOUND_STEPS = 1.0 + 1e-6
"""Code steps a bound code counts further from the target in the final choice."""
LOCAL_LINE = PolynomialModel(1)
"""The local model of a refinement: a straight line through the linearised observable."""


def sweep_codes(sweep: int | Sequence[int], limits: ParameterRange) -> np.ndarray:
    """The characterisation codes: `sweep` evenly spread over the range, or the given codes."""
    if isinstance(sweep, int | np.integer):
        count = check_int_option("sweep", int(sweep), 2, limits.size)
        return np.unique(np.rint(np.linspace(limits.low, limits.high, count)).astype(np.int64))
    codes = np.asarray(sweep, dtype=np.int64)
    if codes.ndim != 1 or codes.size < 2:
        raise ValueError(f"sweep must list at least 2 codes, got {list(np.ravel(codes))}")
    if codes.min() < limits.low or codes.max() > limits.high:
        raise ValueError(
            f"sweep codes {codes.tolist()} reach outside the parameter range "
            f"{limits.low}..{limits.high}"
        )
    return codes


def hinted_codes(hint: ArrayLike, n_units: int, limits: ParameterRange) -> np.ndarray:
    """A routine's suggested sweep as (n_codes, n_units) codes, clipped into the range."""
    codes = np.asarray(hint, dtype=float)
    if codes.ndim == 1:
        codes = np.broadcast_to(codes[:, None], (codes.size, n_units))
    if codes.ndim != 2 or codes.shape[1] != n_units or codes.shape[0] < 2:
        raise ValueError(
            f"sweep_hint must give at least 2 codes, as (n_codes,) or (n_codes, {n_units}), "
            f"got shape {codes.shape}"
        )
    if not np.all(np.isfinite(codes)):
        raise ValueError("sweep_hint gave non-finite codes")
    return limits.clip(codes)


def locality_weights(values: np.ndarray, target: np.ndarray, width: float) -> np.ndarray:
    """Per point, 1 / (1 + (relative distance from the target / width)^2).

    Points near the target dominate a local fit; far ones still pin down its slope.
    """
    scale = width * np.maximum(np.abs(target), np.finfo(float).tiny)
    with np.errstate(invalid="ignore"):
        distance = (values - target) / scale
    return 1.0 / (1.0 + distance * distance)


def settling_weights(jumps: np.ndarray, codes: np.ndarray, settle: float) -> np.ndarray:
    """Per point, 1 / (1 + (jump / (settle * code))^2); all 1 when `settle` is 0."""
    if settle == 0:
        return np.ones(codes.shape)
    relative = jumps / np.maximum(np.abs(codes), 1.0)
    return 1.0 / (1.0 + (relative / settle) ** 2)


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value) \
            or value < 0 or (value == 0 and not allow_zero):
        allowed = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} = {value!r} is outside the allowed range {allowed}")
    return float(value)


class Prediction(Algorithm):
    """Sweep a few codes, fit a transfer model per unit, invert it, verify, refine locally.

    `sweep` is the number of evenly spread codes, the codes themselves, or None for the
    routine's `sweep_hint(target, device)` where it has one (5 evenly spread codes otherwise).
    The model fitted to the sweep predicts each unit's code, which is measured (the
    verification). Each of `refine` further rounds (`correct` is `refine=1`) fits a straight
    line through every point so far, the observable linearised by the model (`1 / tau` for
    time constants), weighted towards the target (`locality`: the relative distance at which a
    point's weight has halved) and away from reads taken right after a large code jump
    (`settle`: the jump, as a fraction of the code, that halves the weight; 0 turns this
    off), and measures where the line meets the target; where that code has been measured
    already, its neighbour across the target instead. Every candidate is measured `repeats`
    times. Per unit the measured code whose local line lies closest to the target wins, so
    one noisy read does not decide. `curves` keeps the model fitted to every point (settling
    weights only), so `predict(target)` serves a new target on the same chip without a sweep.
    """

    name = "prediction"

    def __init__(
        self,
        model: TransferModel | None = None,
        sweep: int | Sequence[int] | None = 5,
        repeats: int = 1,
        correct: bool = False,
        refine: int = 0,
        locality: float = LOCALITY,
        settle: float = SETTLE,
    ) -> None:
        self.model = model if model is not None else PolynomialModel(2)
        if not isinstance(self.model, TransferModel):
            raise ValueError(f"model must be a TransferModel, got {type(self.model).__name__}")
        self.sweep = sweep
        if isinstance(sweep, int | np.integer):
            check_int_option("sweep", int(sweep), 2)
        self.repeats = check_int_option("repeats", repeats, 1)
        self.correct = bool(correct)
        self.refine = check_int_option("refine", refine, 0, MAX_REFINE)
        self.locality = check_positive("locality", locality)
        self.settle = check_positive("settle", settle, allow_zero=True)
        self.curves: TransferCurves | None = None
        self._hint: SweepHint | None = None
        self._present: np.ndarray | None = None

    @property
    def rounds(self) -> int:
        """Measurements after the sweep: the verification and the refinements."""
        return 1 + max(self.refine, int(self.correct))

    def run(self, routine: Routine, device: Device, target: np.ndarray) -> SearchOutcome:
        """As `Algorithm.run`; with `sweep` None the routine's sweep hint places the sweep."""
        hint = (routine.sweep_hint if self.sweep is None and isinstance(routine, SupportsSweepHint)
                else None)
        self._hint = (lambda goal: hint(goal, device)) if callable(hint) else None
        # The code the cell holds before the search: how far the first sweep read jumps.
        names = parameter_names(routine)
        self._present = device.read_settings(list(names))[names[0]] if len(names) == 1 else None
        try:
            return super().run(routine, device, target)
        finally:
            self._hint = None
            self._present = None

    def _sweep_candidates(self, n_units: int) -> np.ndarray:
        if self._hint is not None:
            return hinted_codes(self._hint(self._target), n_units, self._range)
        codes = sweep_codes(DEFAULT_SWEEP if self.sweep is None else self.sweep, self._range)
        return np.broadcast_to(codes[:, None], (codes.size, n_units))

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        self._range = single_range(type(self).__name__, parameter_range)
        self._target = np.asarray(target, dtype=float)
        n_units = self._target.size
        self._run = CodeSweep(self._sweep_candidates(n_units), self.repeats)
        self._best = BestTracker(self._target, self._run.codes)
        self._codes_seen: list[np.ndarray] = []
        self._values_seen: list[np.ndarray] = []
        self._jumps_seen: list[np.ndarray] = []
        self._rounds_left = self.rounds
        self._finished = False
        self.curves = None
        self._local: TransferCurves | None = None
        self._local_target = self.model.linearise(self._target)
        self._fit_failed = np.zeros(n_units, dtype=bool)
        self._chosen = (self._best.codes.copy(), self._best.measured.copy())
        return self._run.codes

    def update(self, measured: np.ndarray) -> np.ndarray:
        self._run.record(np.asarray(measured, dtype=float))
        if not self._run.done:
            return self._run.codes
        for candidate, mean in zip(self._run.candidates, self._run.means, strict=True):
            self._record(candidate, mean)
        self._fit()
        if self._rounds_left == 0:
            self._finished = True
            self._chosen = self._choose()
            return self._chosen[0]
        first = self._rounds_left == self.rounds
        self._rounds_left -= 1
        # The first prediction inverts the model fitted to the sweep; later ones the local line.
        codes = self._curves().predict(self._target) if first else self._proposal()
        # A unit without a usable fit retries its best point instead of a blind guess.
        codes = np.where(self._fit_failed, self._best.codes, codes)
        self._run = CodeSweep(codes[None, :], self.repeats)
        return self._run.codes

    def _record(self, codes: np.ndarray, mean: np.ndarray) -> None:
        self._best.offer(codes, mean)
        previous = self._codes_seen[-1] if self._codes_seen else self._present
        jump = np.zeros(codes.shape) if previous is None else np.abs(codes - previous)
        self._jumps_seen.append(jump.astype(float))
        self._codes_seen.append(np.array(codes, copy=True))
        self._values_seen.append(mean)

    def _curves(self) -> TransferCurves:
        if self.curves is None:
            raise RuntimeError("no curves fitted yet")
        return self.curves

    def _line(self) -> TransferCurves:
        if self._local is None:
            raise RuntimeError("no local line fitted yet")
        return self._local

    def _points(self) -> tuple[np.ndarray, np.ndarray]:
        return np.stack(self._codes_seen), np.stack(self._values_seen)

    def _fit(self) -> None:
        """The model fitted to every point (the kept curves), and the local line."""
        codes, values = self._points()
        settled = settling_weights(np.stack(self._jumps_seen), codes, self.settle)
        self.curves = TransferCurves(self.model, self.model.fit(codes, values, settled),
                                     self._range)
        weights = locality_weights(values, self._target, self.locality) * settled
        linear = self.model.linearise(values)
        self._local = TransferCurves(LOCAL_LINE, LOCAL_LINE.fit(codes, linear, weights),
                                     self._range)
        self._fit_failed = ~self.curves.valid

    def _proposal(self) -> np.ndarray:
        """Where the local line meets the target; where that code has been measured already,
        its neighbour across the target, so that the final choice can take either side. A
        unit whose last read failed goes halfway back to its best code."""
        local, goal = self._line(), self._local_target
        codes = np.where(local.valid, local.predict(goal), self._curves().predict(self._target))
        seen, values = self._points()
        side = np.sign(local.evaluate(codes.astype(float)) - goal)
        measured = np.any(seen == codes, axis=0)
        chosen = codes
        for step in (-1, 1):
            neighbour = self._range.clip(codes + step)
            across = np.sign(local.evaluate(neighbour.astype(float)) - goal) != side
            fresh = ~np.any(seen == neighbour, axis=0)
            chosen = np.where(across & fresh & measured & (chosen == codes), neighbour, chosen)
        failed = ~np.isfinite(values[-1])
        back = self._range.clip((seen[-1] + self._best.codes) / 2)
        return np.where(failed, back, chosen)

    def _choose(self) -> tuple[np.ndarray, np.ndarray]:
        """Per unit, the measured code whose local line is closest to the target, and the mean
        of its reads; the raw closest read where there is no line.

        A code on a range bound counts one code step of the line further away (and loses a
        tie): a unit there is reported failed, so a neighbouring code inside the range that is
        about as close wins."""
        codes, values = self._points()
        local = self._line()
        linear = self.model.linearise(values)
        smoothed = local.evaluate(codes.astype(float))
        estimate = np.where(np.isfinite(smoothed) & local.valid, smoothed, linear)
        distance = np.abs(estimate - self._local_target)
        step = np.abs(local.evaluate(np.ones(self._target.shape))
                      - local.evaluate(np.zeros(self._target.shape)))
        on_bound = self._range.at_bound(codes) != 0
        distance = distance + np.where(on_bound & np.isfinite(step), step * BOUND_STEPS, 0.0)
        distance = np.where(np.isfinite(distance) & np.isfinite(linear), distance, np.inf)
        pick = np.argmin(distance, axis=0)
        units = np.arange(self._target.size)
        chosen = codes[pick, units]
        usable = np.isfinite(distance[pick, units])
        same = (codes == chosen) & np.isfinite(values)
        with np.errstate(invalid="ignore", divide="ignore"):
            averaged = np.where(same, values, 0.0).sum(axis=0) / same.sum(axis=0)
        return (np.where(usable, chosen, self._best.codes),
                np.where(usable, averaged, self._best.measured))

    @property
    def done(self) -> bool:
        return self._finished

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        return self._chosen[0].copy(), self._chosen[1].copy()

    def notes(self) -> dict[int, str]:
        return {int(unit): f"{self.model.name} fit failed" for unit in
                np.flatnonzero(self._fit_failed)}

    def models(self) -> dict[str, np.ndarray]:
        if self.curves is None:
            return {}
        return {name: values.copy() for name, values in self.curves.params.items()}

    def predict(self, target: float | np.ndarray) -> np.ndarray:
        """Codes for a new target from the curves of the last run (no device access)."""
        if self.curves is None:
            raise ValueError("predict needs fitted curves: run the algorithm once first")
        return self.curves.predict(target)
