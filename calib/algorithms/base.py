"""The algorithm interface and the one driver loop every algorithm shares.

An algorithm proposes codes and consumes observations (ask/tell); it never owns the device.
`Algorithm.run` is the short, common loop: apply, measure, update, until done.

Units and shapes: an algorithm works on as many units as the target has entries (neurons, or
quadrants for per-quadrant cells). A single-parameter routine takes codes of shape (n_units,);
a `MultiParameterRoutine` takes (n_units, n_params). `measure` returns (n_units,) or, for several
observables, (n_units, n_observables) with a target of the same shape.

Failure causes: `SearchOutcome.at_bound` says per unit (and parameter) whether the final code sits
on a range bound (-1 low, +1 high, 0 inside, as `ParameterRange.at_bound`), and
`SearchOutcome.reasons` maps a failed unit to a readable cause: the bound ("tau_mem: code at upper
bound 1022") and whatever the algorithm itself noticed (`Algorithm.notes`, e.g. a fit that did not
converge). Whether a unit reached its target within tolerance is judged by the caller, which knows
the tolerance; a unit at a range bound counts as failed even when it is close to its target.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from calib.core.routine import (
    ParameterRange,
    Routine,
    RoutineFailed,
    SupportsCoarseMeasure,
    SupportsNeuronSubset,
)
from device_model.protocol import Device, TransientRunError

MAX_RUN_RETRIES = 3
"""A transient device failure is retried this many times before it is raised."""

Ranges = ParameterRange | tuple[ParameterRange, ...]
"""What `Algorithm.start` gets: one range, or one per parameter of a multi-parameter routine."""


class MultiParameterRoutine(Routine):
    """A quantity set by several cells at once (for searches such as `BayesianSearch`).

    `parameters` names the cells and `parameter_ranges` gives one range each; `apply` takes codes
    of shape (n_units, n_params), column j for cell `parameters[j]`. `measure` returns (n_units,)
    or (n_units, n_observables); the target then has the same shape.
    """

    parameters: tuple[str, ...]
    parameter_ranges: tuple[ParameterRange, ...]

    @property
    def parameter(self) -> str:  # type: ignore[override] - derived from `parameters`
        return "+".join(self.parameters)

    def apply(self, device: Device, codes: np.ndarray) -> None:
        codes = np.asarray(codes)
        device.write({name: codes[:, j] for j, name in enumerate(self.parameters)})


def search_ranges(routine: Routine) -> Ranges:
    """The range(s) an algorithm searches for `routine`: a tuple for multi-parameter routines."""
    ranges = getattr(routine, "parameter_ranges", None)
    return tuple(ranges) if ranges is not None else routine.parameter_range


def single_range(algorithm: str, ranges: Ranges) -> ParameterRange:
    """The one range of a single-parameter search; ValueError for a multi-parameter routine."""
    if isinstance(ranges, ParameterRange):
        return ranges
    raise ValueError(
        f"{algorithm} searches one parameter, the routine has {len(ranges)}; "
        "use BayesianSearch for multi-parameter routines"
    )


def parameter_names(routine: Routine) -> tuple[str, ...]:
    names = getattr(routine, "parameters", None)
    return tuple(names) if names is not None else (routine.parameter,)


def at_bounds(ranges: Ranges, codes: np.ndarray) -> np.ndarray:
    """`ParameterRange.at_bound` per unit, or per unit and parameter for several ranges."""
    if isinstance(ranges, ParameterRange):
        return ranges.at_bound(codes)
    columns = np.asarray(codes).T
    return np.stack([r.at_bound(c) for r, c in zip(ranges, columns, strict=True)], axis=1)


def bound_reasons(routine: Routine, ranges: Ranges, codes: np.ndarray) -> dict[int, str]:
    """Unit -> 'name: code at lower/upper bound N' for every unit whose final code sits on one."""
    range_list = [ranges] if isinstance(ranges, ParameterRange) else list(ranges)
    bounds = at_bounds(ranges, codes).reshape(len(codes), -1)
    names = parameter_names(routine)
    reasons: dict[int, list[str]] = {}
    for j, (cells, limits) in enumerate(zip(names, range_list, strict=True)):
        bound = bounds[:, j]
        which = f"{cells} " if len(range_list) > 1 else ""
        for unit in np.flatnonzero(bound):
            side, value = ("lower", limits.low) if bound[unit] < 0 else ("upper", limits.high)
            reasons.setdefault(int(unit), []).append(f"{which}code at {side} bound {value}")
    return {unit: f"{routine.name}: " + ", ".join(parts) for unit, parts in reasons.items()}


def merge_reasons(*sources: dict[int, str]) -> dict[int, str]:
    merged: dict[int, str] = {}
    for source in sources:
        for unit, reason in source.items():
            merged[unit] = f"{merged[unit]}; {reason}" if unit in merged else reason
    return dict(sorted(merged.items()))


@dataclass(frozen=True)
class SearchOutcome:
    """The codes an algorithm settled on and the observable it last measured with them."""

    codes: np.ndarray
    measured: np.ndarray
    steps: int
    """Measurements taken (device runs of `routine.measure`), retries not counted."""
    at_bound: np.ndarray | None = None
    """Per unit (per unit and parameter for several): -1 low bound, +1 high bound, 0 inside."""
    reasons: dict[int, str] = field(default_factory=dict)
    """Unit -> why it is suspect: a range bound, or what the algorithm noticed."""
    models: dict[str, np.ndarray] = field(default_factory=dict)
    """Fitted transfer-curve parameters per unit, where the algorithm fitted one."""
    notes: dict[int, str] = field(default_factory=dict)
    """Unit -> what the algorithm itself noticed (the part of `reasons` that is no bound)."""


def with_retries(routine: Routine, action: Callable[..., Any], *args: Any) -> Any:
    """Call `action(*args)`, retrying transient device failures a bounded number of times."""
    for attempt in range(MAX_RUN_RETRIES + 1):
        try:
            return action(*args)
        except TransientRunError as error:
            if attempt == MAX_RUN_RETRIES:
                raise RoutineFailed(
                    f"routine {routine.name!r}: device run failed {MAX_RUN_RETRIES + 1} times: "
                    f"{error}"
                ) from error
    raise AssertionError("unreachable")


def subset_reader(routine: Routine, neurons: np.ndarray | None) -> Callable[[Device], np.ndarray]:
    """The routine's measurement of `neurons` alone (NaN elsewhere) where given and the
    routine can read a subset for less (`SupportsNeuronSubset`); of every unit otherwise."""
    if neurons is not None and isinstance(routine, SupportsNeuronSubset):
        return partial(routine.measure_neurons, neurons=np.asarray(neurons))
    return routine.measure


def measure_once(
    routine: Routine, device: Device, neurons: np.ndarray | None = None, repeats: int = 1
) -> np.ndarray:
    """The routine's observable with the device as configured (prelude, measure, postlude);
    of `neurons` alone where the routine can (`subset_reader`). With `repeats` > 1, that many
    reads after the one prelude, shape (repeats, n_units)."""
    measure = subset_reader(routine, neurons)
    with_retries(routine, routine.prelude, device)
    try:
        if repeats > 1:
            return np.stack([with_retries(routine, measure, device) for _ in range(repeats)])
        return with_retries(routine, measure, device)
    finally:
        routine.postlude(device)


def measure_range(
    routine: Routine, device: Device, neurons: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the lowest and highest observable over the routine's code range (read at its
    two ends, with the device as configured otherwise, NaN where an end cannot be read); the
    present codes are restored.

    The range is that of the configuration as calibrated: what the routine keeps of its own
    choosing (`kept_settings`, e.g. switches its prelude picks) is put back after the prelude,
    and restored with the codes afterwards. `neurons` (indices) limits the reading to those
    asked about where the routine can (`subset_reader`); the others may then be NaN."""
    kept = tuple(routine.kept_settings)
    measure = subset_reader(routine, neurons)
    saved = device.read_settings([routine.parameter, *kept])
    limits = routine.parameter_range
    with_retries(routine, routine.prelude, device)
    try:
        if kept:
            device.write({name: saved[name] for name in kept})
        ends = []
        for code in (limits.low, limits.high):
            with_retries(
                routine, routine.apply, device, np.full_like(saved[routine.parameter], code)
            )
            ends.append(with_retries(routine, measure, device))
    finally:
        routine.postlude(device)
        device.write(saved)
        device.write(saved)  # a step across the whole range settles over two waits
    with np.errstate(invalid="ignore"):
        return np.minimum(*ends), np.maximum(*ends)


