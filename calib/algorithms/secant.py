"""Secant search: few measurements for smooth monotonic observables, from a first guess.

Every unit starts at its guess; the first update moves each code by the miss over a prior
slope (`slope`: observable per code, for a linear cell) or in proportion to the miss (the
observable taken as proportional to a power of the code, as a time constant is to the inverse
of its bias), every later one along the secant through the unit's last two measurements. A
secant over fewer than MIN_SECANT_SPAN codes (read noise dominates it), of the wrong sign or
none falls back to the first step's rule. The per-unit arithmetic is a multiply, a divide and
a clip: what a SIMD vector unit does on all units at once. The candidate measured closest
to the target wins.
"""

from __future__ import annotations

import numpy as np

from calib.algorithms.base import Algorithm, BestTracker, Ranges, check_int_option, single_range

MAX_STEP_FRACTION = 0.5
"""A step moves a code by at most this fraction of the range (a wild secant is held back)."""
MIN_SECANT_SPAN = 3
"""Codes two measurements must lie apart for their secant to be trusted."""


class SecantSearch(Algorithm):
    """`steps` measurements per unit: a proportional step from `guess`, then secant steps.

    `exponent` relates the observable to the code for the proportional step, observable ~
    code ** exponent (-1 for a time constant set by a conductance bias); `slope` (observable
    per code) replaces the proportional step by a linear one.

    With a prior `slope`, `average` > 1 makes the final code the mean over the last `average`
    measurements of the code each one points at (code + miss / slope): read noise averages
    out where a single best read would keep it.
    """

    name = "secant_search"

    def __init__(
        self,
        guess: np.ndarray | int,
        steps: int = 6,
        exponent: float = 1.0,
        slope: float | None = None,
        average: int = 1,
    ) -> None:
        self.guess = np.asarray(guess)
        self.steps = check_int_option("steps", steps, 2, 64)
        if exponent == 0 or not np.isfinite(exponent):
            raise ValueError(f"exponent must be a finite non-zero number, got {exponent!r}")
        if slope is not None and (slope == 0 or not np.isfinite(slope)):
            raise ValueError(f"slope must be a finite non-zero number, got {slope!r}")
        self.exponent = float(exponent)
        self.slope = slope
        self.average = check_int_option("average", average, 1, self.steps)

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        self._range = single_range(type(self).__name__, parameter_range)
        self._target = np.asarray(target, dtype=float)
        self._codes = self._range.clip(np.broadcast_to(self.guess, self._target.shape))
        self._previous: tuple[np.ndarray, np.ndarray] | None = None
        self._best = BestTracker(self._target, self._codes)
        self._pointed: list[np.ndarray] = []
        self._step = 0
        return self._codes

    def update(self, measured: np.ndarray) -> np.ndarray:
        measured = np.asarray(measured, dtype=float)
        self._best.offer(self._codes, measured)
        codes = self._codes.astype(float)
        if self.slope is not None:
            self._pointed.append(codes + (self._target - measured) / self.slope)
        sign = np.sign(self.slope if self.slope is not None else self.exponent)
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.slope is not None:
                first = codes + (self._target - measured) / self.slope
            else:
                ratio = np.where(measured > 0, self._target / measured, np.nan)
                first = codes * ratio ** (1 / self.exponent)
            proposal = first
            if self._previous is not None:
                old_codes, old_measured = self._previous
                slope = (measured - old_measured) / (codes - old_codes)
                secant = codes + (self._target - measured) / slope
                usable = (
                    np.isfinite(secant)
                    & (np.sign(slope) == sign)
                    & (np.abs(codes - old_codes) >= MIN_SECANT_SPAN)
                )
                proposal = np.where(usable, secant, first)
        limit = MAX_STEP_FRACTION * self._range.size
        step = np.clip(np.nan_to_num(proposal - codes), -limit, limit)
        self._previous = (codes, measured)
        self._codes = self._range.clip(codes + step)
        self._step += 1
        return self._codes

    @property
    def done(self) -> bool:
        return self._step >= self.steps

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        if self.average > 1 and len(self._pointed) >= self.average:
            pointed = np.stack(self._pointed[-self.average :])
            mean = np.nanmean(pointed, axis=0)
            usable = np.isfinite(mean)
            codes = np.where(usable, self._range.clip(np.nan_to_num(mean)), self._best.codes)
            # Measured values for the averaged codes: the target, where the line reaches it.
            measured = np.where(
                usable & (codes == np.rint(mean)), self._target, self._best.measured
            )
            return codes.astype(np.int64), measured
        return self._best.codes.copy(), self._best.measured.copy()
