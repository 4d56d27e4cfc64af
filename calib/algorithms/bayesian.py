"""Bayesian search: one optuna study per unit (or per group of units), batched ask/tell.

Every step asks one trial from each unfinished study, evaluates all units in a single device
run (one apply + measure), and tells each study its unit's result. The objective is the
normalised distance to the target: for each observable |measured - target| / tolerance, the
worst observable counting, so a unit is within tolerance exactly when its objective is at most 1.
A study stops as soon as its unit is within tolerance; a finished unit keeps its best code.

Works for single-parameter routines (codes (n_units,)) and for a `MultiParameterRoutine`
(codes (n_units, n_params), one range per parameter); the target may be (n_units,) or
(n_units, n_observables), matching what `measure` returns.

Host time: optuna's TPE costs roughly 0.7 to 0.9 ms of CPU per ask and tell once past its random
start-up trials, so 512 studies are the main cost of a step (`python bench/bayesian.py` prints
the figures). Codes are asked as floats over [low - 0.5, high + 0.5] and rounded to the nearest
code (TPE's integer distributions compute discrete probability masses element by element in
Python, two to three times slower), the distributions are built once per run, optuna's logging
is silenced, constant-liar bookkeeping is off (trials are told before the next ask), and
finished studies are no longer asked.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from calib.algorithms.base import Algorithm, Ranges, as_unit_array, check_int_option
from calib.core.routine import ParameterRange

if TYPE_CHECKING:
    import optuna

FAILED_READ_PENALTY = 1e6
"""Objective told for a unit whose measurement is not finite (a dead or unreadable unit)."""


@cache
def _optuna() -> ModuleType:
    """optuna, imported on first use (it is slow to import) with its logging silenced."""
    module = importlib.import_module("optuna")
    module.logging.set_verbosity(module.logging.WARNING)
    return module


SamplerFactory = Callable[[int, int, Mapping[str, Any]], "optuna.samplers.BaseSampler"]


def _tpe(seed: int, n_startup: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    settings = {
        "n_startup_trials": n_startup,
        "multivariate": True,
        "constant_liar": False,
        **options,
    }
    return _optuna().samplers.TPESampler(seed=seed, **settings)


def _gp(seed: int, n_startup: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    return _optuna().samplers.GPSampler(
        seed=seed, n_startup_trials=n_startup, deterministic_objective=False, **options
    )


def _cmaes(seed: int, n_startup: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    return _optuna().samplers.CmaEsSampler(seed=seed, n_startup_trials=n_startup, **options)


def _random(seed: int, n_startup: int, options: Mapping[str, Any]) -> optuna.samplers.BaseSampler:
    return _optuna().samplers.RandomSampler(seed=seed, **options)


SAMPLERS: dict[str, SamplerFactory] = {"tpe": _tpe, "gp": _gp, "cmaes": _cmaes, "random": _random}
"""Sampler name -> factory(seed, n_startup_trials, options)."""

SAMPLER_REQUIREMENTS = {"gp": ("torch",), "cmaes": ("cmaes",)}
"""Packages optuna needs for a sampler beyond its own dependencies."""


def check_sampler(name: str) -> str:
    """`name` if it is a known sampler whose packages are installed; ValueError/ImportError."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler = {name!r} is not one of {', '.join(SAMPLERS)}")
    missing = [
        pkg for pkg in SAMPLER_REQUIREMENTS.get(name, ()) if importlib.util.find_spec(pkg) is None
    ]
    if missing:
        raise ImportError(
            f"sampler {name!r} needs the package(s) {', '.join(missing)}, which are not "
            "installed; use 'tpe' or 'random', or install them"
        )
    return name