class Algorithm(ABC):
    """Searches codes so that a routine's observable reaches a per-unit target.

    Subclasses implement `start`, `update`, `done` and `best`; they keep no state from one
    `start` to the next, so an instance is reusable. `notes` and `models` are optional.
    """

    name: str = "algorithm"

    @abstractmethod
    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        """Reset and return the first codes to try (one per unit of `target`)."""

    @abstractmethod
    def update(self, measured: np.ndarray) -> np.ndarray:
        """Take the observable measured with the last codes; return the next codes."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the search has finished."""

    @abstractmethod
    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, measured): the best codes found and the observable measured with them."""

    def notes(self) -> dict[int, str]:
        """Unit -> a failure cause the algorithm noticed (range bounds are added by `run`)."""
        return {}

    def models(self) -> dict[str, np.ndarray]:
        """Fitted per-unit transfer-curve parameters of the last run (empty if none)."""
        return {}

    @property
    def coarse(self) -> bool:
        """Whether the next measurement only places a model, so that a routine's coarse
        reading (`SupportsCoarseMeasure`) serves; precise `measure` otherwise."""
        return False

    @property
    def pending(self) -> np.ndarray | None:
        """The units the next measurement is for (a mask), where only some are: a routine
        that reads subsets for less (`SupportsNeuronSubset`) then reads only those, NaN for
        the others. None: every unit."""
        return None

    def run(self, routine: Routine, device: Device, target: np.ndarray) -> SearchOutcome:
        """Drive `routine` on `device` to `target`: the loop shared by every algorithm."""
        target = np.asarray(target, dtype=float)
        ranges = search_ranges(routine)
        with_retries(routine, routine.prelude, device)
        try:
            codes = self.start(ranges, target, routine.is_inverted(device))
            applied: np.ndarray | None = None
            steps = 0
            while not self.done:
                if applied is None or not np.array_equal(codes, applied):
                    with_retries(routine, routine.apply, device, codes)
                    applied = codes.copy()
                measure = (
                    routine.measure_coarse
                    if self.coarse and isinstance(routine, SupportsCoarseMeasure)
                    else routine.measure
                )
                pending = self.pending
                if pending is not None and isinstance(routine, SupportsNeuronSubset):
                    measure = partial(routine.measure_neurons, neurons=np.flatnonzero(pending))
                codes = self.update(with_retries(routine, measure, device))
                steps += 1
            best_codes, measured = self.best()
            with_retries(routine, routine.apply, device, best_codes)
        finally:
            routine.postlude(device)
        notes = self.notes()
        reasons = merge_reasons(bound_reasons(routine, ranges, best_codes), notes)
        return SearchOutcome(
            best_codes,
            measured,
            steps,
            at_bounds(ranges, best_codes),
            reasons,
            self.models(),
            notes,
        )


# -- helpers shared by the single-parameter searches ----------------------------------------


def as_unit_array(name: str, value: float | np.ndarray, n_units: int) -> np.ndarray:
    """A scalar or (n_units,) option as a float array of shape (n_units,)."""
    array = np.asarray(value, dtype=float)
    if array.ndim == 0:
        return np.full(n_units, float(array))
    if array.shape != (n_units,):
        raise ValueError(f"{name} must be a scalar or have shape ({n_units},), got {array.shape}")
    return array.copy()


def check_int_option(name: str, value: int, low: int, high: int | None = None) -> int:
    """`value` as an int within low..high; ValueError naming the option otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} = {value!r} is outside the allowed range {allowed}")
    return int(value)


