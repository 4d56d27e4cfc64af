"""From a modeller's units to the chip's: speed-up for times, an affine voltage map for potentials.

Models speak in biological time and in their own voltage unit; a `NeuronTarget` speaks in
hardware seconds and CADC LSB. Two conversions bridge them:

- time: hardware time = model time / speed-up (the chip runs `speedup` times faster);
- potential: chip LSB = scale * model voltage + offset (`VoltageMap`), with scale > 0 so the
  order of leak, reset and threshold survives.

`map_model_units` takes PyNN-style neuron parameters (the names of PyNN's `IF_curr_exp`).

**Units of `map_model_units` / `NeuronTarget.from_model_units`: potentials in millivolts (mV)
and times in milliseconds (ms), as PyNN writes them.** A voltage map then reads "CADC LSB per
mV". Out-of-range values are reported in those model units, with the model-unit range that the
speed-up and the voltage map allow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calib.core.plans import PLANS
from calib.core.targets import NeuronTarget, TargetValue
from device_model.protocol import N_NEURONS

DEFAULT_SPEEDUP = 1000.0
"""The chip runs 1000 times faster than biology."""

POTENTIAL_MARGIN = 10.0
"""CADC LSB kept free at both ends of a potential's allowed range when a voltage map is fitted:
mismatched neurons near a range edge are the first to run out of range in calibration."""

UNSCALED_LSB_PER_UNIT = 1.0
"""Scale a fitted map uses when every potential is the same model value (nothing fixes a scale)."""

MS = 1e-3
"""Seconds per millisecond: PyNN times are in ms."""

POTENTIAL_QUANTITIES = ("leak", "reset", "threshold")


def check_speedup(speedup: float) -> float:
    """A finite, positive speed-up; ValueError otherwise."""
    value = float(speedup)
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"speedup = {speedup!r} must be a finite number > 0")
    return value


@dataclass(frozen=True)
class VoltageMap:
    """Affine map from model voltage to chip potential: lsb = scale * v + offset.

    `scale` is CADC LSB per model voltage unit (> 0), `offset` the CADC LSB of model voltage 0.
    """

    scale: float
    offset: float

    def __post_init__(self) -> None:
        scale, offset = float(self.scale), float(self.offset)
        if not (np.isfinite(scale) and scale > 0):
            raise ValueError(
                f"VoltageMap.scale = {self.scale!r} must be finite and > 0 "
                "(a positive scale keeps leak, reset and threshold in order)"
            )
        if not np.isfinite(offset):
            raise ValueError(f"VoltageMap.offset = {self.offset!r} must be finite")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "offset", offset)

    def to_chip(self, model_voltage: ArrayLike) -> TargetValue:
        """Chip potential (CADC LSB) of a model voltage."""
        return _same_kind(self.scale * np.asarray(model_voltage, dtype=float) + self.offset)

    def to_model(self, chip_potential: ArrayLike) -> TargetValue:
        """Model voltage of a chip potential (CADC LSB)."""
        return _same_kind((np.asarray(chip_potential, dtype=float) - self.offset) / self.scale)

    def describe(self, unit: str = "model unit") -> str:
        return f"chip LSB = {self.scale:.6g} * v + {self.offset:.6g} (v in {unit})"

    def to_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VoltageMap:
        return cls(scale=data["scale"], offset=data["offset"])

    @classmethod
    def fit(
        cls,
        *,
        leak: ArrayLike = (),
        reset: ArrayLike = (),
        threshold: ArrayLike = (),
        margin: float = POTENTIAL_MARGIN,
    ) -> VoltageMap:
        """The map with the largest scale that puts every given model potential inside its
        allowed target range, `margin` LSB away from both ends.

        The largest scale spreads the model's potentials over as many LSB as the ranges allow,
        so the calibration tolerance (a few LSB) costs the least relative precision. The offset
        is centred in what remains. When all values are equal nothing fixes a scale: the map
        uses `UNSCALED_LSB_PER_UNIT` and centres the value.
        """
        values, lows, highs = _potential_bounds(
            {"leak": leak, "reset": reset, "threshold": threshold}, margin
        )
        if values.size == 0:
            raise ValueError("VoltageMap.fit needs at least one leak, reset or threshold value")
        # Constraint i: lows_i <= scale * v_i + offset <= highs_i. An offset exists for a scale
        # iff lows_i - scale * v_i <= highs_j - scale * v_j for every pair (i, j).
        dv = values[None, :] - values[:, None]  # v_j - v_i
        room = highs[None, :] - lows[:, None]  # highs_j - lows_i
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = room / dv
        scale_high = float(np.min(ratio[dv > 0], initial=np.inf))
        scale_low = float(np.max(ratio[dv < 0], initial=0.0))
        if np.any(room[dv == 0] < 0) or scale_low > scale_high:
            raise ValueError(
                "no voltage map fits these potentials into the allowed target ranges "
                f"with a margin of {margin:g} LSB; pass a voltage map or a smaller margin"
            )
        scale = scale_high if np.isfinite(scale_high) else UNSCALED_LSB_PER_UNIT
        offset_low = float(np.max(lows - scale * values))
        offset_high = float(np.min(highs - scale * values))
        return cls(scale=scale, offset=0.5 * (offset_low + offset_high))


def _same_kind(array: np.ndarray) -> TargetValue:
    return float(array) if array.ndim == 0 else array


def _potential_bounds(
    potentials: dict[str, ArrayLike], margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per kind, only the lowest and highest value constrain an affine map (the constraints
    are convex in v), so at most two points per kind with that kind's narrowed range."""
    values, lows, highs = [], [], []
    for name, raw in potentials.items():
        array = np.asarray(raw, dtype=float).ravel()
        if array.size == 0:
            continue
        if not np.all(np.isfinite(array)):
            offending = array[~np.isfinite(array)][0]
            raise ValueError(f"{name}: potentials must be finite, got {float(offending)!r}")
        spec = PLANS.quantities()[name]
        for value in (array.min(), array.max()):
            values.append(value)
            lows.append(spec.low + margin)
            highs.append(spec.high - margin)
    return np.array(values), np.array(lows), np.array(highs)


