"""Binary search over a parameter range, plain and noise-robust."""

from __future__ import annotations

import numpy as np

from calib.algorithms.base import (
    Algorithm,
    BestTracker,
    CodeSweep,
    Ranges,
    SearchOutcome,
    check_int_option,
    need_higher_code,
    parameter_names,
    single_range,
)
from calib.algorithms.prediction import finite_weights, weighted_least_squares
from calib.core.routine import Routine
from device_model.protocol import Device


class BinarySearch(Algorithm):
    """Halve every unit's code interval per measurement; keep the best candidate measured.

    With `steps` = 10 a full 0..1022 range narrows to a single code: each unit's last interval
    is bracketed by two measured codes, so on a noiseless monotonic curve the result is the code
    closest to the target. `repeats` measures every step that many times and averages.
    """

    name = "binary_search"

    def __init__(self, steps: int = 10, repeats: int = 1) -> None:
        self.steps = check_int_option("steps", steps, 1, 64)
        self.repeats = check_int_option("repeats", repeats, 1)

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        limits = single_range(type(self).__name__, parameter_range)
        self._target = np.asarray(target, dtype=float)
        self._inverted = inverted
        self._low = np.full(self._target.shape, limits.low, dtype=np.int64)
        self._high = np.full(self._target.shape, limits.high, dtype=np.int64)
        self._step = 0
        self._codes = (self._low + self._high) // 2
        self._best = BestTracker(self._target, self._codes)
        self._sweep = CodeSweep(self._codes[None], self.repeats)
        return self._codes

    def update(self, measured: np.ndarray) -> np.ndarray:
        self._sweep.record(np.asarray(measured, dtype=float))
        if not self._sweep.done:
            return self._codes
        mean = self._sweep.means[0]
        self._best.offer(self._codes, mean)
        searching = self._low <= self._high
        higher = need_higher_code(mean, self._target, self._inverted) & searching
        lower = ~higher & searching
        self._low = np.where(higher, self._codes + 1, self._low)
        self._high = np.where(lower, self._codes - 1, self._high)
        self._step += 1
        # A unit whose interval is empty re-proposes its best code; the driver skips the rewrite
        # when every unit has settled.
        self._codes = np.where(
            self._low <= self._high, (self._low + self._high) // 2, self._best.codes
        )
        self._sweep = CodeSweep(self._codes[None], self.repeats)
        return self._codes

    @property
    def done(self) -> bool:
        return self._step >= self.steps or not np.any(self._low <= self._high)

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        return self._best.codes.copy(), self._best.measured.copy()


