"""The routine interface: one calibrated quantity, applied and measured; never searched."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import CAPMEM_MAX, Device


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
    """A calibrated quantity: the cell that controls it and how to measure it.

    `prelude` configures what the measurement needs (and remembers what it changed),
    `apply` writes candidate codes, `measure` returns one value per unit (neuron or quadrant),
    `postlude` restores what `prelude` changed. An algorithm drives apply/measure.
    """

    name: str
    """Quantity name, as in NeuronTarget (e.g. 'tau_mem')."""
    parameter: str
    """Cell the routine sets."""
    parameter_range: ParameterRange = ParameterRange()
    inverted: bool = False
    """Whether a higher code gives a lower observable."""

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

    def apply(self, device: Device, codes: np.ndarray) -> None:
        device.write({self.parameter: codes})

    @abstractmethod
    def measure(self, device: Device) -> np.ndarray:
        """One value per unit, measured with the codes last applied."""

    def postlude(self, device: Device) -> None:
        """Restore what `prelude` changed (the calibrated parameter itself stays).

        Written twice: a large temporary step (e.g. the leak pulled to the top for the
        threshold) is still ~0.7 % unsettled after one write's wait, enough to shift the next
        measurement by about a CADC LSB.
        """
        if self._saved_settings:
            device.write(self._saved_settings)
            device.write(self._saved_settings)
        self._saved_settings = None
