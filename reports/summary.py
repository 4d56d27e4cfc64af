"""The figures every report shows, computed once from a `NeuronResult`.

Terminal and HTML reports render the same `RunSummary`, so both always agree. Values stay in
stored units (seconds, CADC LSB); renderers convert with `reports.units`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from calib.core.failures import Failure, FailureKind
from calib.core.plans import PLANS, ordered_quantities
from calib.core.results import NeuronResult

UNEXPLAINED = "failed without a stated reason"
"""Group label for neurons marked failed whose result carries no reason (shown, never hidden)."""

EXAMPLE_NEURONS = 8
"""How many neuron ids a failure group lists as examples."""

_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class QuantityRow:
    """One calibrated quantity of one chip, in stored units."""

    name: str
    target_median: float
    achieved_median: float
    std_before: float
    std_after: float
    within_tolerance: int | None
    """Neurons whose achieved value lies within the quantity's tolerance of its target (None
    for a quantity without a target)."""
    failed: int
    """Neurons whose failure reason names this quantity."""
    n_neurons: int


@dataclass(frozen=True)
class FailureGroup:
    """Neurons that failed for the same kind of reason.

    Reasons that differ only in their numbers group together; the label then shows those
    numbers as '#'.
    """

    label: str
    neurons: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.neurons)

    @property
    def examples(self) -> tuple[int, ...]:
        return self.neurons[:EXAMPLE_NEURONS]


@dataclass(frozen=True)
class RunSummary:
    chip_id: str
    created: str
    duration: float
    algorithm: str
    n_neurons: int
    n_success: int
    device_runs: float | None
    device_writes: float | None
    hardware_time: float | None
    rows: tuple[QuantityRow, ...]
    failure_groups: tuple[FailureGroup, ...]
    unexplained_failures: int

    @property
    def success_fraction(self) -> float:
        return self.n_success / self.n_neurons if self.n_neurons else float("nan")


def reason_template(text: str) -> str:
    """A stored text reason (older runs) with its numbers masked, so alike failures group."""
    return _NUMBER.sub("#", text)


def group_label(failure: Failure) -> str:
    """What failures of one kind have in common: the quantity, the cause, the cell."""
    if failure.kind is FailureKind.UNSPECIFIED:
        return reason_template(failure.text())
    if failure.kind is FailureKind.AT_BOUND:
        return failure.text()
    note = f"; {failure.note}" if failure.note else ""
    if failure.kind is FailureKind.OUT_OF_TOLERANCE:
        return f"{failure.quantity}: outside the tolerance{note}"
    return f"{failure.quantity}: {failure.kind.value.replace('_', ' ')}{note}"


def group_failures(
    failures: Iterable[Failure], success: np.ndarray
) -> tuple[tuple[FailureGroup, ...], int]:
    """Failure groups, largest first; and how many failed neurons carry no failure record."""
    members: dict[str, dict[int, str]] = {}
    explained: set[int] = set()
    for failure in failures:
        explained.add(failure.neuron)
        members.setdefault(group_label(failure), {}).setdefault(failure.neuron, failure.text())
    failed = np.flatnonzero(~np.asarray(success, dtype=bool))
    unexplained = [int(n) for n in failed if int(n) not in explained]
    if unexplained:
        members[UNEXPLAINED] = dict.fromkeys(unexplained, UNEXPLAINED)
    groups = []
    for label, texts in members.items():
        # One text for the whole group keeps its numbers ('at upper bound 1022').
        exact = set(texts.values())
        groups.append(FailureGroup(exact.pop() if len(exact) == 1 else label, tuple(sorted(texts))))
    groups.sort(key=lambda group: (-group.count, group.label))
    return tuple(groups), len(unexplained)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _median(values: np.ndarray) -> float:
    finite = _finite(values)
    return float(np.median(finite)) if finite.size else float("nan")


def _std(values: np.ndarray) -> float:
    finite = _finite(values)
    return float(np.std(finite)) if finite.size >= 2 else float("nan")


def _within_tolerance(name: str, achieved: np.ndarray, target: np.ndarray | None) -> int | None:
    spec = PLANS.quantities().get(name)
    if spec is None or target is None:
        return None
    with np.errstate(invalid="ignore"):
        return int(np.sum(np.abs(achieved - target) <= spec.tolerance_for(target)))


def quantity_rows(result: NeuronResult) -> tuple[QuantityRow, ...]:
    """Per quantity: target, median and spread over successful neurons, failures.

    Spreads before and after are both taken over the neurons that succeeded (all neurons when
    none did), so the two numbers compare the same population.
    """
    success = np.asarray(result.success, dtype=bool)
    population = success if success.any() else np.ones_like(success)
    targets = result.goals()
    failed = result.failed_quantities()
    rows = []
    for name in ordered_quantities(result.achieved):
        achieved = np.asarray(result.achieved[name], dtype=float)
        target = targets.get(name)
        before = result.before.get(name)
        rows.append(
            QuantityRow(
                name=name,
                target_median=_median(target) if target is not None else float("nan"),
                achieved_median=_median(achieved[population]),
                std_before=_std(np.asarray(before)[population])
                if before is not None
                else float("nan"),
                std_after=_std(achieved[population]),
                within_tolerance=_within_tolerance(name, achieved, target),
                failed=len(failed.get(name, ())),
                n_neurons=achieved.size,
            )
        )
    return tuple(rows)


def summarize(result: NeuronResult) -> RunSummary:
    success = np.asarray(result.success, dtype=bool)
    provenance = result.provenance
    stats = provenance.device_stats
    groups, unexplained = group_failures(result.failure_records, success)

    def stat(name: str) -> float | None:
        value = stats.get(name)
        return float(value) if value is not None else None

    return RunSummary(
        chip_id=str(provenance.chip_id),
        created=str(provenance.created),
        duration=float(provenance.duration),
        algorithm=str(provenance.algorithm),
        n_neurons=int(success.size),
        n_success=int(success.sum()),
        device_runs=stat("runs"),
        device_writes=stat("writes"),
        hardware_time=stat("hardware_time"),
        rows=quantity_rows(result),
        failure_groups=groups,
        unexplained_failures=unexplained,
    )


SUCCESS_GOOD = 0.97
"""At least this fraction of neurons calibrated is a normal chip (about 1 % fail by design)."""
SUCCESS_FAIR = 0.90


def success_level(fraction: float) -> str:
    """'good', 'fair' or 'poor': how renderers colour a success fraction."""
    if fraction >= SUCCESS_GOOD:
        return "good"
    return "fair" if fraction >= SUCCESS_FAIR else "poor"
