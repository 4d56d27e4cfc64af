"""The state of one calibration: codes found so far, what went wrong where, and the searches.

A `CalibrationSession` is the `CalibrationContext` every plan's callables receive. Its device is
under the retry policy (`calib.core.retry`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calib.algorithms.base import Algorithm, SearchOutcome, at_bounds, measure_once
from calib.algorithms.base import parameter_names as routine_parameter_names
from calib.algorithms.base import search_ranges as routine_search_ranges
from calib.algorithms.fitting import curves_from_params
from calib.core.failures import Failure
from calib.core.plans import PLANS, Plan
from calib.core.retry import RetryingDevice
from calib.core.routine import ParameterRange, Routine
from calib.core.targets import NeuronTarget
from device_model.protocol import N_NEURONS


@dataclass(frozen=True)
class CalibrationOptions:
    """Measurement effort: CADC samples averaged per potential reading and per threshold
    reading."""

    cadc_samples: int = 200
    threshold_samples: int = 400
    threshold_method: str = "cadc"
    """How the threshold is measured: 'cadc' or 'madc' (calib/routines/threshold_madc.py,
    which also cross-checks against the CADC)."""

    def __post_init__(self) -> None:
        for name in ("cadc_samples", "threshold_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not (isinstance(value, int) and 1 <= value <= 10_000):
                raise ValueError(f"{name} must be an integer 1..10000, got {value!r}")
        if self.threshold_method not in THRESHOLD_METHOD_NAMES:
            raise ValueError(
                f"threshold_method must be one of {', '.join(THRESHOLD_METHOD_NAMES)}, "
                f"got {self.threshold_method!r}"
            )


THRESHOLD_METHOD_NAMES = ("cadc", "madc")
"""Threshold measurement methods (calib.routines.neuron_potentials.THRESHOLD_METHODS)."""


@dataclass(frozen=True)
class BoundRecord:
    """The cells a search set, their ranges and the per-unit (and per-cell) bound flags."""

    cells: tuple[str, ...]
    ranges: tuple[ParameterRange, ...]
    flags: np.ndarray
    """(n_units, n_cells): -1 on the low bound, +1 on the high bound, 0 inside."""


@dataclass
class CalibrationSession:
    """One calibration's state; the context of every plan's step, verification and judgement."""

    device: RetryingDevice
    target: NeuronTarget
    options: CalibrationOptions
    overrides: dict[str, Algorithm] = field(default_factory=dict)
    """Routine name -> the algorithm the caller chose for it."""
    goals: dict[str, np.ndarray] = field(default_factory=dict)
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    before: dict[str, np.ndarray] = field(default_factory=dict)
    bounds: dict[str, BoundRecord] = field(default_factory=dict)
    models: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    notes: dict[str, dict[int, str]] = field(default_factory=dict)
    """Step -> unit -> what its search noticed (a fit that failed, a budget spent)."""
    failures: list[Failure] = field(default_factory=list)
    """Failures known before verification (e.g. a drive beyond a cell's range)."""
    state: dict[str, Any] = field(default_factory=dict)
    used: dict[str, str] = field(default_factory=dict)
    """Routine name -> the algorithm class that drove it."""
    searched: set[str] = field(default_factory=set)
    """Routine names searched so far (a plan's `rerun_algorithm` serves their next search)."""
    partial: bool = False
    subset: np.ndarray | None = None
    """Neuron indices a measurement is limited to where its routine can read a subset for
    less (`only_neurons`); None: every neuron."""
    repeats: int = 1
    """Reads per measurement inside `only_neurons` (after one prelude)."""

    def __post_init__(self) -> None:
        if not self.goals:
            self.goals = self.target.quantities()

    # -- the device --------------------------------------------------------------------------

    def write(self, settings: Mapping[str, Any]) -> None:
        self.device.write(settings)
        self.codes.update(self.device.read_settings(list(settings)))

    def measure(self, routine: Routine) -> np.ndarray:
        """`routine`'s observable with the device as configured (prelude, measure, postlude);
        inside `only_neurons`, of those neurons alone where the routine can (NaN elsewhere),
        and with `repeats` > 1 that many reads after one prelude, shape (repeats, n)."""
        return measure_once(routine, self.device, self.subset, self.repeats)

    @contextmanager
    def only_neurons(self, neurons: np.ndarray, repeats: int = 1) -> Iterator[None]:
        """Measurements inside read only `neurons` where their routine can read a subset for
        less (`SupportsNeuronSubset`: an MADC recording), every neuron otherwise; `repeats`
        reads each after one prelude (its writes cost more than a few neurons' runs)."""
        saved = self.subset, self.repeats
        self.subset, self.repeats = np.asarray(neurons, dtype=np.int64), int(repeats)
        try:
            yield
        finally:
            self.subset, self.repeats = saved

    # -- searches ----------------------------------------------------------------------------

    def algorithm(self, routine_name: str, plan: Plan) -> Algorithm:
        chosen = self.overrides.get(routine_name)
        if chosen is None and routine_name in self.searched and plan.rerun_algorithm:
            chosen = plan.rerun_algorithm(self.target)
        if chosen is None:
            if plan.algorithm is None:
                raise ValueError(f"plan {plan.name}: no algorithm for routine {routine_name!r}")
            chosen = plan.algorithm(self.target)
        self.used[routine_name] = type(chosen).__name__
        return chosen

    def search(
        self, plan: Plan, routine: Routine, goal: np.ndarray, *, record_before: bool | None = None
    ) -> SearchOutcome:
        """Drive `routine` to `goal`; keep its codes, bounds, models, notes and the spread with
        every unit at the median code."""
        outcome = self.algorithm(routine.name, plan).run(routine, self.device, goal)
        self.searched.add(routine.name)
        self.record(plan, routine, outcome, record_before=record_before)
        return outcome

    def record(
        self,
        plan: Plan,
        routine: Routine,
        outcome: SearchOutcome,
        *,
        record_before: bool | None = None,
        write: bool = False,
    ) -> None:
        """What a search found, kept under the plan's recorded name; `write` applies it."""
        cells = routine_parameter_names(routine)
        codes = np.asarray(outcome.codes).reshape(len(outcome.codes), -1)
        settings = {cell: codes[:, j] for j, cell in enumerate(cells)}
        if write:
            self.write(settings)
        else:
            self.codes.update(
                {cell: np.array(value, copy=True) for cell, value in settings.items()}
            )
        name = plan.recorded_as
        ranges = routine_search_ranges(routine)
        range_list = (ranges,) if isinstance(ranges, ParameterRange) else tuple(ranges)
        flags = (
            outcome.at_bound if outcome.at_bound is not None else at_bounds(ranges, outcome.codes)
        )
        self.bounds[routine.name if name == plan.name else name] = BoundRecord(
            cells, range_list, np.asarray(flags).reshape(len(codes), -1)
        )
        if outcome.models:
            self.models[name] = dict(outcome.models)
        if outcome.notes:
            self.notes[routine.name] = dict(outcome.notes)
        wanted = plan.record_before if record_before is None else record_before
        if (wanted or self.partial) and len(codes) == N_NEURONS:
            if not self.record_predicted(plan, routine, outcome):
                self.record_uniform(plan, routine, outcome.codes)

    def record_predicted(self, plan: Plan, routine: Routine, outcome: SearchOutcome) -> bool:
        """The uncalibrated spread read off the transfer curves the search fitted (every
        neuron's curve at the median code), where it fitted them: the curves pass through that
        neuron's own reads around the code, so a device run would only add noise. False where
        there are no curves to read (the spread is then measured)."""
        names = recorded_quantities(plan)
        ranges = routine_search_ranges(routine)
        if len(names) != 1 or not outcome.models or not isinstance(ranges, ParameterRange):
            return False
        try:
            curves = curves_from_params(outcome.models, ranges)
        except ValueError:
            return False
        codes = np.asarray(outcome.codes)
        median = np.full(codes.shape, np.rint(np.median(codes)))
        with np.errstate(invalid="ignore", divide="ignore"):
            values = curves.evaluate(median)
        self.before[names[0]] = np.where(curves.valid, values, np.nan)
        return True

    def record_uniform(self, plan: Plan, routine: Routine, codes: np.ndarray) -> None:
        """The quantities with every neuron at the median code (per parameter): the
        uncalibrated spread, kept in `before`."""
        quantities = recorded_quantities(plan)
        if not quantities:
            return
        codes = np.asarray(codes)
        median = np.broadcast_to(np.rint(np.median(codes, axis=0)), codes.shape).astype(np.int64)
        device = self.device
        routine.prelude(device)
        try:
            routine.apply(device, median)
            values = routine.measure(device)
            routine.apply(device, codes)
        finally:
            routine.postlude(device)
        values = np.asarray(values).reshape(N_NEURONS, -1)
        measured = getattr(routine, "observables", None) or quantities
        for column, name in enumerate(measured):
            if name in quantities and column < values.shape[1]:
                self.before[name] = values[:, column]


def recorded_quantities(plan: Plan) -> list[str]:
    """The quantities a plan's search records (its own, or the one it is recorded as)."""
    return [
        name for name in (plan.quantity_names or (plan.recorded_as,)) if name in PLANS.quantities()
    ]
