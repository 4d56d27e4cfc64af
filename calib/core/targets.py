"""Calibration targets: what an experiment asks each neuron to do.

The fields of a `NeuronTarget` are the quantities of the registered plans (`calib.core.plans`):
`NeuronTarget(tau_mem=8e-6)`, `target.tau_mem`. Potentials are in CADC LSB (the calibrated CADC
is the unit of the chip's potentials), times in seconds of hardware time. Every field takes a
scalar or a per-neuron array; values are checked at construction, so a bad target fails before
anything touches a device. Optional quantities (default None, e.g. the AdEx parts) are not
calibrated unless the target sets them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calib.core.plans import PLANS, QuantitySpec, quantity_spec
from device_model.protocol import N_NEURONS

TargetValue = float | np.ndarray

__all__ = ["NeuronTarget", "QuantitySpec", "TargetValue", "check_value", "quantity_spec"]


def check_value(field: str, value: ArrayLike, low: float, high: float, unit: str) -> TargetValue:
    """A validated scalar or per-neuron array of real, finite numbers inside low..high.

    Complex, masked, string and boolean values are refused (they would coerce silently);
    ValueError names the field, the value and the allowed range.
    """
    if isinstance(value, bool | np.bool_ | str | bytes) or np.ma.isMaskedArray(value):
        raise ValueError(
            f"{field}: expected a real number or a per-neuron array of them, "
            f"got {type(value).__name__}"
        )
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{field}: not a number or array of numbers ({error})") from None
    if raw.dtype.kind not in "iuf":
        raise ValueError(f"{field}: expected real numbers, got values of type {raw.dtype}")
    array = raw.astype(float)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != N_NEURONS):
        raise ValueError(
            f"{field}: a per-neuron target must have shape ({N_NEURONS},), got {array.shape}"
        )
    bad = ~np.isfinite(array) | (array < low) | (array > high)
    if bad.any():
        offending = array if array.ndim == 0 else array[np.flatnonzero(bad)[0]]
        where = "" if array.ndim == 0 else f" (neuron {int(np.flatnonzero(bad)[0])})"
        raise ValueError(
            f"{field} = {float(offending)!r}{where} is outside the allowed range "
            f"{low:g}..{high:g} {unit}"
        )
    if array.ndim == 0:
        return float(array)
    array = array.copy()
    array.flags.writeable = False
    return array


class NeuronTarget:
    """The behaviour asked of every neuron (defaults: calix's published LIF defaults).

    Immutable; equal targets have equal fingerprints. Besides the quantities, the plans declare
    settings: integer fields used as they are (e.g. `membrane_capacitance`, 0..63 units on
    every neuron, which scales tau_mem).
    """

    __slots__ = ("_values",)

    def __init__(self, **values: Any) -> None:
        specs = PLANS.quantities()
        settings = PLANS.settings()
        unknown = set(values) - set(specs) - set(settings)
        if unknown:
            known = ", ".join([*specs, *settings])
            raise ValueError(f"unknown target fields: {', '.join(sorted(unknown))}; known: {known}")
        alternatives = PLANS.alternatives()
        given = {name for name, value in values.items() if value is not None}
        for name in sorted(given & set(alternatives)):
            both = sorted(given & alternatives[name])
            if both:
                raise ValueError(
                    f"{name} and {both[0]} are alternatives: a target sets one of them, not both"
                )
        stepped_aside = {other for name in given for other in alternatives.get(name, ())}
        checked: dict[str, Any] = {}
        for name, spec in specs.items():
            value = values.get(name, None if name in stepped_aside else spec.default)
            checked[name] = (
                None if value is None else check_value(name, value, spec.low, spec.high, spec.unit)
            )
        for name, setting in settings.items():
            checked[name] = setting.check(values.get(name, setting.default))
        object.__setattr__(self, "_values", checked)
        for plan in PLANS:
            check = plan.extra.get("check_target")
            if check is not None and plan.applies(self):
                check(self)

    # -- field access -------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"NeuronTarget has no field {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"NeuronTarget is immutable: use target.replace({name}=...)")

    def replace(self, **changes: Any) -> NeuronTarget:
        """A copy with `changes` applied (validated like a new target). A change to one of
        two alternative fields (`QuantitySpec.alternative_to`) drops the other one."""
        base = self.to_dict()
        alternatives = PLANS.alternatives()
        for name, value in changes.items():
            if value is not None:
                for other in alternatives.get(name, ()):
                    if other not in changes:
                        base.pop(other, None)
        return NeuronTarget(**{**base, **changes})

    @staticmethod
    def field_names() -> tuple[str, ...]:
        """Every target field: the registered quantities, then the settings."""
        return (*PLANS.quantities(), *PLANS.settings())

    @property
    def optional_set(self) -> tuple[str, ...]:
        """The optional quantities this target asks for."""
        return tuple(
            name
            for name, spec in PLANS.quantities().items()
            if spec.optional and self._values.get(name) is not None
        )

    @property
    def adex(self) -> tuple[str, ...]:
        """The AdEx quantities this target asks for (empty for a LIF target)."""
        return tuple(
            name
            for plan in PLANS
            if not plan.lif_part
            for name in plan.quantity_names
            if self._values.get(name) is not None
        )

    def quantities(self) -> dict[str, np.ndarray]:
        """Every quantity the target sets, as a per-neuron float array, in plan order."""
        return {
            name: np.broadcast_to(value, (N_NEURONS,)).astype(float)
            for name, value in self._values.items()
            if name not in PLANS.settings() and value is not None
        }

    # -- plain data --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: scalars stay numbers, per-neuron arrays become lists; unset optional
        quantities are left out (so a LIF target keeps its fingerprint)."""
        out: dict[str, Any] = {}
        for name, value in self._values.items():
            if value is None:
                continue
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NeuronTarget:
        return cls(**dict(data))

    def fingerprint(self) -> str:
        """A stable hash of the target's values: equal targets, equal fingerprints."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NeuronTarget) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        shown = []
        for name, value in self._values.items():
            if value is None:
                continue
            if isinstance(value, np.ndarray):
                shown.append(f"{name}=<{value.size} values {value.min():g}..{value.max():g}>")
            else:
                shown.append(f"{name}={value!r}")
        return f"NeuronTarget({', '.join(shown)})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Dask ships targets between processes; rebuilt from plain data, validated again.
        return (_from_dict, (self.to_dict(),))


def _from_dict(data: dict[str, Any]) -> NeuronTarget:
    return NeuronTarget.from_dict(data)
