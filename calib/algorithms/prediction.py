"""Prediction from a characterised transfer curve: sweep, fit per unit, invert, verify.

A `TransferModel` describes observable = f(code; params) with one parameter set per unit and
fits every unit of a sweep at once. `TransferCurves` holds a fitted model (per-unit parameter
arrays plus the code range) and predicts the codes for any new target without another sweep;
its `params` are what `NeuronResult.models[quantity]` stores, and `TransferCurves(model, params,
range)` rebuilds it from there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from calib.algorithms.base import (
    Algorithm,
    BestTracker,
    CodeSweep,
    Ranges,
    check_int_option,
    single_range,
)
from calib.routine import ParameterRange
from device_model.protocol import CAPMEM_MAX

Params = dict[str, np.ndarray]


class TransferModel(ABC):
    """observable = f(code; params), one parameter set per unit."""

    name: str = "model"
    param_names: tuple[str, ...] = ()

    @abstractmethod
    def fit(self, codes: np.ndarray, values: np.ndarray) -> Params:
        """Fit every unit: `codes` (n_points,), `values` (n_points, n_units) -> name -> (n_units,).

        Non-finite values are left out; a unit with too few finite points gets NaN parameters.
        """

    @abstractmethod
    def evaluate(self, params: Params, codes: np.ndarray) -> np.ndarray:
        """f at `codes` of shape (n_units,) or (n_codes, n_units), for every unit."""


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

    def fit(self, codes: np.ndarray, values: np.ndarray) -> Params:
        design = self._scaled(codes)[:, None] ** np.arange(self.degree + 1)
        coefficients = weighted_least_squares(design, values, finite_weights(values))
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


class Prediction(Algorithm):
    """Sweep a few codes, fit a transfer model per unit, invert it, verify with one run.

    `sweep` is the number of evenly spread codes (or the codes themselves), each measured
    `repeats` times. The prediction is verified with one measurement; with `correct`, the curve
    is shifted per unit by the verification's deviation and inverted once more (one more run).
    The best measured candidate per unit wins. The fitted curves stay in `curves` after a run,
    so `predict(target)` serves a new target on the same chip without a sweep.
    """

    name = "prediction"

    def __init__(
        self,
        model: TransferModel | None = None,
        sweep: int | Sequence[int] = 5,
        repeats: int = 1,
        correct: bool = False,
    ) -> None:
        self.model = model if model is not None else PolynomialModel(2)
        if not isinstance(self.model, TransferModel):
            raise ValueError(f"model must be a TransferModel, got {type(self.model).__name__}")
        self.sweep = sweep
        if isinstance(sweep, int | np.integer):
            check_int_option("sweep", int(sweep), 2)
        self.repeats = check_int_option("repeats", repeats, 1)
        self.correct = bool(correct)
        self.curves: TransferCurves | None = None

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        self._range = single_range(type(self).__name__, parameter_range)
        self._target = np.asarray(target, dtype=float)
        n_units = self._target.size
        codes = sweep_codes(self.sweep, self._range)
        self._phase = "sweep"
        self._run = CodeSweep(np.broadcast_to(codes[:, None], (codes.size, n_units)), self.repeats)
        self._best = BestTracker(self._target, self._run.codes)
        self.curves = None
        self._fit_failed = np.zeros(n_units, dtype=bool)
        return self._run.codes

    def update(self, measured: np.ndarray) -> np.ndarray:
        self._run.record(np.asarray(measured, dtype=float))
        if not self._run.done:
            return self._run.codes
        for candidate, mean in zip(self._run.candidates, self._run.means, strict=True):
            self._best.offer(candidate, mean)
        if self._phase == "sweep":
            codes = self._run.candidates[:, 0]
            params = self.model.fit(codes, self._run.means)
            self.curves = TransferCurves(self.model, params, self._range)
            self._fit_failed = ~self.curves.valid
            self._phase = "verify"
            return self._next_run(self.curves.predict(self._target))
        if self._phase == "verify" and self.correct and self.curves is not None:
            codes, mean = self._run.candidates[0], self._run.means[0]
            deviation = mean - self.curves.evaluate(codes)
            shifted = self._target - np.where(np.isfinite(deviation), deviation, 0.0)
            self._phase = "correct"
            return self._next_run(self.curves.predict(shifted))
        self._phase = "done"
        return self._best.codes

    def _next_run(self, codes: np.ndarray) -> np.ndarray:
        # A unit without a usable fit retries the best sweep point instead of a blind guess.
        codes = np.where(self._fit_failed, self._best.codes, codes)
        self._run = CodeSweep(codes[None, :], self.repeats)
        return self._run.codes

    @property
    def done(self) -> bool:
        return self._phase == "done"

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        return self._best.codes.copy(), self._best.measured.copy()

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