@dataclass(frozen=True)
class ModelUnitField:
    """A PyNN-style parameter and the target quantity it becomes."""

    name: str
    quantity: str
    unit: str


PYNN_FIELDS: tuple[ModelUnitField, ...] = (
    ModelUnitField("v_rest", "leak", "mV"),
    ModelUnitField("v_reset", "reset", "mV"),
    ModelUnitField("v_thresh", "threshold", "mV"),
    ModelUnitField("tau_m", "tau_mem", "ms"),
    ModelUnitField("tau_syn_E", "tau_syn_exc", "ms"),
    ModelUnitField("tau_syn_I", "tau_syn_inh", "ms"),
    ModelUnitField("tau_refrac", "refractory_time", "ms"),
)


@dataclass(frozen=True)
class ModelUnitMapping:
    """A target made from model units, with the conversions that made it."""

    target: NeuronTarget
    voltage_map: VoltageMap
    speedup: float


def map_model_units(
    *,
    v_rest: ArrayLike,
    v_reset: ArrayLike,
    v_thresh: ArrayLike,
    tau_m: ArrayLike,
    tau_syn_E: ArrayLike,
    tau_syn_I: ArrayLike,
    tau_refrac: ArrayLike,
    speedup: float = DEFAULT_SPEEDUP,
    voltage_map: VoltageMap | None = None,
) -> ModelUnitMapping:
    """Convert PyNN-style parameters to a validated `NeuronTarget`.

    UNITS: potentials (v_rest, v_reset, v_thresh) in mV; times (tau_m, tau_syn_E, tau_syn_I,
    tau_refrac) in ms of model (biological) time. Each is a scalar or a per-neuron array of
    shape (512,). Without `voltage_map`, one is fitted to all given potentials
    (`VoltageMap.fit`). A value out of range raises ValueError naming the PyNN field, its value
    and the model-unit range that this speed-up and voltage map allow.
    """
    speedup = check_speedup(speedup)
    given = {
        "v_rest": v_rest,
        "v_reset": v_reset,
        "v_thresh": v_thresh,
        "tau_m": tau_m,
        "tau_syn_E": tau_syn_E,
        "tau_syn_I": tau_syn_I,
        "tau_refrac": tau_refrac,
    }
    model = {name: _model_array(name, value) for name, value in given.items()}
    if voltage_map is None:
        voltage_map = VoltageMap.fit(
            leak=model["v_rest"], reset=model["v_reset"], threshold=model["v_thresh"]
        )
    chip: dict[str, TargetValue] = {}
    for field in PYNN_FIELDS:
        value = model[field.name]
        spec = PLANS.quantities()[field.quantity]
        if field.unit == "mV":
            low, high = voltage_map.to_model(spec.low), voltage_map.to_model(spec.high)
            how = f"under {voltage_map.describe('mV')}"
        else:
            low, high = spec.low * speedup / MS, spec.high * speedup / MS
            how = f"at speed-up {speedup:g}"
        converted = np.asarray(
            voltage_map.to_chip(value) if field.unit == "mV" else value * MS / speedup
        )
        _check_model_range(field, value, converted, (low, high), how)
        chip[field.quantity] = _same_kind(converted)
    return ModelUnitMapping(NeuronTarget(**chip), voltage_map, speedup)


def _model_array(name: str, value: ArrayLike) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    if array.ndim > 1 or (array.ndim == 1 and array.shape[0] != N_NEURONS):
        raise ValueError(
            f"{name}: a per-neuron value must have shape ({N_NEURONS},), got {array.shape}"
        )
    if not np.all(np.isfinite(array)):
        offending = np.atleast_1d(array)[~np.isfinite(np.atleast_1d(array))][0]
        raise ValueError(f"{name} = {float(offending)!r} must be a finite number")
    return array


def _check_model_range(
    field: ModelUnitField,
    value: np.ndarray,
    converted: np.ndarray,
    model_range: tuple[float, float],
    how: str,
) -> None:
    """Judge the converted (chip) value, the one the target will check, so rounding in the
    conversion cannot pass here and fail there; report in model units."""
    spec = PLANS.quantities()[field.quantity]
    bad = ~np.isfinite(converted) | (converted < spec.low) | (converted > spec.high)
    if not bad.any():
        return
    first = int(np.flatnonzero(np.atleast_1d(bad))[0])
    offending = float(np.atleast_1d(value)[first])
    where = "" if value.ndim == 0 else f" (neuron {first})"
    low, high = model_range
    raise ValueError(
        f"{field.name} = {offending!r} {field.unit}{where} is outside the allowed range "
        f"{low:.4g}..{high:.4g} {field.unit} {how} "
        f"({field.quantity} {spec.low:g}..{spec.high:g} {spec.unit} on the chip)"
    )


def target_from_model_units(**parameters: Any) -> NeuronTarget:
    """A target from PyNN-style parameters: POTENTIALS IN mV, TIMES IN ms (model time).

    The keywords of `map_model_units`, which also returns the voltage map used.
    """
    return map_model_units(**parameters).target
