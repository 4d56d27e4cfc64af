"""Stimuli a device run can play: small frozen dataclasses, validated at construction.

All times are hardware time in seconds, relative to the start of the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_SYNAPTIC_WEIGHT = 63


def _check_time(field: str, value: float, *, allow_zero: bool = True) -> None:
    ok = math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{field} must be a finite time {bound} s, got {value!r}")


@dataclass(frozen=True)
class ResetRelease:
    """Every neuron is held at its reset potential until `release_time`, then released."""

    release_time: float

    def __post_init__(self) -> None:
        _check_time("release_time", self.release_time)


@dataclass(frozen=True)
class CurrentStep:
    """A current of `amplitude` amperes into every neuron from `on_time` to `off_time`."""

    amplitude: float
    off_time: float
    on_time: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.amplitude) or abs(self.amplitude) > 10e-9:
            raise ValueError(f"amplitude must lie within -10e-9..10e-9 A, got {self.amplitude!r}")
        _check_time("on_time", self.on_time)
        _check_time("off_time", self.off_time, allow_zero=False)
        if self.off_time <= self.on_time:
            raise ValueError(
                f"off_time ({self.off_time!r} s) must be later than on_time ({self.on_time!r} s)"
            )


@dataclass(frozen=True)
class SynapticEvents:
    """A train of synaptic events of one `weight` (0..63) sent to every neuron."""

    times: tuple[float, ...]
    weight: int = MAX_SYNAPTIC_WEIGHT
    inhibitory: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "times", tuple(float(t) for t in self.times))
        for time in self.times:
            _check_time("event time", time)
        if list(self.times) != sorted(self.times):
            raise ValueError("event times must be sorted in increasing order")
        if not (isinstance(self.weight, int) and 0 <= self.weight <= MAX_SYNAPTIC_WEIGHT):
            raise ValueError(
                f"weight must be an integer 0..{MAX_SYNAPTIC_WEIGHT}, got {self.weight!r}"
            )

    @classmethod
    def regular(
        cls,
        start: float,
        interval: float,
        count: int,
        weight: int = MAX_SYNAPTIC_WEIGHT,
        inhibitory: bool = False,
    ) -> SynapticEvents:
        """`count` events every `interval` seconds from `start`."""
        _check_time("interval", interval, allow_zero=False)
        return cls(tuple(start + i * interval for i in range(count)), weight, inhibitory)


# --- MAC mode (device_model/synapses.py) ------------------------------------------------------
ACTIVATION_MAX = 31
MAX_SENDS = 16
MAC_ROWS = 256
"""Rows per hemisphere: a MAC vector holds one activation per row."""


@dataclass(frozen=True, eq=False)
class MacActivations:
    """One MAC integration: every row gets an event carrying its 5-bit activation (0 sends
    none). `activations` has shape (256,) (the same vector to both hemispheres) or (2, 256)
    (one vector per hemisphere). The neurons are reset, integrate the events, and the CADC
    converts their membranes; each CADC sample is one such integration. `sends` sends the
    vector that many times before the conversion (hxtorch's num_sends), adding its charge."""

    activations: np.ndarray
    sends: int = 1

    def __post_init__(self) -> None:
        array = np.asarray(self.activations)
        allowed = f"shape ({MAC_ROWS},) or (2, {MAC_ROWS}) of integers 0..{ACTIVATION_MAX}"
        if array.shape not in ((MAC_ROWS,), (2, MAC_ROWS)):
            raise ValueError(f"activations: got shape {array.shape}; allowed: {allowed}")
        if array.dtype == bool or not (
            np.issubdtype(array.dtype, np.integer)
            or (
                np.issubdtype(array.dtype, np.floating)
                and np.all(np.isfinite(array))
                and np.all(array == np.round(array))
            )
        ):
            raise ValueError(f"activations: got dtype {array.dtype}; allowed: {allowed}")
        bad = (array < 0) | (array > ACTIVATION_MAX)
        if bad.any():
            index = tuple(
                int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), array.shape)
            )
            raise ValueError(
                f"activations: value {array[index]} at index "
                f"{index if array.ndim > 1 else index[0]} outside 0..{ACTIVATION_MAX}"
            )
        if (
            isinstance(self.sends, bool)
            or not isinstance(self.sends, int)
            or not (1 <= self.sends <= MAX_SENDS)
        ):
            raise ValueError(f"sends = {self.sends!r} is outside the allowed range 1..{MAX_SENDS}")
        frozen = array.astype(np.int64)
        frozen.flags.writeable = False
        object.__setattr__(self, "activations", frozen)