class BayesianSearch(Algorithm):
    """optuna ask/tell per unit, all units evaluated in one device run per step.

    - `budget`: trials per study (device runs at most `budget`).
    - `sampler`: 'tpe' (default), 'gp', 'cmaes' or 'random'; `sampler_options` go to its
      constructor. 'gp' needs torch and 'cmaes' the cmaes package.
    - `tolerance`: per observable (scalar or (n_observables,)), a fraction of |target| when
      `relative`, else in the observable's units. A unit within it stops early.
    - `seed`: runs repeat exactly for the same seed (each study's sampler seed derives from it).
    - `groups`: None for one study per unit; or a group index per unit (the units of a group share
      one code, e.g. a cell shared by a quadrant), the group's objective being the mean of its
      units' objectives; 'all' puts every unit in one group (a chip-wide shared parameter).
    - `n_startup_trials`: random trials before the model-based sampler takes over.
    - `initial`: codes to try first (scalar, (n_units,) or (n_units, n_params)), e.g. those of an
      earlier calibration of the same chip; a group starts from its first unit's codes.
    """

    name = "bayesian"

    def __init__(
        self,
        budget: int = 80,
        sampler: str = "tpe",
        tolerance: float | np.ndarray = 0.05,
        relative: bool = True,
        seed: int = 0,
        groups: np.ndarray | str | None = None,
        n_startup_trials: int = 10,
        sampler_options: Mapping[str, Any] | None = None,
        initial: int | np.ndarray | None = None,
    ) -> None:
        self.budget = check_int_option("budget", budget, 1)
        self.sampler = check_sampler(sampler)
        tolerance_array = np.atleast_1d(np.asarray(tolerance, dtype=float))
        if (
            tolerance_array.ndim != 1
            or not np.all(np.isfinite(tolerance_array))
            or np.any(tolerance_array <= 0)
        ):
            raise ValueError(f"tolerance = {tolerance!r} must be positive and finite")
        self.tolerance = tolerance_array
        self.relative = bool(relative)
        self.seed = check_int_option("seed", seed, 0)
        if isinstance(groups, str) and groups != "all":
            raise ValueError(f"groups = {groups!r}: use None, 'all' or a group index per unit")
        self.groups = groups
        self.n_startup_trials = check_int_option("n_startup_trials", n_startup_trials, 0)
        self.sampler_options = dict(sampler_options or {})
        self.initial = initial

    # -- set-up ---------------------------------------------------------------------------------

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        ranges = (
            (parameter_range,)
            if isinstance(parameter_range, ParameterRange)
            else tuple(parameter_range)
        )
        self._multi = not isinstance(parameter_range, ParameterRange)
        self._ranges = ranges
        target = np.asarray(target, dtype=float)
        self._target = target if target.ndim == 2 else target[:, None]
        n_units, n_observables = self._target.shape
        self._scale = self._tolerance_scale(n_observables)
        self._group_of, n_groups = self._group_index(n_units)
        optuna = _optuna()
        self._distributions = {
            f"code{j}": optuna.distributions.FloatDistribution(r.low - 0.5, r.high + 0.5)
            for j, r in enumerate(ranges)
        }
        factory = SAMPLERS[self.sampler]
        seeds = np.random.SeedSequence(self.seed).generate_state(n_groups)
        self._studies = [
            optuna.create_study(
                sampler=factory(int(s), self.n_startup_trials, self.sampler_options),
                direction="minimize",
            )
            for s in seeds
        ]
        if self.initial is not None:
            self._enqueue_initial(n_units)
        self._active = np.ones(n_groups, dtype=bool)
        self._trials: list[optuna.trial.Trial | None] = [None] * n_groups
        self._group_codes = np.zeros((n_groups, len(ranges)), dtype=np.int64)
        self._best_codes = np.zeros((n_units, len(ranges)), dtype=np.int64)
        self._best_objective = np.full(n_units, np.inf)
        self._best_group_objective = np.full(n_groups, np.inf)
        self._best_measured = np.full(self._target.shape, np.nan)
        self._trial_count = 0
        self._trials_used = np.zeros(n_units, dtype=np.int64)
        return self._ask()

    def _enqueue_initial(self, n_units: int) -> None:
        shape = (n_units, len(self._ranges))
        initial = np.asarray(self.initial, dtype=float)
        if initial.shape == (n_units,):
            initial = initial[:, None]  # one code per unit, for every parameter
        try:
            initial = np.broadcast_to(initial, shape)
        except ValueError:
            raise ValueError(
                f"initial must be a scalar or have shape ({n_units},) or {shape}, got "
                f"{np.shape(self.initial)}"
            ) from None
        for j, limits in enumerate(self._ranges):
            outside = (initial[:, j] < limits.low) | (initial[:, j] > limits.high)
            if outside.any():
                raise ValueError(
                    f"initial code {initial[outside, j][0]:g} is outside the parameter range "
                    f"{limits.low}..{limits.high}"
                )
        first_unit = np.unique(self._group_of, return_index=True)[1]
        for study, codes in zip(self._studies, initial[first_unit], strict=True):
            study.enqueue_trial(dict(zip(self._distributions, map(float, codes), strict=True)))

    def _tolerance_scale(self, n_observables: int) -> np.ndarray:
        if self.tolerance.size not in (1, n_observables):
            raise ValueError(
                f"tolerance has {self.tolerance.size} entries, the target {n_observables} "
                "observables"
            )
        scale = np.broadcast_to(self.tolerance, (n_observables,))
        if self.relative:
            return scale * np.maximum(np.abs(self._target), np.finfo(float).tiny)
        return np.broadcast_to(scale, self._target.shape)

    def _group_index(self, n_units: int) -> tuple[np.ndarray, int]:
        if self.groups is None:
            return np.arange(n_units), n_units
        if isinstance(self.groups, str):
            return np.zeros(n_units, dtype=np.int64), 1
        groups = as_unit_array("groups", self.groups, n_units)
        if np.any(groups != np.rint(groups)) or groups.min() < 0:
            raise ValueError("groups must hold non-negative integer group indices, one per unit")
        _, index = np.unique(groups.astype(np.int64), return_inverse=True)
        return index, int(index.max()) + 1

    # -- ask/tell -------------------------------------------------------------------------------

    def _ask(self) -> np.ndarray:
        active = np.flatnonzero(self._active)
        asked = np.zeros((active.size, len(self._ranges)))
        for row, group in enumerate(active):
            trial = self._studies[group].ask(self._distributions)
            self._trials[group] = trial
            asked[row] = [trial.params[name] for name in self._distributions]
        # Each code owns the interval [code - 0.5, code + 0.5] of the asked float.
        for j, limits in enumerate(self._ranges):
            self._group_codes[active, j] = limits.clip(asked[:, j])
        unit_codes = self._group_codes[self._group_of]
        # A finished unit keeps proposing its best code (its study is no longer asked).
        finished = ~self._active[self._group_of]
        unit_codes = np.where(finished[:, None], self._best_codes, unit_codes)
        self._codes = unit_codes
        return unit_codes if self._multi else unit_codes[:, 0]

    def update(self, measured: np.ndarray) -> np.ndarray:
        measured = np.asarray(measured, dtype=float).reshape(self._target.shape)
        distance = np.max(np.abs(measured - self._target) / self._scale, axis=1)
        objective = np.where(np.isfinite(distance), distance, FAILED_READ_PENALTY)
        group_objective = np.bincount(self._group_of, objective) / np.bincount(self._group_of)
        # Kept per group (a group of one unit is the per-unit case): the units of a group share
        # the codes of the group's best trial and keep what they measured with them.
        improved = self._active & (group_objective < self._best_group_objective)
        self._best_group_objective = np.where(improved, group_objective, self._best_group_objective)
        better = improved[self._group_of]
        self._best_objective = np.where(better, objective, self._best_objective)
        self._best_codes = np.where(better[:, None], self._codes, self._best_codes)
        self._best_measured = np.where(better[:, None], measured, self._best_measured)
        for group in np.flatnonzero(self._active):
            self._studies[group].tell(self._trials[group], float(group_objective[group]))
        self._trial_count += 1
        self._trials_used[self._active[self._group_of]] = self._trial_count
        self._active &= group_objective > 1.0
        if self.done:
            return self.best()[0]
        return self._ask()

    @property
    def done(self) -> bool:
        return self._trial_count >= self.budget or not self._active.any()

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        codes = self._best_codes.copy()
        measured = self._best_measured.copy()
        if self._target.shape[1] == 1 and measured.ndim == 2:
            measured = measured[:, 0]
        return (codes if self._multi else codes[:, 0]), measured

    def notes(self) -> dict[int, str]:
        missed = np.flatnonzero(self._best_objective > 1.0)
        # In a group, a unit outside tolerance is noted even if the group's mean is within it.
        return {
            int(unit): (
                f"not within tolerance after {self._trial_count} trials "
                f"(normalised distance {self._best_objective[unit]:.3g})"
            )
            for unit in missed
        }

    @property
    def objective(self) -> np.ndarray:
        """Per unit, the best normalised distance reached (at most 1: within tolerance)."""
        return self._best_objective.copy()

    @property
    def trials_used(self) -> np.ndarray:
        """Per unit, the trials its study ran in the last run (to tolerance, or the budget)."""
        return self._trials_used.copy()
