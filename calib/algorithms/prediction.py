"""Transfer curves: models of observable = f(code) fitted per unit, and their inversion.

A `TransferModel` describes observable = f(code; params) with one parameter set per unit and
fits every unit of a sweep at once (shared or per-unit codes, optional per-point weights).
`TransferCurves` holds a fitted model (per-unit parameter arrays plus the code range) and
predicts the codes for any new target without another sweep; its `params` are what
`NeuronResult.models[quantity]` stores, and `TransferCurves(model, params, range)` rebuilds it
from there. `calib.algorithms.fitting.FittingSearch` is the search built on them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms.base import (
    check_int_option,
)
from calib.core.routine import ParameterRange
from device_model.protocol import CAPMEM_MAX

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
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not np.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        allowed = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} = {value!r} is outside the allowed range {allowed}")
    return float(value)
