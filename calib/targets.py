"""Calibration targets: what an experiment asks each neuron to do.

Potentials are in CADC LSB (the calibrated CADC is the unit of the chip's potentials), times in
seconds of hardware time. Every field takes a scalar or a per-neuron array; values are checked
at construction, so a bad target fails before anything touches a device.

The AdEx fields (subthreshold and spike-triggered adaptation, exponential term) are optional:
None leaves that part of the neuron switched off and uncalibrated. They are behaviours measured
through spiking, in the units they are measured in; `ADEX_QUANTITIES` gives their units, ranges
and tolerances, `calib.adex` how they are measured.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import N_NEURONS

TargetValue = float | np.ndarray


@dataclass(frozen=True)
class QuantitySpec:
    """A calibrated quantity: its unit, allowed target range and success tolerance."""

    name: str
    unit: str
    low: float
    high: float
    tolerance: float
    relative: bool
    """Whether `tolerance` is a fraction of the target (True) or absolute, in `unit` (False)."""

    def tolerance_for(self, target: np.ndarray) -> np.ndarray:
        return self.tolerance * np.abs(target) if self.relative else np.full_like(
            target, self.tolerance, dtype=float
        )


QUANTITIES: dict[str, QuantitySpec] = {
    spec.name: spec
    for spec in (
        QuantitySpec("leak", "CADC LSB", 50, 160, 3.0, relative=False),
        QuantitySpec("reset", "CADC LSB", 50, 160, 3.0, relative=False),
        QuantitySpec("threshold", "CADC LSB", 50, 220, 4.0, relative=False),
        QuantitySpec("tau_mem", "s", 0.5e-6, 60e-6, 0.10, relative=True),
        QuantitySpec("tau_syn_exc", "s", 0.3e-6, 30e-6, 0.10, relative=True),
        QuantitySpec("tau_syn_inh", "s", 0.3e-6, 30e-6, 0.10, relative=True),
        QuantitySpec("psp_amplitude_exc", "CADC LSB", 2.0, 60.0, 0.15, relative=True),
        QuantitySpec("psp_amplitude_inh", "CADC LSB", 2.0, 60.0, 0.15, relative=True),
        QuantitySpec("refractory_time", "s", 40e-9, 32e-6, 0.02, relative=True),
    )
}

ADEX_QUANTITIES: dict[str, QuantitySpec] = {
    spec.name: spec
    for spec in (
        # Ranges: what the simulated chip reaches at the default LIF working point (tau_mem
        # 10 us, 63 capacitance units, refractory time 2 us). a / g_leak: up to 0.4 for nearly
        # every neuron (a faster membrane, a larger g_leak, lowers that). Ratio and time: 95 to
        # 99 % of the neurons anywhere in the box (the fewest at ratio 0.9, where the rate drop
        # is small and the time scatters most). Onset: anywhere between leak and threshold
        # (checked when a calibration starts). Rate: a band about +-8 % wide set by the onset:
        # ~80 kHz at onset 95 LSB, 70 at 100, 60 at 105, 48 at 110. Tolerances: several times
        # the measurements' scatter (a / g_leak 0.003, ratio 0.35 %, time 2 % at ratio 0.8 and
        # 4.5 % at 0.9, onset 0.2 LSB, rate 0.2 %).
        QuantitySpec("adaptation_a", "g_leak", 0.0, 0.4, 0.02, relative=False),
        QuantitySpec("adaptation_ratio", "f/f0", 0.75, 0.9, 0.03, relative=True),
        QuantitySpec("adaptation_time", "s", 28e-6, 40e-6, 0.12, relative=True),
        QuantitySpec("exp_onset", "CADC LSB", 60.0, 200.0, 1.5, relative=False),
        QuantitySpec("exp_rate", "Hz", 20e3, 120e3, 0.04, relative=True),
    )
}
"""The optional AdEx quantities (None in a target: not calibrated). Kept apart from QUANTITIES,
whose every entry each target carries."""


def quantity_spec(name: str) -> QuantitySpec:
    """The spec of a LIF or AdEx quantity; ValueError for an unknown name."""
    spec = QUANTITIES.get(name) or ADEX_QUANTITIES.get(name)
    if spec is None:
        known = ", ".join([*QUANTITIES, *ADEX_QUANTITIES])
        raise ValueError(f"unknown quantity {name!r}; known: {known}")
    return spec


def check_value(field: str, value: ArrayLike, low: float, high: float, unit: str) -> TargetValue:
    """A validated scalar or per-neuron array; ValueError names field, value and range."""
    array = np.asarray(value, dtype=float)
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


@dataclass(frozen=True, eq=False)
class NeuronTarget:
    """The behaviour asked of every neuron (defaults: calix's published LIF defaults)."""

    leak: TargetValue = 80.0
    reset: TargetValue = 70.0
    threshold: TargetValue = 125.0
    tau_mem: TargetValue = 10e-6
    tau_syn_exc: TargetValue = 10e-6
    tau_syn_inh: TargetValue = 10e-6
    psp_amplitude_exc: TargetValue = 20.0
    psp_amplitude_inh: TargetValue = 20.0
    refractory_time: TargetValue = 2e-6
    membrane_capacitance: int = 63
    """Capacitance units (0..63) set on every neuron; not calibrated, it scales tau_mem."""
    adaptation_a: TargetValue | None = None
    """Subthreshold adaptation a as a fraction of the leak conductance (a / g_leak), from the
    membrane's steady response to a current step."""
    adaptation_ratio: TargetValue | None = None
    """Spike-frequency adaptation: the adapted firing rate over the rate without adaptation,
    under the reference drive (the leak raised to threshold + (threshold - reset))."""
    adaptation_time: TargetValue | None = None
    """Time constant (s) of the firing rate's relaxation to its adapted value, same drive."""
    exp_onset: TargetValue | None = None
    """Exponential term: the leak potential (CADC LSB) above which the neuron fires tonically
    (its rheobase, as a potential); between the leak and the threshold."""
    exp_rate: TargetValue | None = None
    """Exponential term: the firing rate (Hz) with the leak potential at the threshold, where a
    plain LIF neuron stays silent (reachable: a narrow band set by exp_onset, see above)."""

    def __post_init__(self) -> None:
        for name, spec in QUANTITIES.items():
            value = check_value(name, getattr(self, name), spec.low, spec.high, spec.unit)
            object.__setattr__(self, name, value)
        for name, spec in ADEX_QUANTITIES.items():
            if getattr(self, name) is not None:
                value = check_value(name, getattr(self, name), spec.low, spec.high, spec.unit)
                object.__setattr__(self, name, value)
        capacitance = self.membrane_capacitance
        if not (isinstance(capacitance, int | np.integer) and 0 <= capacitance <= 63):
            raise ValueError(
                f"membrane_capacitance = {capacitance!r} is outside the allowed range 0..63"
            )
        object.__setattr__(self, "membrane_capacitance", int(capacitance))

    @property
    def adex(self) -> tuple[str, ...]:
        """The AdEx quantities this target asks for (empty for a LIF target)."""
        return tuple(name for name in ADEX_QUANTITIES if getattr(self, name) is not None)

    def quantities(self) -> dict[str, np.ndarray]:
        """Every calibrated quantity as a per-neuron float array: all of QUANTITIES, then the
        AdEx quantities the target asks for."""
        return {name: np.broadcast_to(getattr(self, name), (N_NEURONS,)).astype(float)
                for name in (*QUANTITIES, *self.adex)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: scalars stay numbers, per-neuron arrays become lists."""
        out: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue  # an AdEx part left off: LIF targets keep their fingerprints
            out[field.name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NeuronTarget:
        known = {field.name for field in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown target fields: {', '.join(sorted(unknown))}")
        return cls(**data)

    @classmethod
    def from_model_units(
        cls,
        *,
        v_rest: ArrayLike,
        v_reset: ArrayLike,
        v_thresh: ArrayLike,
        tau_m: ArrayLike,
        tau_syn_E: ArrayLike,
        tau_syn_I: ArrayLike,
        tau_refrac: ArrayLike,
        speedup: float = 1000.0,
        voltage_map: Any = None,
    ) -> NeuronTarget:
        """A target from PyNN-style parameters: POTENTIALS IN mV, TIMES IN ms (model time).

        Times become hardware time divided by `speedup`; potentials go through `voltage_map`
        (a `calib.model_units.VoltageMap`, fitted to the given potentials when None). Errors
        name the PyNN field, its value and the allowed range in mV or ms.
        See `calib.model_units.map_model_units`, which also returns the voltage map used.
        """
        from calib.model_units import map_model_units  # model_units imports this module

        return map_model_units(
            v_rest=v_rest, v_reset=v_reset, v_thresh=v_thresh, tau_m=tau_m,
            tau_syn_E=tau_syn_E, tau_syn_I=tau_syn_I, tau_refrac=tau_refrac,
            speedup=speedup, voltage_map=voltage_map,
        ).target

    def fingerprint(self) -> str:
        """A stable hash of the target's values: equal targets, equal fingerprints."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NeuronTarget) and self.fingerprint() == other.fingerprint()

    def __hash__(self) -> int:
        return hash(self.fingerprint())
