"""The figures every report shows, computed once from a `NeuronResult`.

Terminal and HTML reports render the same `RunSummary`, so both always agree. Values stay in
stored units (seconds, CADC LSB); renderers convert with `reports.units`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from calib.results import NeuronResult
from calib.targets import ADEX_QUANTITIES, QUANTITIES

UNEXPLAINED = "failed without a stated reason"
"""Group label for neurons marked failed whose result carries no reason (shown, never hidden)."""

EXAMPLE_NEURONS = 8
"""How many neuron ids a failure group lists as examples."""

_NUMBER = re.compile(r"(?<![A-Za-z_\d.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_QUANTITY_PREFIX = re.compile(r"^\s*([A-Za-z_]\w*)\s*:")


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


def ordered_quantities(names: Iterable[str]) -> list[str]:
    """Known quantities in their canonical order, then any others alphabetically."""
    names = set(names)
    order = [*QUANTITIES, *ADEX_QUANTITIES]
    known = [name for name in order if name in names]
    return known + sorted(names - set(order))


def reason_parts(reason: str) -> list[str]:
    """A reason may join several causes with ';' (one per failing quantity)."""
    return [part.strip() for part in str(reason).split(";") if part.strip()]


def reason_quantity(part: str) -> str | None:
    """The quantity a reason part starts with ('tau_mem: code at upper bound 1022')."""
    match = _QUANTITY_PREFIX.match(part)
    return match.group(1) if match else None


def reason_template(part: str) -> str:
    """The reason with its numbers masked, so that neurons failing alike group together."""
    quantity = reason_quantity(part)
    if quantity is None:
        return _NUMBER.sub("#", part)
    _, _, detail = part.partition(":")
    return f"{quantity}: {_NUMBER.sub('#', detail.strip())}"


def quantities_failed(reasons: Mapping[int, str]) -> dict[str, set[int]]:
    """Quantity -> neurons whose reason names it."""
    failed: dict[str, set[int]] = {}
    for neuron, reason in reasons.items():
        for part in reason_parts(reason):
            quantity = reason_quantity(part)
            if quantity is not None:
                failed.setdefault(quantity, set()).add(int(neuron))
    return failed


def group_failures(
    reasons: Mapping[int, str], success: np.ndarray
) -> tuple[tuple[FailureGroup, ...], int]:
    """Failure groups, largest first; and how many failed neurons carry no reason."""
    members: dict[str, dict[int, str]] = {}
    for neuron, reason in sorted(reasons.items()):
        for part in reason_parts(reason):
            members.setdefault(reason_template(part), {}).setdefault(int(neuron), part)
    failed = np.flatnonzero(~np.asarray(success, dtype=bool))
    unexplained = [int(n) for n in failed if int(n) not in reasons]
    if unexplained:
        members[UNEXPLAINED] = dict.fromkeys(unexplained, UNEXPLAINED)
    groups = []
    for template, parts in members.items():
        # Identical reasons keep their numbers ('code at upper bound 1022'); only reasons
        # that differ in their numbers are shown as the template.
        exact = set(parts.values())
        label = exact.pop() if len(exact) == 1 else template
        groups.append(FailureGroup(label, tuple(parts)))
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
    spec = QUANTITIES.get(name) or ADEX_QUANTITIES.get(name)
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
    targets = result.target.quantities()
    failed = quantities_failed(result.reasons)
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
                std_before=_std(np.asarray(before)[population]) if before is not None
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
    groups, unexplained = group_failures(result.reasons, success)

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
