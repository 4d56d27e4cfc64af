"""A small fake device and synthetic routines for testing search algorithms.

No chip model: each routine has a per-unit monotonic transfer curve (mismatched gains and
offsets), optional Gaussian read noise, optional inversion, and can make some units unable to
reach a target. `truth(codes)` gives the noiseless observable, to judge results without noise.
Reusable by any test that needs a device and a routine without the simulated chip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms.base import MultiParameterRoutine
from calib.core.routine import ParameterRange, Routine
from device_model.protocol import CAPMEM_MAX, DeviceStats, TransientRunError

RUN_TIME = 1e-3
"""Emulated hardware seconds per measurement run (host round trip)."""
WRITE_TIME = 20e-3
"""Emulated hardware seconds per write (CapMem settling)."""


class FakeDevice:
    """Holds written codes and counts runs; fails the first `transient_failures` runs."""

    def __init__(
        self, n_units: int = 512, chip_id: str = "fake-chip", transient_failures: int = 0
    ) -> None:
        self.chip_id = chip_id
        self.n_neurons = n_units
        self.transient_failures = transient_failures
        self.settings: dict[str, np.ndarray] = {}
        self._stats = DeviceStats()

    @property
    def stats(self) -> DeviceStats:
        return self._stats.copy()

    def write(self, settings: Mapping[str, ArrayLike]) -> None:
        for name, value in settings.items():
            codes = np.asarray(value)
            if not np.issubdtype(codes.dtype, np.integer):
                raise ValueError(f"cell {name!r} takes integer codes, got dtype {codes.dtype}")
            if codes.min() < 0 or codes.max() > CAPMEM_MAX:
                raise ValueError(f"cell {name!r}: codes outside 0..{CAPMEM_MAX}")
            self.settings[name] = np.broadcast_to(codes, (self.n_neurons,)).copy()
        self._stats.writes += 1
        self._stats.hardware_time += WRITE_TIME

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(self.settings) if names is None else names
        return {
            name: self.settings.get(name, np.zeros(self.n_neurons, np.int64)).copy()
            for name in names
        }

    def run(self) -> None:
        """Account for one measurement run, failing transiently while failures are left."""
        self._stats.runs += 1
        self._stats.hardware_time += RUN_TIME
        if self.transient_failures > 0:
            self.transient_failures -= 1
            raise TransientRunError("fake transient run failure")


class CurveRoutine(Routine):
    """observable = offset + gain * shape(code) per unit, plus read noise.

    `shape` is 'linear' (code / 1022) or 'inverse' (a time-constant-like 1 / (code - pole),
    falling with the code and scaled to about 1 at mid range). The observable falls with the
    code when `inverted` (for 'inverse' that is always so).
    """

    def __init__(
        self,
        n_units: int = 512,
        seed: int = 0,
        noise: float = 0.0,
        shape: str = "linear",
        inverted: bool = False,
        unreachable: int = 0,
        name: str = "fake_quantity",
        parameter: str = "fake_cell",
        parameter_range: ParameterRange | None = None,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.name = name
        self.parameter = parameter
        self.parameter_range = parameter_range or ParameterRange()
        self.shape = shape
        self.inverted = inverted or shape == "inverse"
        self.noise = noise
        self.seed = seed
        # Clipped mismatch keeps mid-range targets within reach of every ordinary unit.
        self.gain = np.clip(rng.lognormal(0.0, 0.15, n_units), 0.8, 1.25)
        self.offset = np.clip(rng.normal(0.0, 0.03, n_units), -0.05, 0.05)
        self.pole = rng.normal(-40.0, 10.0, n_units)
        self.unreachable = np.zeros(n_units, dtype=bool)
        self.unreachable[:unreachable] = True
        # Unreachable units are squeezed into a narrow band far from any test target.
        self.gain[self.unreachable] *= 0.05
        self.offset[self.unreachable] += 3.0
        self._rng = np.random.default_rng(seed + 1)

    def prelude(self, device: FakeDevice) -> None:  # type: ignore[override]
        super().prelude(device)
        # Restart the noise stream, so that a search run twice sees the same reads.
        self._rng = np.random.default_rng(self.seed + 1)

    def truth(self, codes: np.ndarray) -> np.ndarray:
        """The noiseless observable for `codes` (shape (n_units,) or (n_codes, n_units))."""
        codes = np.asarray(codes, dtype=float)
        if self.shape == "linear":
            base = codes / CAPMEM_MAX
            base = 1.0 - base if self.inverted else base
        elif self.shape == "inverse":
            base = 550.0 / (codes - self.pole)
        else:
            raise ValueError(f"shape {self.shape!r} is not one of 'linear', 'inverse'")
        return self.offset + self.gain * base

    def measure(self, device: FakeDevice) -> np.ndarray:  # type: ignore[override]
        device.run()
        codes = device.settings[self.parameter]
        return self.truth(codes) + self.noise * self._rng.standard_normal(codes.shape)

    def reachable_target(self, fraction: float = 0.5) -> np.ndarray:
        """One target for every unit: the median observable at `fraction` of the code range.

        Every ordinary unit can reach it for `fraction` within 0.25..0.75.
        """
        limits = self.parameter_range
        code = round(limits.low + fraction * (limits.high - limits.low))
        typical = float(np.median(self.truth(np.full(self.gain.shape, code))))
        return np.full(self.gain.shape, typical)

    def ideal_codes(self, target: np.ndarray) -> np.ndarray:
        """Per unit, the code whose noiseless observable is closest to `target` (brute force)."""
        limits = self.parameter_range
        grid = np.arange(limits.low, limits.high + 1)
        values = self.truth(np.broadcast_to(grid[:, None], (grid.size, target.size)))
        return grid[np.argmin(np.abs(values - target), axis=0)]

    def code_step(self, codes: np.ndarray) -> np.ndarray:
        """Per unit, the observable change of one code step at `codes` (absolute)."""
        return np.abs(self.truth(codes + 1) - self.truth(codes))


class TwoParameterRoutine(MultiParameterRoutine):
    """Two cells, two observables: a mixing transfer map with mismatch, plus read noise.

    observable_0 = g0 * (x + 0.3 y), observable_1 = o1 + g1 * (y - 0.2 x), with x, y the codes
    scaled to 0..1 and per-unit lognormal gains. Targets in the middle are reachable by all units.
    """

    def __init__(self, n_units: int = 512, seed: int = 0, noise: float = 0.0) -> None:
        rng = np.random.default_rng(seed)
        self.name = "fake_pair"
        self.parameters = ("fake_cell_x", "fake_cell_y")
        self.parameter_ranges = (ParameterRange(), ParameterRange())
        self.gain = rng.lognormal(0.0, 0.15, (n_units, 2))
        self.offset = rng.normal(0.2, 0.03, n_units)
        self.noise = noise
        self.seed = seed
        self._rng = np.random.default_rng(seed + 1)

    def prelude(self, device: FakeDevice) -> None:  # type: ignore[override]
        super().prelude(device)
        self._rng = np.random.default_rng(self.seed + 1)

    def truth(self, codes: np.ndarray) -> np.ndarray:
        x, y = (np.asarray(codes, dtype=float) / CAPMEM_MAX).T
        first = self.gain[:, 0] * (x + 0.3 * y)
        second = self.offset + self.gain[:, 1] * (y - 0.2 * x)
        return np.stack([first, second], axis=1)

    def measure(self, device: FakeDevice) -> np.ndarray:  # type: ignore[override]
        device.run()
        codes = np.stack([device.settings[name] for name in self.parameters], axis=1)
        values = self.truth(codes)
        return values + self.noise * self._rng.standard_normal(values.shape)


def assert_within_quantisation(
    routine: CurveRoutine, codes: np.ndarray, target: np.ndarray, slack: float = 0.55
) -> None:
    """Every unit's noiseless residual is at most `slack` code steps (0.5 is the best possible)."""
    residual = np.abs(routine.truth(codes) - target)
    step = np.maximum(routine.code_step(codes), routine.code_step(np.maximum(codes - 1, 0)))
    worst = int(np.argmax(residual / step))
    missed_by = residual[worst] / step[worst]
    assert missed_by <= slack, f"unit {worst}: code {codes[worst]} misses by {missed_by:.2f} steps"


def _quantities(adex: bool) -> dict:
    from calib import PLANS

    if adex:
        return {spec.name: spec for plan in PLANS if not plan.lif_part for spec in plan.quantities}
    return {name: spec for name, spec in PLANS.quantities().items() if not spec.optional}


QUANTITIES = _quantities(adex=False)
"""The quantities every target carries (the LIF ones with a default)."""
ADEX_QUANTITIES = _quantities(adex=True)
"""The optional AdEx quantities."""
