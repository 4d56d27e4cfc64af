"""Why a neuron failed: one structured record per neuron, quantity and cause.

Failures are data all the way to the edges: judging makes them, results and the store keep
them, and only reports and the command line turn them into text (`Failure.text`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class FailureKind(StrEnum):
    OUT_OF_TOLERANCE = "out_of_tolerance"
    """Verified value outside the target's tolerance."""
    AT_BOUND = "at_bound"
    """The search ended on a range bound of the cell: the neuron may need more."""
    UNREACHABLE = "unreachable"
    """The chip cannot reach the target on this neuron (known before or from the search)."""
    MEASUREMENT_FAILED = "measurement_failed"
    """The verification could not read the quantity (a failed fit, no spikes)."""
    DEAD = "dead"
    """The neuron does not respond at all."""
    UNSPECIFIED = "unspecified"
    """A failure stored by an older schema, as its text."""


@dataclass(frozen=True)
class Failure:
    """One reason one neuron failed."""

    neuron: int
    quantity: str
    """The quantity (or internal step, e.g. 'reference_exc') that failed."""
    kind: FailureKind
    cell: str | None = None
    value: float | None = None
    """The verified value (out_of_tolerance), or the code (at_bound)."""
    target: float | None = None
    tolerance: float | None = None
    unit: str = ""
    bound: str | None = None
    """'lower' or 'upper' (at_bound)."""
    note: str = ""

    def text(self) -> str:
        """One line a person can read: 'tau_mem: reached 11.2 µs, target 10 µs ± 1 µs'."""
        kind = self.kind
        if kind is FailureKind.OUT_OF_TOLERANCE:
            detail = (
                f"reached {_number(self.value, self.unit)}, target "
                f"{_number(self.target, self.unit)} ± {_number(self.tolerance, self.unit)}"
            )
        elif kind is FailureKind.AT_BOUND:
            detail = f"{self.cell} at {self.bound or 'a'} bound {_code(self.value)}"
        elif kind is FailureKind.MEASUREMENT_FAILED:
            detail = "measurement failed"
        elif kind is FailureKind.UNREACHABLE:
            detail = "unreachable"
        elif kind is FailureKind.DEAD:
            detail = "neuron does not respond"
        else:
            detail = ""
        if kind is FailureKind.UNSPECIFIED:
            return self.note
        if kind is FailureKind.UNREACHABLE and self.note:
            return f"unreachable: {self.quantity} {self.note}"
        joined = f"{detail}; {self.note}" if self.note else detail
        return f"{self.quantity}: {joined}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "neuron": self.neuron,
            "quantity": self.quantity,
            "kind": self.kind.value,
        }
        for name in ("cell", "value", "target", "tolerance", "bound"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, float) and not math.isfinite(value)):
                data[name] = value
        if self.unit:
            data["unit"] = self.unit
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Failure:
        return cls(
            neuron=int(data["neuron"]),
            quantity=str(data["quantity"]),
            kind=FailureKind(data["kind"]),
            cell=data.get("cell"),
            value=_optional_float(data.get("value")),
            target=_optional_float(data.get("target")),
            tolerance=_optional_float(data.get("tolerance")),
            unit=str(data.get("unit", "")),
            bound=data.get("bound"),
            note=str(data.get("note", "")),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _number(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "nan"
    if unit == "s":
        return f"{value * 1e6:.3g} µs"
    if unit == "Hz":
        return f"{value / 1e3:.3g} kHz"
    return f"{value:.3g} {unit}".rstrip()


def _code(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def by_neuron(failures: Iterable[Failure]) -> dict[int, list[Failure]]:
    """Neuron -> its failures, neurons in order."""
    grouped: dict[int, list[Failure]] = {}
    for failure in sorted(failures, key=lambda f: f.neuron):
        grouped.setdefault(failure.neuron, []).append(failure)
    return grouped


def by_quantity(failures: Iterable[Failure]) -> dict[str, set[int]]:
    """Quantity -> the neurons failing on it."""
    grouped: dict[str, set[int]] = {}
    for failure in failures:
        grouped.setdefault(failure.quantity, set()).add(failure.neuron)
    return grouped


def reason_texts(failures: Iterable[Failure]) -> dict[int, str]:
    """Neuron -> all its failures as one line ('leak: ...; tau_mem: ...')."""
    return {
        neuron: "; ".join(f.text() for f in group) for neuron, group in by_neuron(failures).items()
    }


def legacy_failures(reasons: Mapping[str, str]) -> list[Failure]:
    """Failures of a run stored before structured failures (schema 1): one UNSPECIFIED record
    per reason part, its quantity the name that the old format put before the colon."""
    failures = []
    for neuron, text in reasons.items():
        for part in str(text).split("; "):
            head, colon, _ = part.partition(":")
            quantity = head.strip() if colon and " " not in head.strip() else ""
            failures.append(Failure(int(neuron), quantity, FailureKind.UNSPECIFIED, note=part))
    return failures
