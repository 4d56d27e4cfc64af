"""What a MAC calibration is asked for: baseline, input strength and the driver encoding."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class MacTarget:
    """Targets of the MAC ("hagen") mode calibration, validated when made.

    `baseline`: CADC reading after an integration without input (LSB; calix hagen reads 120).
    `amplitude`: integrated amplitude of the strength pattern (every row at weight 4 and
    activation 16) that every neuron's excitatory and inhibitory input is matched to (LSB); None
    takes the median of all neurons at the gm code `i_synin_gm` (calix: 450) after the synapse
    DAC calibration. The synaptic time constants are set to their shortest (calix hagen aims at
    0.32 µs); each neuron's measured tau_syn must not exceed `max_tau_syn`. Tolerances judge
    success on measured values.
    """

    baseline: float = 120.0
    amplitude: float | None = None
    i_synin_gm: int = 450
    max_tau_syn: float = 0.6e-6
    baseline_tolerance: float = 3.0
    amplitude_tolerance: float = 0.04
    """Relative."""
    offset_tolerance: float = 0.3
    """Activation units of a driver's remaining offset a0."""

    def __post_init__(self) -> None:
        ranges: dict[str, tuple[float, float, str]] = {
            "baseline": (40.0, 200.0, "CADC LSB"),
            "amplitude": (5.0, 80.0, "CADC LSB"),
            "i_synin_gm": (1, 1022, "code"),
            "max_tau_syn": (0.1e-6, 5e-6, "s"),
            "baseline_tolerance": (0.1, 20.0, "CADC LSB"),
            "amplitude_tolerance": (0.001, 0.5, "(relative)"),
            "offset_tolerance": (0.01, 4.0, "activation units"),
        }
        for name, (low, high, unit) in ranges.items():
            value = getattr(self, name)
            if value is None and name == "amplitude":
                continue
            integer = name == "i_synin_gm"
            ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
            if (
                isinstance(value, bool)
                or not ok_type
                or not math.isfinite(value)
                or not (low <= value <= high)
            ):
                raise ValueError(
                    f"{name} = {value!r} is outside the allowed range {low:g}..{high:g} {unit}"
                )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MacTarget:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown MacTarget fields: {sorted(unknown)}")
        return cls(**dict(data))

    def fingerprint(self) -> str:
        text = json.dumps({"kind": "mac", **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
