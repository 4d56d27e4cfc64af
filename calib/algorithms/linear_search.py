"""Linear search: walk each unit's code from a start until the observable crosses the target."""

from __future__ import annotations

import numpy as np

from calib.algorithms.base import (
    Algorithm,
    BestTracker,
    Ranges,
    as_unit_array,
    check_int_option,
    need_higher_code,
    single_range,
)


class LinearSearch(Algorithm):
    """Step every unit's code by `step` towards its target until the observable crosses it.

    The direction follows from each unit's first measurement. After a crossing with `step` > 1
    the unit walks back one code at a time until it crosses again, so the result is the
    closest code measured on a monotonic curve. A unit that reaches a range bound without
    crossing stops there (and is reported by its bound). Suits a good start, such as the codes of
    an earlier calibration of the same chip: `initial` takes a scalar or one code per unit
    (default: the middle of the range).
    """

    name = "linear_search"

    def __init__(
        self, step: int = 8, initial: int | np.ndarray | None = None, max_steps: int | None = None
    ) -> None:
        self.step = check_int_option("step", step, 1, 512)
        self.initial = initial
        self.max_steps = None if max_steps is None else check_int_option("max_steps", max_steps, 1)

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        self._range = single_range(type(self).__name__, parameter_range)
        self._target = np.asarray(target, dtype=float)
        self._inverted = inverted
        n_units = self._target.size
        middle = (self._range.low + self._range.high) // 2
        initial = as_unit_array(
            "initial", middle if self.initial is None else self.initial, n_units
        )
        outside = (initial < self._range.low) | (initial > self._range.high)
        if outside.any():
            raise ValueError(
                f"initial code {initial[outside][0]:g} is outside the parameter range "
                f"{self._range.low}..{self._range.high}"
            )
        self._codes = initial.astype(np.int64)
        self._stride = np.full(n_units, self.step, dtype=np.int64)
        self._direction = np.zeros(n_units, dtype=np.int64)  # unknown until the first read
        self._active = np.ones(n_units, dtype=bool)
        self._best = BestTracker(self._target, self._codes)
        self._step_count = 0
        # A coarse walk across the whole range, then a fine walk back through one stride.
        self._step_limit = self.max_steps or (self._range.size // self.step + self.step + 2)
        return self._codes

    def update(self, measured: np.ndarray) -> np.ndarray:
        measured = np.asarray(measured, dtype=float)
        self._best.offer(self._codes, measured)
        wanted = np.where(need_higher_code(measured, self._target, self._inverted), 1, -1)
        wanted = np.where(np.isnan(measured), self._direction, wanted)  # no news: keep going
        first = self._direction == 0
        crossed = ~first & (wanted != self._direction) & self._active
        fine = self._stride == 1
        self._active &= ~(crossed & fine)
        # A coarse crossing turns the unit round at single-code steps.
        self._stride = np.where(crossed, 1, self._stride)
        self._direction = np.where(first | crossed, wanted, self._direction)
        proposed = np.clip(
            self._codes + self._direction * self._stride, self._range.low, self._range.high
        )
        stuck = proposed == self._codes  # at a bound and still pushing outwards
        self._active &= ~stuck
        self._codes = np.where(self._active, proposed, self._best.codes)
        self._step_count += 1
        return self._codes

    @property
    def done(self) -> bool:
        return not self._active.any() or self._step_count >= self._step_limit

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        return self._best.codes.copy(), self._best.measured.copy()

    def notes(self) -> dict[int, str]:
        unfinished = np.flatnonzero(self._active)
        return {int(unit): f"no crossing within {self._step_count} steps" for unit in unfinished}
