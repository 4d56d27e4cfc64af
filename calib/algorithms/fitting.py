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
from calib.algorithms.prediction import (
    BOUND_STEPS,
    DEFAULT_SWEEP,
    LOCAL_LINE,
    LOCALITY,
    MAX_REFINE,
    SETTLE,
    Params,
    PolynomialModel,
    SweepHint,
    TransferCurves,
    TransferModel,
    check_positive,
    fit_weights,
    hinted_codes,
    locality_weights,
    point_codes,
    settling_weights,
    sweep_codes,
    weighted_least_squares,
)
from calib.core.routine import (
    ParameterRange,
    Routine,
    SupportsNeuronSubset,
    SupportsSweepHint,
)
from device_model.protocol import Device

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
    when none do) and fits only a and b; a unit with a single usable read also takes the
    median b and fits only a. `linearise` gives 1 / tau, the conductance, which a
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
            a, b, c0 = (
                np.where(better, new, old) for new, old in zip(trial, (a, b, c0), strict=True)
            )
            cost = np.where(better, trial_cost, cost)
            damping = np.where(better, damping / 3.0, damping * 4.0)
        # The pole needs three clusters of codes; with fewer it wanders along the data, so
        # such a unit borrows the median pole of the units whose data determine it.
        ordered = np.sort(np.where(weights > 0, codes, np.nan), axis=0)
        gaps = np.diff(ordered, axis=0)
        any_usable = np.any(weights > 0, axis=0)
        distinct = np.sum(gaps > 0, axis=0) + any_usable
        clusters = (
            np.sum(gaps > self.cluster_gap * np.maximum(np.abs(ordered[:-1]), 1.0), axis=0)
            + any_usable
        )
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
        # A unit with a single usable read (the others out of its measurement's reach) borrows
        # the pole and the offset b too, so that its one point still places the next code.
        single = distinct == 1
        fitted = enough & np.isfinite(a) & np.isfinite(b) & np.isfinite(c0)
        if np.any(single) and np.any(fitted):
            pole = np.minimum(shared, pole_limit - 0.9)
            offset = float(np.median(b[fitted]))
            total = np.maximum(weights.sum(axis=0), 1e-300)
            point_code = (weights * codes).sum(axis=0) / total
            point_value = (weights * values).sum(axis=0) / total
            one_a = (point_value - offset) * (point_code - pole)
            usable_single = single & (one_a > 0)
            a = np.where(usable_single, one_a, a)
            b = np.where(usable_single, offset, b)
            c0 = np.where(usable_single, pole, c0)
            enough = enough | usable_single
        return {
            name: np.where(enough, value, np.nan)
            for name, value in zip(self.param_names, (a, b, c0), strict=True)
        }

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
            raise ValueError(
                f"hints name unknown parameters {sorted(unknown)}; the model has "
                f"{list(self.param_names)}"
            )

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
                result = self.model.fit(
                    values[finite, unit],
                    initial.copy(),
                    weights=None if weights is None else scale[finite, unit],
                    **{self._variable: codes[finite, unit]},
                )
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
                result[..., unit] = self.model.eval(
                    **unit_params, **{self._variable: columns[..., unit]}
                )
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


FOLLOW_UP_STEPS = 1.0
"""After the last refinement, a unit whose chosen code's local line lies more than this many
code steps off the target is read once more where the line meets it (`follow_ups`): its first
prediction was blind (a sweep its coarse reading missed) and the one refinement fell short,
e.g. 5.7 % off a 30 us tau_syn where the next codes but one were 0.3 % off."""
FOLLOW_UP_FRACTION = 0.002
"""... and more than this fraction of the target (linearised) off: a code step off a fine
transfer curve costs a follow-up more than it gains."""
COARSE_WEIGHT = 0.01
"""Weight of a coarse read in the local line, relative to a precise one at the same distance."""
COARSE_CONFLICT = 0.1
"""A unit whose first precise read lies this far off the curves fitted to its coarse sweep
(linearised, as a fraction of the target) has a coarse reading that does not hold for it (a
defective neuron): its coarse reads are dropped from both fits."""


