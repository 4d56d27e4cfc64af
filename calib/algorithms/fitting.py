"""Fitting search: a physical transfer model fitted to a short sweep, inverted, verified and
refined locally.

Built-in models fit all units at once in numpy: `LinearModel` (potentials: observable = slope *
code + offset) and `InverseModel` (time constants: tau = a / (code - c0) + b). The inverse form
is exact for a conductance g = G (c - c_dead) / (1 + c / s) + g_parallel: 1 / g is a ratio of
two linear functions of the code, which is what a / (c - c0) + b is, with c0 just below the
dead zone and b from the saturation. Any `lmfit.Model` of one independent variable works too,
through `LmfitModel`, which fits unit by unit (slower: meant for exploring new models).
The fitted per-unit parameters stay in `FittingSearch.curves`; `predict(target)` answers a new
target on the same chip without a sweep.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from calib.algorithms.base import check_int_option
from calib.algorithms.prediction import (
    LOCALITY,
    SETTLE,
    Params,
    PolynomialModel,
    Prediction,
    TransferCurves,
    TransferModel,
    fit_weights,
    point_codes,
    weighted_least_squares,
)
from calib.core.routine import ParameterRange

if TYPE_CHECKING:  # lmfit (and scipy.optimize behind it) load only when a user model comes in
    import lmfit

__all__ = [
    "FittingSearch",
    "InverseModel",
    "LinearModel",
    "LmfitModel",
    "TransferCurves",
    "curves_from_params",
    "resolve_model",
]


class LinearModel(TransferModel):
    """observable = slope * code + offset (potentials behind a source follower)."""

    name = "linear"
    param_names = ("slope", "offset")

    def fit(
        self, codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
    ) -> Params:
        codes = point_codes(codes, values)
        design = np.stack([codes, np.ones(codes.shape)], axis=-1)
        slope, offset = weighted_least_squares(design, values, fit_weights(values, weights)).T
        return {"slope": slope, "offset": offset}

    def evaluate(self, params: Params, codes: np.ndarray) -> np.ndarray:
        return params["slope"] * codes + params["offset"]


class InverseModel(TransferModel):
    """tau = a / (code - c0) + b: a time constant set by a conductance (nearly) linear in the
    code, saturating gently.

    Fitted on relative residuals (a time constant spans a decade over the range). The pole c0
    is first chosen per unit from a grid below the lowest code, with (a, b) solved exactly for
    each candidate; Levenberg-Marquardt steps on all three then refine it. Codes may differ
    per unit. A unit whose codes form fewer than three clusters (`cluster_gap`) leaves its pole
    open: it takes the median pole of the units whose codes determine it (`fallback_pole`
    when none do) and fits only a and b. `linearise` gives 1 / tau, the conductance, which a
    local refinement fits with a straight line.
    """

    name = "inverse"
    param_names = ("a", "b", "c0")
    pole_gaps = np.geomspace(0.5, 4000.0, 48)
    """Distances of the candidate poles below the lowest sweep code."""
    cluster_gap = 0.1
    """Codes closer than this fraction of the code count as one cluster: a pole needs three."""
    fallback_pole = 0.0
    """The pole of a unit without enough clusters when no unit has them: a conductance that
    starts near code 0, its saturation left to b (just below the lowest code, if that is
    lower)."""

    def __init__(self, iterations: int = 20) -> None:
        self.iterations = check_int_option("iterations", iterations, 0, 1000)

    def evaluate(self, params: Params, codes: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):  # the pole itself: inf, not a fit
            return params["a"] / (codes - params["c0"]) + params["b"]

    def linearise(self, values: np.ndarray) -> np.ndarray:
        """1 / tau: the conductance, nearly linear in the code."""
        values = np.asarray(values, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(values > 0, 1.0 / values, np.nan)

    def fit(
        self, codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
    ) -> Params:
        codes = point_codes(codes, values)
        # Relative residuals; non-finite or non-positive reads carry no weight.
        usable = np.isfinite(values) & (values > 0)
        weights = fit_weights(values, weights) * np.where(usable, 1.0, 0.0)
        weights = np.where(usable, weights / np.where(usable, values, 1.0) ** 2, 0.0)
        values = np.where(usable, values, 0.0)
        lowest = np.where(usable, codes, np.inf).min(axis=0)
        pole_limit = np.where(np.isfinite(lowest), lowest, codes.min(axis=0)) - 0.1
        a, b, c0 = self._grid_start(codes, values, weights, pole_limit)
        cost = self._cost(codes, values, weights, a, b, c0)
        damping = np.full(a.shape, 1e-3)
        for _ in range(self.iterations):
            u = 1.0 / (codes - c0)
            residual = a * u + b - values
            jacobian = np.stack([u, np.ones_like(u), a * u * u], axis=-1)
            normal = np.einsum("pu,pui,puj->uij", weights, jacobian, jacobian)
            gradient = np.einsum("pu,pui,pu->ui", weights, jacobian, residual)
            diagonal = np.einsum("uii->ui", normal)
            scale = damping[:, None] * np.maximum(diagonal, 1e-30)
            damped = normal + scale[..., None] * np.eye(3)
            try:
                delta = -np.linalg.solve(damped, gradient[..., None])[..., 0]
            except np.linalg.LinAlgError:
                break
            delta = np.where(np.isfinite(delta), delta, 0.0)
            trial = (a + delta[:, 0], b + delta[:, 1], np.minimum(c0 + delta[:, 2], pole_limit))
            trial_cost = self._cost(codes, values, weights, *trial)
            better = trial_cost < cost
            a, b, c0 = (np.where(better, new, old) for new, old in zip(trial, (a, b, c0),
                                                                       strict=True))
            cost = np.where(better, trial_cost, cost)
            damping = np.where(better, damping / 3.0, damping * 4.0)
        # The pole needs three clusters of codes; with fewer it wanders along the data, so
        # such a unit borrows the median pole of the units whose data determine it.
        ordered = np.sort(np.where(weights > 0, codes, np.nan), axis=0)
        gaps = np.diff(ordered, axis=0)
        any_usable = np.any(weights > 0, axis=0)
        distinct = np.sum(gaps > 0, axis=0) + any_usable
        clusters = np.sum(gaps > self.cluster_gap * np.maximum(np.abs(ordered[:-1]), 1.0),
                          axis=0) + any_usable
        determined = (clusters >= 3) & np.isfinite(c0)
        shared = float(np.median(c0[determined])) if determined.any() else self.fallback_pole
        open_pole = ~determined & (distinct >= 2)
        if np.any(open_pole):
            pole = np.minimum(shared, pole_limit - 0.9)
            fixed_a, fixed_b = self._fixed_pole(codes, values, weights, pole)
            a = np.where(open_pole, fixed_a, a)
            b = np.where(open_pole, fixed_b, b)
            c0 = np.where(open_pole, pole, c0)
        enough = distinct >= 2
        return {name: np.where(enough, value, np.nan) for name, value in
                zip(self.param_names, (a, b, c0), strict=True)}

    @staticmethod
    def _fixed_pole(
        codes: np.ndarray, values: np.ndarray, weights: np.ndarray, pole: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of tau = a / (code - pole) + b for a given pole per unit."""
        u = 1.0 / (codes - pole)
        design = np.stack([u, np.ones(u.shape)], axis=-1)
        a, b = weighted_least_squares(design, values, weights).T
        return a, b

    def _grid_start(
        self, codes: np.ndarray, values: np.ndarray, weights: np.ndarray, pole_limit: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        poles = pole_limit + 0.1 - self.pole_gaps[:, None]  # (n_poles, n_units)
        u = 1.0 / (codes[:, None, :] - poles[None])  # (n_points, n_poles, n_units)
        # Weighted 2x2 normal equations for (a, b) at every (pole, unit), solved in closed form.
        w = weights[:, None, :]
        suu = (w * u * u).sum(axis=0)
        su = (w * u).sum(axis=0)
        s1 = weights.sum(axis=0)[None, :]
        suy = (w * values[:, None, :] * u).sum(axis=0)
        sy = (weights * values).sum(axis=0)[None, :]
        det = suu * s1 - su * su
        safe = np.where(np.abs(det) > 0, det, np.inf)
        a = (suy * s1 - su * sy) / safe
        b = (suu * sy - su * suy) / safe
        fitted = a[None] * u + b[None]  # (n_points, n_poles, n_units)
        cost = (w * (fitted - values[:, None, :]) ** 2).sum(axis=0)
        cost = np.where(np.isfinite(cost), cost, np.inf)
        pick = np.argmin(cost, axis=0)
        units = np.arange(values.shape[1])
        return a[pick, units], b[pick, units], poles[pick, units]

    @staticmethod
    def _cost(codes, values, weights, a, b, c0) -> np.ndarray:
        residual = a / (codes - c0) + b - values
        cost = (weights * residual * residual).sum(axis=0)
        return np.where(np.isfinite(cost), cost, np.inf)


class LmfitModel(TransferModel):
    """Any lmfit.Model of one independent variable (the code), fitted unit by unit.

    `hints` are initial values (and optionally bounds as (value, min, max)) for the model's
    parameters. A unit whose fit raises or does not finish gets NaN parameters.
    """

    def __init__(
        self,
        model: lmfit.Model,
        hints: Mapping[str, float | tuple[float, float, float]] | None = None,
    ) -> None:
        if len(model.independent_vars) != 1:
            raise ValueError(
                f"model must have one independent variable (the code), it has "
                f"{model.independent_vars}"
            )
        self.model = model
        self.name = f"lmfit:{model.name}"
        self.param_names = tuple(model.param_names)
        self._variable = model.independent_vars[0]
        self.hints = dict(hints or {})
        unknown = set(self.hints) - set(self.param_names)
        if unknown:
            raise ValueError(f"hints name unknown parameters {sorted(unknown)}; the model has "
                             f"{list(self.param_names)}")

    def _initial(self) -> lmfit.Parameters:
        params = self.model.make_params()  # an lmfit.Parameters
        for name, hint in self.hints.items():
            if isinstance(hint, tuple):
                value, low, high = hint
                params[name].set(value=value, min=low, max=high)
            else:
                params[name].set(value=hint)
        return params

    def fit(
        self, codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
    ) -> Params:
        codes = point_codes(codes, values)
        # lmfit weighs residuals, not squares: the square root of each point's share.
        scale = np.sqrt(fit_weights(values, weights))
        fitted = np.full((values.shape[1], len(self.param_names)), np.nan)
        initial = self._initial()
        for unit in range(values.shape[1]):  # the user-model path: one lmfit fit per unit
            finite = scale[:, unit] > 0
            if finite.sum() < len(self.param_names):
                continue
            try:
                result = self.model.fit(values[finite, unit], initial.copy(),
                                        weights=None if weights is None else scale[finite, unit],
                                        **{self._variable: codes[finite, unit]})
            except (ValueError, TypeError, ArithmeticError):
                continue
            if result.success:
                fitted[unit] = [result.params[name].value for name in self.param_names]
        return {name: fitted[:, k] for k, name in enumerate(self.param_names)}

    def evaluate(self, params: Params, codes: np.ndarray) -> np.ndarray:
        codes = np.asarray(codes, dtype=float)
        n_units = len(params[self.param_names[0]])
        columns = np.broadcast_to(codes, np.broadcast_shapes(codes.shape, (n_units,)))
        result = np.full(columns.shape, np.nan)
        for unit in range(n_units):
            unit_params = {name: params[name][unit] for name in self.param_names}
            if np.all(np.isfinite(list(unit_params.values()))):
                result[..., unit] = self.model.eval(**unit_params,
                                                    **{self._variable: columns[..., unit]})
        return result


BUILT_IN_MODELS = {"linear": LinearModel, "inverse": InverseModel, "polynomial": PolynomialModel}


def resolve_model(model: str | TransferModel | lmfit.Model) -> TransferModel:
    """A TransferModel from a built-in name, a TransferModel, or an lmfit.Model."""
    if isinstance(model, TransferModel):
        return model
    if isinstance(model, str) and model in BUILT_IN_MODELS:
        return BUILT_IN_MODELS[model]()
    if not isinstance(model, str):
        import lmfit

        if isinstance(model, lmfit.Model):
            return LmfitModel(model)
    raise ValueError(
        f"model = {model!r} is not allowed: use one of {sorted(BUILT_IN_MODELS)}, a TransferModel "
        "or an lmfit.Model"
    )


def curves_from_params(
    params: Mapping[str, np.ndarray], parameter_range: ParameterRange
) -> TransferCurves:
    """Rebuild the curves of a built-in model from stored per-unit parameters.

    The parameter names identify the model (as in `NeuronResult.models[quantity]`): slope and
    offset (linear), a, b and c0 (inverse), p0..pk (polynomial of degree k).
    """
    names = set(params)
    arrays = {name: np.asarray(values, dtype=float) for name, values in params.items()}
    degree = len(names) - 1
    candidates: list[TransferModel] = [LinearModel(), InverseModel()]
    if 1 <= degree <= 6:
        candidates.append(PolynomialModel(degree))
    for model in candidates:
        if names == set(model.param_names):
            return TransferCurves(model, arrays, parameter_range)
    raise ValueError(
        f"parameters {sorted(names)} match no built-in model (linear: slope, offset; inverse: "
        "a, b, c0; polynomial: p0..pk)"
    )


class FittingSearch(Prediction):
    """Sweep a few codes, fit a physical model per unit, invert it for the target, verify,
    and refine locally (see `Prediction` for the rounds, the local line and the choice).

    `model`: 'inverse' (time constants, default), 'linear' (potentials), 'polynomial', a
    `TransferModel`, or an `lmfit.Model` (fitted unit by unit). `sweep`: None (default) for
    the codes the routine's `sweep_hint(target, device)` suggests (5 evenly spread codes for a
    routine without one), a count of evenly spread codes, or the codes. Costs
    `(n_sweep + 1 + refine) * repeats` measurements (`correct` is `refine=1`). After a run,
    `curves` holds the per-unit fit and `predict(target)` gives codes for another target
    without touching the device.

    For the time constants of the simulated chip, `FittingSearch(refine=2)` on the routines'
    three-code hint (6 measurements) reaches lower residuals than a 10-step binary search
    (figures: bench/fitting_search.py).
    """

    name = "fitting_search"

    def __init__(
        self,
        model: str | TransferModel | lmfit.Model = "inverse",
        sweep: int | Sequence[int] | None = None,
        repeats: int = 1,
        correct: bool = False,
        refine: int = 0,
        locality: float = LOCALITY,
        settle: float = SETTLE,
    ) -> None:
        super().__init__(resolve_model(model), sweep=sweep, repeats=repeats, correct=correct,
                         refine=refine, locality=locality, settle=settle)
