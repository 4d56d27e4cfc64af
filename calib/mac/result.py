"""The result of a MAC calibration: codes, measured values, success per neuron and driver.

Stored as its own record kind, `mac_result`, with its own schema version; the results store
knows only the plain arrays and JSON attributes of `to_record`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calib.core.results import apply_settings, array_meta
from calib.mac.target import MacTarget
from device_model.protocol import CELLS, Device

RECORD_KIND = "mac_result"
MAC_SCHEMA_VERSION = 1
"""Layout of a `mac_result` record (attrs['mac_schema_version'])."""
SUPPORTED_MAC_SCHEMA_VERSIONS = (1,)


@dataclass(eq=False)
class MacResult:
    """A MAC-mode calibration of one chip."""

    target: MacTarget
    codes: dict[str, np.ndarray]
    """Cell -> codes in the cell's shape (neuron, quadrant, driver)."""
    achieved: dict[str, np.ndarray]
    """Measured with the final codes: per neuron 'baseline', 'amplitude_exc', 'amplitude_inh';
    per driver 'driver_offset' (a0, activation units); per quadrant 'quadrant_amplitude'; per
    driver block 'block_amplitude'."""
    before: dict[str, np.ndarray]
    """The same quantities with every unit at the median of its calibrated codes."""
    neuron_success: np.ndarray
    driver_success: np.ndarray
    neuron_reasons: dict[int, str]
    driver_reasons: dict[int, str]
    provenance: dict[str, Any] = field(default_factory=dict)
    """chip_id, created (ISO UTC), duration (host s), device_stats, steps (cost per step)."""
    origin: str = "calibrated"

    @property
    def chip_id(self) -> str:
        return str(self.provenance.get("chip_id", ""))

    @property
    def success(self) -> np.ndarray:
        """Per neuron: itself calibrated and every driver calibrated."""
        return self.neuron_success & bool(self.driver_success.all())

    def failures(self) -> dict[str, str]:
        """'neuron N' / 'driver D' -> why it failed."""
        out = {f"neuron {n}": reason for n, reason in self.neuron_reasons.items()}
        out.update({f"driver {d}": reason for d, reason in self.driver_reasons.items()})
        return out

    def to_settings(self) -> dict[str, np.ndarray]:
        return {name: np.array(codes, copy=True) for name, codes in self.codes.items()}

    def apply(self, device: Device) -> None:
        """Inject the calibration (written twice: large steps settle within the second wait)."""
        apply_settings(device, self.to_settings(), self.neuron_success.shape[0])

    def summary(self) -> str:
        ok, drivers = self.neuron_success, self.driver_success
        lines = [
            f"chip {self.chip_id}: MAC mode, {int(ok.sum())}/{ok.size} neurons and "
            f"{int(drivers.sum())}/{drivers.size} drivers calibrated",
            f"{'quantity':<22}{'median':>10}{'spread':>10}{'before':>10}",
        ]
        for name, values in self.achieved.items():
            scale, unit = (1e6, " [µs]") if name.startswith("tau") else (1.0, "")
            before = self.before.get(name)
            spread_before = f"{np.nanstd(before) * scale:10.3g}" if before is not None else ""
            lines.append(
                f"{name + unit:<22}{np.nanmedian(values) * scale:10.3g}"
                f"{np.nanstd(values) * scale:10.3g}{spread_before}"
            )
        stats = self.provenance.get("device_stats", {})
        if stats:
            lines.append(
                f"runs {stats.get('runs')}, hardware time {stats.get('hardware_time', 0.0):.2f} s"
            )
        return "\n".join(lines)

    # -- plain-data form for storage -------------------------------------------------------

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {
            "success/neurons": np.asarray(self.neuron_success, dtype=bool),
            "success/drivers": np.asarray(self.driver_success, dtype=bool),
        }
        for name, codes in self.codes.items():
            arrays[f"codes/{name}"] = np.asarray(codes, dtype=np.int64)
        for group, data in (("achieved", self.achieved), ("before", self.before)):
            for name, values in data.items():
                arrays[f"{group}/{name}"] = np.asarray(values, dtype=np.float64)
        attrs = {
            "kind": RECORD_KIND,
            "mac_schema_version": MAC_SCHEMA_VERSION,
            "chip_id": self.chip_id,
            "target": self.target.to_dict(),
            "target_fingerprint": self.target.fingerprint(),
            "neuron_reasons": {str(n): r for n, r in self.neuron_reasons.items()},
            "driver_reasons": {str(d): r for d, r in self.driver_reasons.items()},
            "provenance": dict(self.provenance),
            "array_meta": array_meta(
                arrays,
                {
                    "success/neurons": (["neuron"], "1", "neuron within tolerance in MAC mode"),
                    "success/drivers": (["driver"], "1", "synapse driver within tolerance"),
                },
            ),
        }
        return arrays, attrs

    @classmethod
    def from_record(cls, arrays: Mapping[str, np.ndarray], attrs: Mapping[str, Any]) -> MacResult:
        if attrs.get("kind") != RECORD_KIND:
            raise ValueError(f"record kind {attrs.get('kind')!r} is not {RECORD_KIND!r}")
        version = attrs.get("mac_schema_version")
        if version not in SUPPORTED_MAC_SCHEMA_VERSIONS:
            raise ValueError(
                f"mac_schema_version {version!r} is not supported; this version "
                f"reads {', '.join(map(str, SUPPORTED_MAC_SCHEMA_VERSIONS))}"
            )
        groups: dict[str, dict[str, np.ndarray]] = {"codes": {}, "achieved": {}, "before": {}}
        for path, values in arrays.items():
            head, _, rest = path.partition("/")
            if head in groups:
                groups[head][rest] = np.asarray(values)
        unknown = set(groups["codes"]) - set(CELLS)
        if unknown:
            raise ValueError(f"record holds codes of unknown cells: {sorted(unknown)}")
        return cls(
            target=MacTarget.from_dict(dict(attrs["target"])),
            codes=groups["codes"],
            achieved=groups["achieved"],
            before=groups["before"],
            neuron_success=np.asarray(arrays["success/neurons"], dtype=bool),
            driver_success=np.asarray(arrays["success/drivers"], dtype=bool),
            neuron_reasons={int(n): r for n, r in attrs["neuron_reasons"].items()},
            driver_reasons={int(d): r for d, r in attrs["driver_reasons"].items()},
            provenance=dict(attrs["provenance"]),
            origin="stored",
        )


def _register_with_store() -> None:
    from results_store import register_kind

    register_kind(RECORD_KIND, MacResult.from_record)


_register_with_store()
