"""The neuron calibration: the registered plans run in dependency order, verified and judged.

Nothing here names a quantity. The sequence is derived from the plans (`Plan.after` orders
them, `Plan.rank` breaks ties, `Plan.disturbs` re-runs what a step moved), and so are partial
recalibration (a quantity takes along what it disturbs), verification and judgement.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext

import numpy as np
from scipy import stats

from calib.algorithms.base import Algorithm, measure_range
from calib.core.failures import Failure, FailureKind
from calib.core.plans import HOST, PLANS, UNMEASURED_STATE, Plan, check_mode
from calib.core.retry import retrying
from calib.core.routine import SupportsNeuronSubset, TargetedRoutine
from calib.core.targets import NeuronTarget
from calib.routines.adex import lif_only
from calib.sequences.session import CalibrationOptions, CalibrationSession
from device_model.protocol import N_NEURONS, Device

EDGE_BAND = 0.2
"""A verified value within this fraction of the tolerance of the tolerance's edge (either side)
is read again: one read cannot tell which side of the edge the neuron lies on."""
EDGE_READS = 4
"""Reads in all of a quantity with a neuron in the edge band; their mean is the verdict's
value."""
EDGE_CONFIDENCE = 0.95
"""A neuron inside tolerance by its mean passes only when the mean's one-sided confidence bound
at this level is inside too (Student's t over its reads); else its verdict is unresolved and it
is reported failed."""
FOLLOW_UP_READS = 12
"""Further reads of the neurons still unresolved after EDGE_READS, after one prelude, where the
plan's routine reads a subset for less (an MADC recording of a few neurons takes a few runs),
or where reading every neuron that often is cheap (FOLLOW_UP_BUDGET)."""
FOLLOW_UP_BUDGET = 0.1
"""Hardware time (s) the follow-ups of a routine that reads every neuron may cost, projected
from its edge reads: a PSP amplitude or a potential, read in a few ms, takes them; the
threshold, 75 ms a read, does not."""

Step = tuple[str, Callable[[], None]]


def selected_plans(target: NeuronTarget, mode: str = HOST) -> list[Plan]:
    """The plans this target needs in `mode`, in dependency order (ties by rank).

    A quantity the target asks for that no plan of `mode` calibrates is a ValueError.
    """
    check_mode(mode)
    applied = [plan for plan in PLANS if plan.applies(target)]
    plans = [plan for plan in applied if mode in plan.modes]
    covered = {name for plan in plans for name in plan.quantity_names}
    missing = sorted({name for plan in applied for name in plan.quantity_names} - covered)
    if missing:
        raise ValueError(
            f"no {mode} plan calibrates {', '.join(missing)}; calibrate them in another mode"
        )
    return dependency_order(plans)


def dependency_order(plans: list[Plan]) -> list[Plan]:
    """`plans` sorted so that each comes after what it names in `after` (among `plans`).

    A plan stands for the name it is recorded as as well (a mode's own plan of a quantity
    satisfies what runs after that quantity's plan).
    """
    names = {plan.name for plan in plans} | {plan.recorded_as for plan in plans}
    for plan in plans:
        for needed in plan.after:
            if needed not in PLANS:
                raise ValueError(f"plan {plan.name} runs after unknown plan {needed!r}")
    ordered: list[Plan] = []
    placed: set[str] = set()
    pending = sorted(plans, key=lambda plan: plan.rank)
    while pending:
        ready = [
            plan
            for plan in pending
            if all(needed in placed or needed not in names for needed in plan.after)
        ]
        if not ready:
            raise ValueError(
                "plans depend on each other in a cycle: " + ", ".join(plan.name for plan in pending)
            )
        ordered.append(ready[0])
        placed.update((ready[0].name, ready[0].recorded_as))
        pending.remove(ready[0])
    return ordered


def check_target(target: NeuronTarget, mode: str = HOST) -> None:
    """What one field's range cannot say (fields that contradict each other, amplitudes the
    time constants cannot carry): a ValueError naming the fields, before any device run."""
    for plan in selected_plans(target, mode):
        check = plan.extra.get("check_before_run")
        if check is not None:
            check(target)


def recalibratable() -> tuple[str, ...]:
    """Quantities `recalibrate` may name."""
    return tuple(name for plan in PLANS if plan.recalibratable for name in plan.quantity_names)


def searched_routines(lif_only_plans: bool = True) -> tuple[str, ...]:
    """Routine names an algorithm can be chosen for (the `algorithm` mapping's keys)."""
    return tuple(
        name
        for plan in PLANS
        if plan.lif_part or not lif_only_plans
        for name in plan.extra.get("searches", (plan.name,) if plan.routine else ())
    )


class NeuronCalibration:
    """A full neuron calibration of one chip, step by step, as its target's plans say."""

    def __init__(
        self,
        device: Device,
        target: NeuronTarget,
        algorithms: Mapping[str, Algorithm] | None = None,
        options: CalibrationOptions | None = None,
        mode: str = HOST,
    ) -> None:
        self.target = target
        self.mode = check_mode(mode)
        self.session = CalibrationSession(
            retrying(device), target, options or CalibrationOptions(), dict(algorithms or {})
        )
        check_target(target, mode)
        self.plans = selected_plans(target, mode)
        self.unresolved: dict[str, np.ndarray] = {}
        """Quantity -> neurons whose verdict the edge reads left unresolved (`verify`)."""
        for plan in self.plans:
            prepare = plan.extra.get("prepare")
            if prepare is not None:
                prepare(self.session)

    @property
    def goals(self) -> dict[str, np.ndarray]:
        return self.session.goals

    # -- the sequence ------------------------------------------------------------------------

    def _runner(self, plan: Plan) -> Callable[[], None]:
        session = self.session

        def run() -> None:
            if plan.action is not None:
                plan.action(session, plan)
            else:
                assert plan.routine is not None
                routine = plan.routine(session)
                goal = (
                    routine.target
                    if isinstance(routine, TargetedRoutine)
                    else plan.goal_for(session)
                )
                session.search(plan, routine, goal)

        return run

    @property
    def steps(self) -> list[Step]:
        """Every selected plan in order; a plan a step disturbs runs again right after it."""
        steps: list[Step] = []
        done: set[str] = set()
        selected = {plan.name for plan in self.plans}
        for plan in self.plans:
            steps.append((plan.recorded_as, self._runner(plan)))
            done.add(plan.name)
            for disturbed in plan.disturbs:
                if disturbed in done and disturbed in selected:
                    again = PLANS[disturbed]
                    steps.append((again.recorded_as, self._runner(again)))
        return steps

    def partial_steps(self, quantities: Iterable[str]) -> list[Step]:
        """Steps that recalibrate `quantities` on a chip already calibrated (the others kept).

        What a quantity disturbs comes along, transitively; a step that a later one disturbs
        runs once, after it (the earlier calibration satisfies what it needed first).
        """
        wanted = set(quantities)
        allowed = recalibratable()
        unknown = wanted - set(allowed)
        if unknown:
            raise ValueError(
                f"cannot recalibrate {sorted(unknown)}; choose from {', '.join(allowed)}"
            )
        names = {PLANS.plan_of(quantity).name for quantity in wanted}
        grow = True
        while grow:
            more = {d for name in names for d in PLANS[name].disturbs} - names
            names |= more
            grow = bool(more)
        chosen = [plan for plan in self.plans if plan.name in names]
        self.session.partial = True
        steps: list[Step] = []
        deferred: set[str] = set()
        for index, plan in enumerate(chosen):
            if any(plan.name in later.disturbs for later in chosen[index + 1 :]):
                deferred.add(plan.name)
                continue
            steps.append((plan.recorded_as, self._runner(plan)))
            for disturbed in plan.disturbs:
                if disturbed in deferred:
                    deferred.discard(disturbed)
                    steps.append((PLANS[disturbed].recorded_as, self._runner(PLANS[disturbed])))
        return steps

    # -- verification and judgement ----------------------------------------------------------

    def verify(self) -> dict[str, np.ndarray]:
        """Every quantity measured once more with the final configuration (the LIF quantities
        with the AdEx parts switched off: they describe the LIF part)."""
        session = self.session
        verified = [plan for plan in self.plans if plan.quantities]
        achieved: dict[str, np.ndarray] = {}
        with lif_only(session.device):
            for plan in verified:
                if plan.lif_part:
                    achieved.update(self._verify(plan))
        for plan in verified:
            if not plan.lif_part:
                achieved.update(self._verify(plan))
        self.unresolved = self._read_edges_again(achieved, verified)
        order = list(PLANS.quantities())
        achieved = dict(sorted(achieved.items(), key=lambda item: order.index(item[0])))
        self.ranges = self._ranges_at_bound(achieved)
        return achieved

    def _edge_band(self, name: str, values: np.ndarray) -> np.ndarray:
        goal = self.session.goals.get(name)
        if goal is None:
            return np.zeros(values.shape, dtype=bool)
        tolerance = PLANS.quantities()[name].tolerance_for(goal)
        with np.errstate(invalid="ignore"):
            return np.abs(np.abs(values - goal) - tolerance) <= EDGE_BAND * tolerance

    def _read_edges_again(
        self, achieved: dict[str, np.ndarray], plans: list[Plan]
    ) -> dict[str, np.ndarray]:
        """Where a verified value lies in the edge band (EDGE_BAND), its plan is verified
        again up to EDGE_READS reads in all (every neuron at once), then FOLLOW_UP_READS more
        of the neurons still unresolved where that is cheap (`FOLLOW_UP_BUDGET`, or a routine
        reading subsets), and the mean of each neuron's finite reads replaces its value in
        `achieved`. Returns per such quantity the neurons inside tolerance by their mean but
        not by its confidence bound (EDGE_CONFIDENCE): their verdict is unresolved."""
        unresolved: dict[str, np.ndarray] = {}
        for plan in plans:
            if plan.extra.get("judged_by_plan"):
                continue  # its own rule judges it
            names = [q.name for q in plan.quantities if q.name in achieved]
            if not any(self._edge_band(name, achieved[name]).any() for name in names):
                continue
            reads = {name: [achieved[name]] for name in names}
            # Every neuron: a noisy one whose first read fell outside the band may still lie
            # across the edge, and the mean of all the reads tells.
            spent = self.session.device.stats.hardware_time
            for _ in range(EDGE_READS - 1):
                self._read_again(plan, names, reads)
            per_read = (self.session.device.stats.hardware_time - spent) / max(EDGE_READS - 1, 1)
            verdicts = {name: self._edge_verdict(name, reads[name]) for name in names}
            left = np.any([verdicts[name][1] for name in names], axis=0)
            cheap = FOLLOW_UP_READS * per_read <= FOLLOW_UP_BUDGET
            if left.any() and (cheap or self._reads_subsets(plan)):
                self._read_again(plan, names, reads, np.flatnonzero(left), FOLLOW_UP_READS)
                verdicts = {name: self._edge_verdict(name, reads[name]) for name in names}
            for name in names:
                achieved[name], unresolved[name] = verdicts[name]
        return unresolved

    def _read_again(
        self,
        plan: Plan,
        names: list[str],
        reads: dict[str, list[np.ndarray]],
        neurons: np.ndarray | None = None,
        repeats: int = 1,
    ) -> None:
        """`repeats` more verifications of `plan` (of `neurons` alone where given, NaN
        elsewhere, after one prelude), their values appended to `reads`."""
        session = self.session
        subset = nullcontext() if neurons is None else session.only_neurons(neurons, repeats)
        with lif_only(session.device) if plan.lif_part else nullcontext(), subset:
            again = self._verify(plan)
        chosen = np.ones(N_NEURONS, dtype=bool)
        if neurons is not None:
            chosen = np.isin(np.arange(N_NEURONS), neurons)
        for name in names:
            values = np.atleast_2d(again[name])
            reads[name].extend(np.where(chosen, row, np.nan) for row in values)

    def _reads_subsets(self, plan: Plan) -> bool:
        return plan.routine is not None and isinstance(
            plan.routine(self.session), SupportsNeuronSubset
        )

    def _edge_verdict(self, name: str, reads: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(mean of each neuron's finite reads, whether it is inside tolerance by its mean but
        not by the mean's one-sided EDGE_CONFIDENCE bound)."""
        stack = np.stack(reads)
        count = np.isfinite(stack).sum(axis=0)
        finite = np.where(np.isfinite(stack), stack, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, finite.sum(axis=0) / count, np.nan)
            squares = np.where(np.isfinite(stack), (stack - mean) ** 2, 0.0).sum(axis=0)
            error = np.sqrt(squares / (count - 1) / count)
        quantile = stats.t.ppf(EDGE_CONFIDENCE, np.maximum(count - 1, 1))
        margin = np.where(count > 1, quantile * error, np.inf)
        goal = self.session.goals[name]
        tolerance = PLANS.quantities()[name].tolerance_for(goal)
        distance = np.abs(mean - goal)
        with np.errstate(invalid="ignore"):
            return mean, (distance <= tolerance) & (distance + margin > tolerance)

    def _misses(self, name: str, values: np.ndarray) -> np.ndarray:
        goal = self.session.goals.get(name)
        if goal is None:
            return np.zeros(values.shape, dtype=bool)
        tolerance = PLANS.quantities()[name].tolerance_for(goal)
        return np.isfinite(values) & (np.abs(values - goal) > tolerance)

    def _ranges_at_bound(
        self, achieved: dict[str, np.ndarray]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(lowest, highest) reachable value per neuron of the quantities whose search ended on
        a code bound outside tolerance: tells an unreachable target from a missed one."""
        session = self.session
        ranges = {}
        for name, values in achieved.items():
            record = session.bounds.get(name)
            plan = PLANS.plan_of(name, self.mode)
            if (
                record is None
                or record.flags.shape != (N_NEURONS, 1)
                or plan.routine is None
                or len(plan.quantities) != 1
            ):
                continue
            asked = (_stranded(record.flags[:, 0], plan) != 0) & self._misses(name, values)
            if asked.any():
                session.device.step = f"range of {name}"
                with lif_only(session.device):
                    ranges[name] = measure_range(
                        plan.routine(session), session.device, np.flatnonzero(asked)
                    )
        return ranges

    def _verify(self, plan: Plan) -> dict[str, np.ndarray]:
        session = self.session
        session.device.step = f"verify {plan.name}"
        if plan.verify is not None:
            return plan.verify(session)
        assert plan.routine is not None
        return {plan.quantities[0].name: session.measure(plan.routine(session))}

    def judge(self, achieved: dict[str, np.ndarray]) -> tuple[np.ndarray, list[Failure]]:
        """Success per neuron and every failure as a record."""
        session = self.session
        specs = PLANS.quantities()
        failures: list[Failure] = []
        ranges = getattr(self, "ranges", {})
        missed: dict[str, np.ndarray] = {}
        for name, values in achieved.items():
            spec = specs[name]
            goal = session.goals.get(name)
            if goal is None or PLANS.plan_of(name, self.mode).extra.get("judged_by_plan"):
                continue  # nothing asked, or judged by its plan alone
            tolerance = spec.tolerance_for(goal)
            # A NaN goal is a neuron left out on purpose (an amplitude no reading resolves).
            why = session.state.get(UNMEASURED_STATE, {}).get(name, {})
            for neuron in np.flatnonzero(~np.isfinite(values) & np.isfinite(goal)):
                failures.append(
                    Failure(
                        int(neuron),
                        name,
                        FailureKind.MEASUREMENT_FAILED,
                        target=float(goal[neuron]),
                        unit=spec.unit,
                        note=why.get(int(neuron), ""),
                    )
                )
            miss = self._misses(name, values)
            # Inside tolerance by the mean of its reads but not by the mean's confidence bound:
            # the reads cannot tell the side of the edge, so the neuron is not passed.
            edge = self.unresolved.get(name, np.zeros(N_NEURONS, dtype=bool))
            missed[name] = miss | edge
            unreachable = np.zeros(N_NEURONS, dtype=bool)
            if name in ranges:
                low, high = ranges[name]
                stranded = _stranded(
                    session.bounds[name].flags[:, 0], PLANS.plan_of(name, self.mode)
                )
                unreachable = miss & (stranded != 0) & ((goal < low) | (goal > high))
                for neuron in np.flatnonzero(unreachable):
                    failures.append(
                        Failure(
                            int(neuron),
                            name,
                            FailureKind.UNREACHABLE,
                            target=float(goal[neuron]),
                            unit=spec.unit,
                            note=f"{_value(goal[neuron], spec.unit)} outside this "
                            f"neuron's range {_value(low[neuron], spec.unit, False)}.."
                            f"{_value(high[neuron], spec.unit)}",
                        )
                    )
            for neuron in np.flatnonzero(miss & ~unreachable):
                failures.append(
                    Failure(
                        int(neuron),
                        name,
                        FailureKind.OUT_OF_TOLERANCE,
                        value=float(values[neuron]),
                        target=float(goal[neuron]),
                        tolerance=float(tolerance[neuron]),
                        unit=spec.unit,
                    )
                )
        for name, record in session.bounds.items():
            if record.flags.shape[0] != N_NEURONS:
                continue  # per-quadrant cells (the CADC): no neuron's failure
            if name in PLANS and not PLANS[name].extra.get("bounds_are_failures", True):
                continue
            # A code on a bound is a failure only where the quantity missed its tolerance or
            # has an unresolved verdict (EDGE_BAND).
            relevant = missed.get(name, np.ones(N_NEURONS, dtype=bool))
            for column, (cell, limits) in enumerate(zip(record.cells, record.ranges, strict=True)):
                flags = np.where(relevant, record.flags[:, column], 0)
                for neuron in np.flatnonzero(flags):
                    low = flags[neuron] < 0
                    failures.append(
                        Failure(
                            int(neuron),
                            name,
                            FailureKind.AT_BOUND,
                            cell=cell,
                            value=float(limits.low if low else limits.high),
                            bound="lower" if low else "upper",
                        )
                    )
        for name, unresolved in self.unresolved.items():
            # Said even beside a bound failure: the bound alone does not tell why it failed.
            judged = {
                f.neuron
                for f in failures
                if f.quantity == name and f.kind is not FailureKind.AT_BOUND
            }
            goal, spec = session.goals[name], specs[name]
            tolerance = spec.tolerance_for(goal)
            for neuron in np.flatnonzero(unresolved):
                if int(neuron) in judged:
                    continue
                failures.append(
                    Failure(
                        int(neuron),
                        name,
                        FailureKind.OUT_OF_TOLERANCE,
                        value=float(achieved[name][neuron]),
                        target=float(goal[neuron]),
                        tolerance=float(tolerance[neuron]),
                        unit=spec.unit,
                        note=f"inside by the mean of repeated reads, not by its "
                        f"{EDGE_CONFIDENCE:.0%} confidence bound",
                    )
                )
        failures.extend(session.failures)
        for plan in self.plans:
            if plan.judge is not None:
                failures.extend(plan.judge(session, achieved))
        failed = np.zeros(N_NEURONS, dtype=bool)
        for failure in failures:
            failed[failure.neuron] = True
        order = {name: index for index, name in enumerate(specs)}
        failures.sort(key=lambda f: (f.neuron, order.get(f.quantity, len(order))))
        return ~failed, failures


def _stranded(flags: np.ndarray, plan: Plan) -> np.ndarray:
    """Where a search may have ended short of a target outside the neuron's range: on a code
    bound, or anywhere for a plan whose observable can be flat across codes (a neuron that
    never fires counts no spikes at any code: `extra["flat_out_of_range"]`)."""
    if plan.extra.get("flat_out_of_range"):
        return np.ones_like(flags)
    return flags


def _value(value: float, unit: str, with_unit: bool = True) -> str:
    if unit == "s":
        return f"{value * 1e6:.3g}" + (" µs" if with_unit else "")
    if unit == "Hz":
        return f"{value * 1e-3:.3g}" + (" kHz" if with_unit else "")
    return f"{value:.3g}" + (f" {unit}" if with_unit else "")
