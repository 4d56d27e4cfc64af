"""Check records: what a quick check of a stored calibration found, kept in the results store.

A check (`calib.sequences.check.check_result`) measures a few quantities of a chip with its
stored codes applied. Its record keeps, per quantity, the median shift since the calibration,
the spread of the checked neurons now, the fraction out of tolerance and whether the quantity
is stale, and the per-neuron values measured (NaN where a neuron was not checked), so that the
history of a chip shows its drift night over night, not only the results right after a
calibration. Values are in the quantity's stored unit (seconds, CADC LSB).

A check record is its own store kind (`check_record`). It names the run it checked and that
run's target fingerprint under `checked_target_fingerprint`, not `target_fingerprint`: a
lookup of the newest calibration for a target never returns a check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calib.core.plans import PLANS
from calib.core.results import array_meta

CHECK_KIND = "check_record"
CHECK_VERSION = 1


@dataclass(frozen=True)
class QuantityDrift:
    """One quantity of one check, in the quantity's stored unit."""

    median_shift: float
    """Median over the checked neurons of (now - the calibration's achieved value)."""
    spread: float
    """Standard deviation over the checked neurons of the value now."""
    out_of_tolerance: float
    """Fraction of the checked neurons now outside the tolerance of their target."""
    tolerance: float
    """Median tolerance."""
    checked_neurons: int
    stale: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_shift": _plain(self.median_shift),
            "spread": _plain(self.spread),
            "out_of_tolerance": _plain(self.out_of_tolerance),
            "tolerance": _plain(self.tolerance),
            "checked_neurons": self.checked_neurons,
            "stale": self.stale,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantityDrift:
        return cls(
            median_shift=_number(data.get("median_shift")),
            spread=_number(data.get("spread")),
            out_of_tolerance=_number(data.get("out_of_tolerance")),
            tolerance=_number(data.get("tolerance")),
            checked_neurons=int(data.get("checked_neurons", 0)),
            stale=bool(data.get("stale", False)),
        )


@dataclass(eq=False)
class CheckRecord:
    """A stored check of one chip's calibration."""

    chip_id: str
    checked_run: str | None
    """Run id of the calibration that was checked (None when it was not stored)."""
    target_fingerprint: str
    """Fingerprint of the checked calibration's target."""
    created: str
    """ISO 8601 time (UTC) the check finished."""
    runs: int
    """Device runs the check took."""
    quantities: dict[str, QuantityDrift]
    measured: dict[str, np.ndarray] = field(default_factory=dict)
    """Quantity -> per-neuron value measured now (NaN where not checked)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Where the check ran: e.g. the simulated chip's settings, 'calib check' or 'nightly'."""

    @property
    def holds(self) -> bool:
        return not any(item.stale for item in self.quantities.values())

    @property
    def stale(self) -> list[str]:
        return [name for name, item in self.quantities.items() if item.stale]

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(arrays, attrs) for the results store."""
        arrays = {
            f"measured/{name}": np.asarray(values, dtype=np.float64)
            for name, values in self.measured.items()
        }
        attrs = {
            "kind": CHECK_KIND,
            "record_version": CHECK_VERSION,
            "chip_id": self.chip_id,
            "checked_run": self.checked_run,
            "checked_target_fingerprint": self.target_fingerprint,
            "created": self.created,
            "runs": int(self.runs),
            "holds": self.holds,
            "quantities": {name: item.to_dict() for name, item in self.quantities.items()},
            "extra": dict(self.extra),
            "array_meta": array_meta(
                arrays,
                {
                    path: (
                        ["neuron"],
                        _units(path.partition("/")[2]),
                        f"{path.partition('/')[2]} measured by the check",
                    )
                    for path in arrays
                },
            ),
        }
        return arrays, attrs

    @classmethod
    def from_record(cls, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> CheckRecord:
        if attrs.get("kind") != CHECK_KIND:
            raise ValueError(f"record kind {attrs.get('kind')!r} is not {CHECK_KIND!r}")
        version = int(attrs.get("record_version", 1))
        if version > CHECK_VERSION:
            raise ValueError(
                f"check record version {version} is newer than this version of "
                f"calib reads ({CHECK_VERSION})"
            )
        measured = {
            path.partition("/")[2]: np.asarray(values)
            for path, values in arrays.items()
            if path.startswith("measured/")
        }
        return cls(
            chip_id=str(attrs["chip_id"]),
            checked_run=attrs.get("checked_run"),
            target_fingerprint=str(attrs.get("checked_target_fingerprint", "")),
            created=str(attrs.get("created", "")),
            runs=int(attrs.get("runs", 0)),
            quantities={
                name: QuantityDrift.from_dict(item)
                for name, item in (attrs.get("quantities") or {}).items()
            },
            measured=measured,
            extra=dict(attrs.get("extra") or {}),
        )


def _plain(value: float) -> float | None:
    """A JSON-able number: None for NaN and infinities."""
    return float(value) if math.isfinite(value) else None


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _register_with_store() -> None:
    from results_store import register_kind

    register_kind(CHECK_KIND, CheckRecord.from_record)


_register_with_store()


def _units(quantity: str) -> str:
    spec = PLANS.quantities().get(quantity)
    return spec.unit if spec is not None else "1"