def need_higher_code(measured: np.ndarray, target: np.ndarray, inverted: bool) -> np.ndarray:
    """Per unit: whether the code must rise to move the observable towards the target."""
    below = measured < target
    return ~below if inverted else below


class BestTracker:
    """Per unit, the candidate measured closest to the target so far (NaN measurements lose)."""

    def __init__(self, target: np.ndarray, first_codes: np.ndarray) -> None:
        self.target = target
        self.codes = np.array(first_codes, copy=True)
        self.measured = np.full(target.shape, np.nan)
        self.distance = np.full(target.shape, np.inf)

    def offer(self, codes: np.ndarray, measured: np.ndarray) -> None:
        distance = np.abs(measured - self.target)
        better = distance < self.distance  # NaN compares False: never better
        self.codes = np.where(better, codes, self.codes)
        self.measured = np.where(better, measured, self.measured)
        self.distance = np.where(better, distance, self.distance)


class CodeSweep:
    """Measures fixed candidate codes per unit, each `repeats` times, and averages.

    `candidates` has shape (n_candidates, n_units). Repeats of one candidate come one after
    another, so the driver measures them without rewriting the codes.
    """

    def __init__(self, candidates: np.ndarray, repeats: int) -> None:
        self.candidates = np.asarray(candidates, dtype=np.int64)
        self.repeats = repeats
        self._sums = np.zeros(self.candidates.shape, dtype=float)
        self._index = 0

    @property
    def done(self) -> bool:
        return self._index >= len(self.candidates) * self.repeats

    @property
    def codes(self) -> np.ndarray:
        return self.candidates[min(self._index // self.repeats, len(self.candidates) - 1)]

    def record(self, measured: np.ndarray) -> None:
        self._sums[self._index // self.repeats] += measured
        self._index += 1

    @property
    def means(self) -> np.ndarray:
        """(n_candidates, n_units): the averaged measurement of each candidate."""
        return self._sums / self.repeats