class NoiseRobustBinarySearch(Algorithm):
    """Binary search, then a local scan around its result, choosing per unit from averages.

    The binary phase (each step measured `repeats` times) lands within a few codes of the answer
    even when noise flips its last decisions. The scan then measures every code within
    `scan_radius` of that result `scan_repeats` times. With `smooth`, a per-unit straight line
    fitted through all scan reads stands in for the raw averages (every read then informs every
    candidate, which suits a transfer curve that is locally linear). When that line crosses the
    target outside the window for some unit, a second window is centred on the crossing, up to
    `max_shifts` times, each code read `shift_repeats` times (default `scan_repeats`: fewer
    where reads are dear, since every unit reads the shifted window but few need it), and the
    line is refitted over all windows, every read weighed alike. Per unit the measured
    candidate whose (fitted) value is closest to the target wins.

    With `binary_reads`, the line also takes the binary phase's reads that lie within
    `2 * scan_radius` codes of the unit's first window centre (the last few steps land there),
    each weighed as one read: they are paid for already. The read the centre was chosen by is
    biased towards the target (it won for being closest), so this pays where the read noise
    is up to about half a code step (the line's residual excess over quantisation falls by a
    quarter) and costs beyond a code step.
    """

    name = "noise_robust_binary_search"

    def __init__(
        self,
        steps: int = 10,
        repeats: int = 1,
        scan_radius: int = 2,
        scan_repeats: int = 3,
        smooth: bool = True,
        max_shifts: int = 1,
        shift_repeats: int | None = None,
        binary_reads: bool = False,
    ) -> None:
        self._binary = BinarySearch(steps=steps, repeats=repeats)
        self.scan_radius = check_int_option("scan_radius", scan_radius, 1, 64)
        self.scan_repeats = check_int_option("scan_repeats", scan_repeats, 1)
        self.max_shifts = check_int_option("max_shifts", max_shifts, 0)
        self.shift_repeats = check_int_option(
            "shift_repeats", scan_repeats if shift_repeats is None else shift_repeats, 1
        )
        self.smooth = bool(smooth)
        self.binary_reads = bool(binary_reads)

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        self._range = single_range(type(self).__name__, parameter_range)
        self._target = np.asarray(target, dtype=float)
        self._scan: CodeSweep | None = None
        self._finished = False
        self._windows: list[CodeSweep] = []
        self._codes = np.zeros(self._target.shape, dtype=np.int64)
        self._measured = np.full(self._target.shape, np.nan)
        self._binary_reads: list[tuple[np.ndarray, np.ndarray]] = []
        nothing = np.empty((0, *self._target.shape))
        self._near_reads: tuple[np.ndarray, np.ndarray] = (nothing, nothing)
        self._applied = self._binary.start(parameter_range, target, inverted)
        return self._applied

    def update(self, measured: np.ndarray) -> np.ndarray:
        if self._scan is None:
            if self.binary_reads:
                self._binary_reads.append((self._applied, np.asarray(measured, dtype=float)))
            self._applied = self._binary.update(measured)
            if not self._binary.done:
                return self._applied
            centre = self._binary.best()[0]
            self._scan = self._window(centre)
            self._keep_binary_reads_near(centre)
            return self._scan.codes
        self._scan.record(np.asarray(measured, dtype=float))
        if not self._scan.done:
            return self._scan.codes
        self._windows.append(self._scan)
        crossing = self._choose()
        outside = np.abs(crossing - self._codes) > self.scan_radius
        if outside.any() and len(self._windows) <= self.max_shifts:
            centre = np.where(outside, np.rint(crossing), self._codes)
            self._scan = self._window(centre, self.shift_repeats)
            return self._scan.codes
        self._finished = True
        return self._codes

    def _window(self, centre: np.ndarray, repeats: int | None = None) -> CodeSweep:
        offsets = np.arange(2 * self.scan_radius + 1)
        # Near a range bound the window slides inwards so that it keeps its width.
        high_start = max(self._range.high - 2 * self.scan_radius, self._range.low)
        low = np.clip(centre.astype(np.int64) - self.scan_radius, self._range.low, high_start)
        return CodeSweep(
            self._range.clip(low[None, :] + offsets[:, None]), repeats or self.scan_repeats
        )

    def _keep_binary_reads_near(self, centre: np.ndarray) -> None:
        """The binary phase's reads as (codes, values), NaN where a read lies farther than
        2 * scan_radius from the unit's window centre."""
        if not self._binary_reads:
            return
        codes = np.stack([codes for codes, _ in self._binary_reads]).astype(float)
        values = np.stack([values for _, values in self._binary_reads])
        near = np.abs(codes - centre) <= 2 * self.scan_radius
        self._near_reads = (codes, np.where(near, values, np.nan))
        self._binary_reads = []

    def _choose(self) -> np.ndarray:
        """Pick each unit's best measured candidate; return where its line crosses the target."""
        codes = np.concatenate([w.candidates for w in self._windows])
        means = np.concatenate([w.means for w in self._windows])
        near_codes, near_values = self._near_reads
        slope, intercept = _line_fit(
            np.concatenate([codes, near_codes]),
            np.concatenate([means, near_values]),
            np.concatenate(
                [w.repeats * finite_weights(w.means) for w in self._windows]
                + [finite_weights(near_values)]
            ),
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            crossing = (self._target - intercept) / slope
        estimate = slope * codes + intercept if self.smooth else means
        estimate = np.where(np.isfinite(estimate), estimate, means)
        distance = np.abs(estimate - self._target)
        pick = np.argmin(np.where(np.isnan(distance), np.inf, distance), axis=0)
        units = np.arange(self._target.size)
        self._codes = codes[pick, units]
        self._measured = means[pick, units]
        # A flat or noisy line gives no usable crossing: stay where the unit is.
        return np.where(
            np.isfinite(crossing), np.clip(crossing, self._range.low, self._range.high), self._codes
        )

    @property
    def done(self) -> bool:
        return self._finished

    def best(self) -> tuple[np.ndarray, np.ndarray]:
        return self._codes.copy(), self._measured.copy()


def _line_fit(
    codes: np.ndarray, values: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit weighted least-squares line (slope, intercept) through (codes, values), each
    (n_points, n_units); `weights` default to one per finite read.

    Non-finite reads are left out; a unit without two distinct usable codes gets NaN.
    """
    codes = np.asarray(codes, dtype=float)
    centre = codes.mean(axis=0)
    design = np.stack([codes - centre, np.ones(codes.shape)], axis=-1)
    weights = finite_weights(values) if weights is None else weights
    slope, level = weighted_least_squares(design, values, weights).T
    return slope, level - slope * centre


class LocalScan(NoiseRobustBinarySearch):
    """The noise-robust search's scan alone, centred on each unit's present code.

    For a cell searched before whose observable has moved a little since (a quantity another
    step disturbed, a final pass in the configuration of use): the binary phase would spend
    ten writes to land where the unit already is. Every code within `scan_radius` of the
    present one is measured `scan_repeats` times; where the line through them crosses the
    target outside the window, a window is centred on the crossing, up to `max_shifts` times.
    """

    name = "local_scan"

    def __init__(self, scan_radius: int = 2, scan_repeats: int = 3, max_shifts: int = 2) -> None:
        super().__init__(scan_radius=scan_radius, scan_repeats=scan_repeats, max_shifts=max_shifts)
        self._present: np.ndarray | None = None

    def run(self, routine: Routine, device: Device, target: np.ndarray) -> SearchOutcome:
        """As `Algorithm.run`, from the codes the routine's cell holds now."""
        name = parameter_names(routine)
        if len(name) != 1:
            raise ValueError(f"{self.name} searches one cell; {routine.name} sets {name}")
        self._present = device.read_settings([name[0]])[name[0]]
        try:
            return super().run(routine, device, target)
        finally:
            self._present = None

    def start(self, parameter_range: Ranges, target: np.ndarray, inverted: bool) -> np.ndarray:
        if self._present is None:
            raise RuntimeError(f"{self.name} starts from the device's codes: call run")
        super().start(parameter_range, target, inverted)
        # with a scan under way the binary phase is skipped
        self._codes = np.broadcast_to(self._present, self._target.shape).astype(np.int64)
        self._scan = self._window(self._codes)
        return self._scan.codes