# --- Addressed events through synapse rows (device_model/synapses.py) ------------------------
N_ROWS = 2 * MAC_ROWS
"""Rows of the whole chip: global row h * 256 + r (hemisphere h, row r of its array)."""
MAX_ADDRESS = 63


@dataclass(frozen=True, eq=False)
class RowEvents:
    """Spike events sent through synapse rows (spiking mode): event k reaches global row
    `rows[k]` (h * 256 + r) at `times[k]` carrying the 6-bit address `addresses[k]`. Every
    synapse of that row whose address matches passes the event to its neuron (the columns of
    hemisphere h) with the synapse's weight, onto the input the row drives (`row_mode`).
    `addresses` may be one address for every event."""

    times: np.ndarray
    rows: np.ndarray
    addresses: np.ndarray | int = 0

    def __post_init__(self) -> None:
        times = np.asarray(self.times, dtype=float).reshape(-1)
        rows = np.asarray(self.rows)
        if rows.ndim == 0:
            rows = np.full(times.shape, rows)
        addresses = np.asarray(self.addresses)
        if addresses.ndim == 0:
            addresses = np.full(times.shape, addresses)
        for name, array, high in (
            ("rows", rows, N_ROWS - 1),
            ("addresses", addresses, MAX_ADDRESS),
        ):
            if array.shape != times.shape:
                raise ValueError(
                    f"{name}: got shape {array.shape}; allowed: one per event, "
                    f"shape {times.shape} (or a single value)"
                )
            if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
                raise ValueError(f"{name}: got dtype {array.dtype}; allowed: integers 0..{high}")
            bad = np.flatnonzero((array < 0) | (array > high))
            if bad.size:
                raise ValueError(
                    f"{name}: value {array[bad[0]]} at event {int(bad[0])} outside 0..{high}"
                )
        if times.size and not (np.all(np.isfinite(times)) and times.min() >= 0):
            raise ValueError("event times must be finite times >= 0 s")
        if np.any(np.diff(times) < 0):
            raise ValueError("event times must be sorted in increasing order")
        for name, array in (
            ("times", times),
            ("rows", rows.astype(np.int64)),
            ("addresses", addresses.astype(np.int64)),
        ):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    @classmethod
    def volley(cls, time: float, rows: Sequence[int] | np.ndarray, address: int = 0) -> RowEvents:
        """One event on each of `rows` at `time`, all with `address`."""
        rows = np.asarray(rows)
        return cls(np.full(rows.shape, float(time)), rows, address)


@dataclass(frozen=True)
class CompartmentConnect:
    """The configured inter-compartment connections close `time` s after the run starts
    (before, every compartment rests on its own); without it they are closed throughout."""

    time: float

    def __post_init__(self) -> None:
        _check_time("time", self.time)


Stimulus = (
    ResetRelease | CurrentStep | SynapticEvents | MacActivations | RowEvents | CompartmentConnect
)


def as_stimulus_tuple(stimulus: Stimulus | Sequence[Stimulus] | None) -> tuple[Stimulus, ...]:
    """Normalise a stimulus argument; an unknown kind is a ValueError naming it."""
    if stimulus is None:
        return ()
    items = (stimulus,) if not isinstance(stimulus, list | tuple) else tuple(stimulus)
    for item in items:
        if not isinstance(
            item,
            ResetRelease
            | CurrentStep
            | SynapticEvents
            | MacActivations
            | RowEvents
            | CompartmentConnect,
        ):
            raise ValueError(
                "stimulus must be ResetRelease, CurrentStep, SynapticEvents, MacActivations, "
                f"RowEvents or CompartmentConnect, got {type(item).__name__}"
            )
    return items
