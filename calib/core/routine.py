"""The routine interface: one calibrated quantity, applied and measured; never searched.

A routine is built for one target (its plan's `routine` factory passes it in, and the algorithm
drives it towards the same array). `prelude` configures what the measurement needs and
remembers what it overwrote, `apply` writes candidate codes, `measure` returns one value per
unit (neuron or quadrant), `postlude` restores what `prelude` changed except the settings the
routine declares as part of the calibrated configuration (`kept_settings`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import CAPMEM_MAX, Device


class RoutineFailed(RuntimeError):
    """A routine could not complete on the device (names the routine, or the step and chip)."""


@dataclass(frozen=True)
class ParameterRange:
    """Inclusive range of codes a routine may set."""

    low: int = 0
    high: int = CAPMEM_MAX

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"parameter range low ({self.low}) exceeds high ({self.high})")

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def clip(self, codes: np.ndarray) -> np.ndarray:
        return np.clip(np.rint(codes), self.low, self.high).astype(np.int64)

    def at_bound(self, codes: np.ndarray) -> np.ndarray:
        """Per unit: -1 at the low bound, +1 at the high bound, 0 inside."""
        codes = np.asarray(codes)
        return np.where(codes <= self.low, -1, np.where(codes >= self.high, 1, 0))


class Routine(ABC):
    """A calibrated quantity: the cell that controls it and how to measure it."""

    name: str
    """Quantity (or step) name, as its plan's."""
    parameter: str
    """Cell the routine sets."""
    parameter_range: ParameterRange = ParameterRange()
    inverted: bool = False
    """Whether a higher code gives a lower observable."""
    kept_settings: tuple[str, ...] = ()
    """Cells the prelude sets that belong to the calibrated configuration: not restored."""

    _saved_settings: dict[str, np.ndarray] | None = None

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        """Cells this measurement needs set (other than `parameter`); restored afterwards."""
        return {}

    def prelude(self, device: Device) -> None:
        """Configure the device for this measurement, remembering what it overwrote."""
        settings = self.measurement_settings(device)
        self._saved_settings = device.read_settings(list(settings)) if settings else None
        if settings:
            device.write(settings)

    def is_inverted(self, device: Device) -> bool:
        """Whether a higher code lowers the observable, asked after `prelude` (a routine whose
        cell's direction is not known beforehand measures it here)."""
        return self.inverted

    def apply(self, device: Device, codes: np.ndarray) -> None:
        device.write({self.parameter: codes})

    @abstractmethod
    def measure(self, device: Device) -> np.ndarray:
        """One value per unit, measured with the codes last applied."""

    def postlude(self, device: Device) -> None:
        """Restore what `prelude` changed (the calibrated parameter and `kept_settings` stay).

        Written twice: a large temporary step (e.g. the leak pulled to the top for the
        threshold) is still ~0.7 % unsettled after one write's wait, enough to shift the next
        measurement by about a CADC LSB.
        """
        saved = {
            name: codes
            for name, codes in (self._saved_settings or {}).items()
            if name not in self.kept_settings
        }
        if saved:
            device.write(saved)
            device.write(saved)
        self._saved_settings = None


@runtime_checkable
class TargetedRoutine(Protocol):
    """A routine built for its target (its measurement depends on it, e.g. the recording
    length): the search drives it to that same `target`, which is given in this one place."""

    target: np.ndarray


@runtime_checkable
class SupportsSweepHint(Protocol):
    """A routine that knows which codes are worth sweeping for a target (fitting searches).

    `sweep_hint(target, device)` returns codes of shape (n_codes,) or (n_codes, n_units), in
    the order to measure them; `device` (as the prelude left it) may refine the guess.
    """

    def sweep_hint(self, target: ArrayLike, device: Device | None = None) -> np.ndarray: ...


@runtime_checkable
class SupportsCoarseMeasure(Protocol):
    """A routine with a cheaper, less precise reading of the same observable.

    `measure_coarse(device)` serves measurements that only place a model (a fitting search's
    sweep), where `measure` must be precise: e.g. a CADC reading of all neurons in a few runs
    where the MADC records two neurons per run.
    """

    def measure_coarse(self, device: Device) -> np.ndarray: ...


@runtime_checkable
class SupportsNeuronSubset(Protocol):
    """A routine whose measurement costs grow with the neurons it reads (an MADC recording
    takes one run per pair): `measure_neurons(device, neurons)` reads only `neurons` (indices)
    and gives NaN for the others."""

    def measure_neurons(self, device: Device, neurons: np.ndarray) -> np.ndarray: ...
