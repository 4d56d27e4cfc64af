"""Stimuli a device run can play: small frozen dataclasses, validated at construction.

All times are hardware time in seconds, relative to the start of the run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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
        cls, start: float, interval: float, count: int, weight: int = MAX_SYNAPTIC_WEIGHT,
        inhibitory: bool = False,
    ) -> SynapticEvents:
        """`count` events every `interval` seconds from `start`."""
        _check_time("interval", interval, allow_zero=False)
        return cls(tuple(start + i * interval for i in range(count)), weight, inhibitory)


Stimulus = ResetRelease | CurrentStep | SynapticEvents


def as_stimulus_tuple(stimulus: Stimulus | Sequence[Stimulus] | None) -> tuple[Stimulus, ...]:
    """Normalise a stimulus argument; an unknown kind is a ValueError naming it."""
    if stimulus is None:
        return ()
    items = (stimulus,) if not isinstance(stimulus, list | tuple) else tuple(stimulus)
    for item in items:
        if not isinstance(item, ResetRelease | CurrentStep | SynapticEvents):
            raise ValueError(
                "stimulus must be ResetRelease, CurrentStep or SynapticEvents, "
                f"got {type(item).__name__}"
            )
    return items