class FittingSearch(Algorithm):
    """Sweep a few codes, fit a transfer model per unit, invert it for the target, verify,
    refine locally.

    `model`: 'inverse' (time constants, default), 'linear' (potentials), 'polynomial', a
    `TransferModel`, or an `lmfit.Model` (fitted unit by unit). `sweep` is None (default) for
    the codes the routine's `sweep_hint(target, device)` suggests (5 evenly spread codes for a
    routine without one), a count of evenly spread codes, or the codes. The model fitted to the
    sweep predicts each unit's code, which is measured (the verification). Each of `refine`
    further rounds (`correct` is `refine=1`) fits a straight line through every point so far,
    the observable linearised by the model (`1 / tau` for time constants), weighted towards the
    target (`locality`: the relative distance at which a point's weight has halved) and away
    from reads taken right after a large code jump (`settle`: the jump, as a fraction of the
    code, that halves the weight; 0 turns this off), and measures where the line meets the
    target; where that code has been measured already, its neighbour across the target
    instead. With `coarse_sweep` the sweep takes the routine's coarse reading where it has
    one (`SupportsCoarseMeasure`): the sweep only places the model, the prediction and the
    refinements near the target are read precisely. Every candidate is measured `repeats`
    times. Per unit the measured code whose
    local line lies closest to the target wins, so one noisy read does not decide. Costs
    `(n_sweep + 1 + refine) * repeats` measurements. `curves` keeps the model fitted to every
    point (settling weights only), so `predict(target)` serves a new target on the same chip
    without a sweep.

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
        coarse_sweep: bool = False,
        follow_ups: int = 0,
    ) -> None:
        self.model = resolve_model(model)
        self.follow_ups = check_int_option("follow_ups", follow_ups, 0, MAX_REFINE)
        self.coarse_sweep = bool(coarse_sweep)
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
        self._subsets = False

    @property
    def coarse(self) -> bool:
        """During the sweep, with `coarse_sweep`."""
        return self.coarse_sweep and not self._finished and self._rounds_left == self.rounds

    @property
    def rounds(self) -> int:
        """Measurements after the sweep: the verification and the refinements."""
        return 1 + max(self.refine, int(self.correct))

    def run(self, routine: Routine, device: Device, target: np.ndarray) -> SearchOutcome:
        """As `Algorithm.run`; with `sweep` None the routine's sweep hint places the sweep."""
        hint = (
            routine.sweep_hint
            if self.sweep is None and isinstance(routine, SupportsSweepHint)
            else None
        )
        self._hint = (lambda goal: hint(goal, device)) if callable(hint) else None
        # The code the cell holds before the search: how far the first sweep read jumps.
        names = parameter_names(routine)
        self._present = device.read_settings(list(names))[names[0]] if len(names) == 1 else None
        # Follow-ups only where they cost what the few units they read cost.
        self._subsets = isinstance(routine, SupportsNeuronSubset)
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
        self._coarse_seen: list[bool] = []
        self._coarse_conflict = np.zeros(n_units, dtype=bool)
        self._rounds_left = self.rounds
        self._follow_ups_left = self.follow_ups if self._subsets else 0
        self._pending: np.ndarray | None = None
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
        coarse = self.coarse
        if not coarse and any(self._coarse_seen) and self.curves is not None:
            self._check_coarse(self._run.candidates, self._run.means)
        for candidate, mean in zip(self._run.candidates, self._run.means, strict=True):
            self._record(candidate, mean, coarse)
        self._fit()
        if self._rounds_left == 0:
            self._chosen = self._choose()
            far, proposal = self._far_units() if self._follow_ups_left > 0 else (None, None)
            if far is not None and far.any():
                self._follow_ups_left -= 1
                self._pending = far
                codes = np.where(far, proposal, self._chosen[0])
                self._run = CodeSweep(codes[None, :], self.repeats)
                return self._run.codes
            self._pending = None
            self._finished = True
            return self._chosen[0]
        first = self._rounds_left == self.rounds
        self._rounds_left -= 1
        # The first prediction inverts the model fitted to the sweep; later ones the local line.
        codes = self._curves().predict(self._target) if first else self._proposal()
        # A unit without a usable fit retries its best point instead of a blind guess.
        codes = np.where(self._fit_failed, self._best.codes, codes)
        self._run = CodeSweep(codes[None, :], self.repeats)
        return self._run.codes

    def _record(self, codes: np.ndarray, mean: np.ndarray, coarse: bool = False) -> None:
        self._coarse_seen.append(coarse)
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

    def _check_coarse(self, candidates: Sequence[np.ndarray], means: Sequence[np.ndarray]) -> None:
        """Units whose precise reads lie off the sweep's curves by more than COARSE_CONFLICT
        (linearised, relative to the target): their coarse reads are dropped."""
        target = np.abs(self._local_target)
        for codes, mean in zip(candidates, means, strict=True):
            expected = self.model.linearise(self._curves().evaluate(np.asarray(codes, float)))
            with np.errstate(invalid="ignore", divide="ignore"):
                off = np.abs(self.model.linearise(mean) - expected) / target
            self._coarse_conflict |= np.isfinite(off) & (off > COARSE_CONFLICT)

    def _fit(self) -> None:
        """The model fitted to every point (the kept curves), and the local line."""
        codes, values = self._points()
        settled = settling_weights(np.stack(self._jumps_seen), codes, self.settle)
        coarse = np.asarray(self._coarse_seen, dtype=bool)[:, None]
        settled = np.where(coarse & self._coarse_conflict[None, :], 0.0, settled)
        self.curves = TransferCurves(
            self.model, self.model.fit(codes, values, settled), self._range
        )
        weights = locality_weights(values, self._target, self.locality) * settled
        # A coarse read (the sweep's) still gives the line its slope next to a single precise
        # read, but does not pull it off the precise reads near the target.
        weights = weights * np.where(coarse, COARSE_WEIGHT, 1.0)
        linear = self.model.linearise(values)
        self._local = TransferCurves(
            LOCAL_LINE, LOCAL_LINE.fit(codes, linear, weights), self._range
        )
        self._fit_failed = ~self.curves.valid

    def _proposal(self) -> np.ndarray:
        """Where the local line meets the target; where that code has been measured already,
        its neighbour across the target, so that the final choice can take either side. A
        unit whose last read failed goes halfway back to its best code."""
        local, goal = self._line(), self._local_target
        curves = self._curves()
        predicted = curves.predict(self._target)
        codes = np.where(local.valid, local.predict(goal), predicted)
        # A line running against the model's direction (a coarse read far off a precise one,
        # as on a defective neuron) points nowhere: the model's prediction instead.
        step = np.ones(codes.shape)
        line_slope = local.evaluate(codes + step) - local.evaluate(codes - step)
        model_slope = self.model.linearise(curves.evaluate(codes + step)) - self.model.linearise(
            curves.evaluate(codes - step)
        )
        wrong_way = np.sign(line_slope) * np.sign(model_slope) < 0
        codes = np.where(wrong_way, predicted, codes)
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

    @property
    def pending(self) -> np.ndarray | None:
        return self._pending

    def _far_units(self) -> tuple[np.ndarray, np.ndarray]:
        """(units whose chosen code's local line lies more than FOLLOW_UP_STEPS code steps
        and FOLLOW_UP_FRACTION of the target off it, with a code not yet measured to go to;
        the codes to go to: `_proposal`)."""
        local = self._line()
        chosen = self._chosen[0].astype(float)
        here = local.evaluate(chosen)
        step = np.abs(local.evaluate(chosen + 1.0) - here)
        off = np.abs(here - self._local_target)
        seen, _ = self._points()
        proposal = self._proposal()
        fresh = ~np.any(seen == proposal, axis=0)
        with np.errstate(invalid="ignore"):
            far = (off > FOLLOW_UP_STEPS * step) & (
                off > FOLLOW_UP_FRACTION * np.abs(self._local_target)
            )
        return local.valid & far & fresh, proposal

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
        step = np.abs(
            local.evaluate(np.ones(self._target.shape))
            - local.evaluate(np.zeros(self._target.shape))
        )
        on_bound = self._range.at_bound(codes) != 0
        distance = distance + np.where(on_bound & np.isfinite(step), step * BOUND_STEPS, 0.0)
        distance = np.where(np.isfinite(distance) & np.isfinite(linear), distance, np.inf)
        # A coarse read is chosen, and averaged in, only where no precise one is usable.
        coarse_rows = np.asarray(self._coarse_seen, dtype=bool)[:, None]
        has_precise = np.isfinite(np.where(coarse_rows, np.inf, distance)).any(axis=0)
        ignored = coarse_rows & has_precise[None, :]
        distance = np.where(ignored, np.inf, distance)
        pick = np.argmin(distance, axis=0)
        units = np.arange(self._target.size)
        chosen = codes[pick, units]
        usable = np.isfinite(distance[pick, units])
        same = (codes == chosen) & np.isfinite(values) & ~ignored
        with np.errstate(invalid="ignore", divide="ignore"):
            averaged = np.where(same, values, 0.0).sum(axis=0) / same.sum(axis=0)
        return (
            np.where(usable, chosen, self._best.codes),
            np.where(usable, averaged, self._best.measured),
        )

    @property
    def done(self) -> bool:
        return self._finished

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        return self._chosen[0].copy(), self._chosen[1].copy()

    def notes(self) -> dict[int, str]:
        return {
            int(unit): f"{self.model.name} fit failed" for unit in np.flatnonzero(self._fit_failed)
        }

    def models(self) -> dict[str, np.ndarray]:
        if self.curves is None:
            return {}
        return {name: values.copy() for name, values in self.curves.params.items()}

    def predict(self, target: float | np.ndarray) -> np.ndarray:
        """Codes for a new target from the curves of the last run (no device access)."""
        if self.curves is None:
            raise ValueError("predict needs fitted curves: run the algorithm once first")
        return self.curves.predict(target)
