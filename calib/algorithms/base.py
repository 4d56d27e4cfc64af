"""The algorithm interface and the one driver loop every algorithm shares.

An algorithm proposes codes and consumes observations (ask/tell); it never owns the device.
`Algorithm.run` is the short, common loop: apply, measure, update, until done.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from calib.routine import ParameterRange, Routine
from device_model.protocol import Device, TransientRunError

MAX_RUN_RETRIES = 3
"""A transient device failure is retried this many times before it is raised."""


class RoutineFailed(RuntimeError):
    """A routine could not complete on the device (names the routine)."""


@dataclass(frozen=True)
class SearchOutcome:
    """The codes an algorithm settled on and the observable it last measured with them."""

    codes: np.ndarray
    measured: np.ndarray
    steps: int


def with_retries(routine: Routine, action, *args):
    """Call `action(*args)`, retrying transient device failures a bounded number of times."""
    for attempt in range(MAX_RUN_RETRIES + 1):
        try:
            return action(*args)
        except TransientRunError as error:
            if attempt == MAX_RUN_RETRIES:
                raise RoutineFailed(
                    f"routine {routine.name!r}: device run failed {MAX_RUN_RETRIES + 1} times: "
                    f"{error}"
                ) from error
    raise AssertionError("unreachable")


class Algorithm(ABC):
    """Searches codes so that a routine's observable reaches a per-unit target.

    Subclasses implement `start`, `update`, `done` and `best`; they keep no state from one
    `start` to the next, so an instance is reusable.
    """

    name: str = "algorithm"

    @abstractmethod
    def start(
        self, parameter_range: ParameterRange, target: np.ndarray, inverted: bool
    ) -> np.ndarray:
        """Reset and return the first codes to try (one per unit of `target`)."""

    @abstractmethod
    def update(self, measured: np.ndarray) -> np.ndarray:
        """Take the observable measured with the last codes; return the next codes."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the search has finished."""

    @abstractmethod
    def best(self) -> tuple[np.ndarray, np.ndarray]:
        """(codes, measured): the best codes found and the observable measured with them."""

    def run(self, routine: Routine, device: Device, target: np.ndarray) -> SearchOutcome:
        """Drive `routine` on `device` to `target`: the loop shared by every algorithm."""
        target = np.asarray(target, dtype=float)
        with_retries(routine, routine.prelude, device)
        try:
            codes = self.start(routine.parameter_range, target, routine.inverted)
            applied: np.ndarray | None = None
            steps = 0
            while not self.done:
                if applied is None or not np.array_equal(codes, applied):
                    with_retries(routine, routine.apply, device, codes)
                    applied = codes.copy()
                codes = self.update(with_retries(routine, routine.measure, device))
                steps += 1
            best_codes, measured = self.best()
            with_retries(routine, routine.apply, device, best_codes)
        finally:
            routine.postlude(device)
        return SearchOutcome(best_codes, measured, steps)
