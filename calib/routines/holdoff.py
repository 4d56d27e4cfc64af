"""Reset holdoff: the end part of the refractory time in which the membrane is released from the
reset but the neuron cannot fire yet (calix: `calix/spiking/refractory_period.py`, targets
0..4 µs).

The holdoff counter is digital (`reset_holdoff`, 16 ns per code on the simulated chip), but the
reset switch opens a little late, by a per-neuron latency, so the free part of the holdoff is
shorter than the setting. It is measured from firing periods: a neuron firing under a leak far
above its threshold, with a slow rise from the reset (longer than any holdoff), fires
`holdoff` earlier with the holdoff than without it, because its membrane leaves the reset that
much sooner. The calibration sets the nominal code, measures what it gives, corrects each
neuron's code by the latency it showed, and repeats the correction once more (averaging the
two estimates). Each neuron's period is counted over several runs of one window (the window
opens at a random phase, so the mean count is unbiased).
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike

from calib.core.failures import Failure, FailureKind
from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from calib.core.routine import ParameterRange, Routine
from calib.core.targets import NeuronTarget
from calib.routines.refractory import refractory_time
from device_model.protocol import CAPMEM_MAX, CELLS, N_NEURONS, Device

HOLDOFF_STEP = 16e-9
"""Holdoff per code of `reset_holdoff` (the simulated chip's counter clock)."""
MAX_CODE = CELLS["reset_holdoff"].high
MEASUREMENT_SETTINGS = {
    "threshold_enable": 1,
    "reset_hold": 0,
    "v_leak": CAPMEM_MAX,
    "v_reset": 0,
    "i_bias_leak": 450,
    "leak_divide": 1,
    "leak_multiply": 0,
    "v_threshold": 280,
}
"""A neuron that fires regularly under its own leak with a rise from the reset of about 12 µs
(tau_mem about 12 µs, threshold well below the leak so that the comparator's jitter barely
moves the period): longer than any holdoff target, so the holdoff shortens the period by
itself."""
WINDOW = 2e-3
"""Counting window: about 140 periods of 14 µs, below the 8-bit counter for periods down to
8 µs."""
SHORT_WINDOW = 0.5e-3
"""Window for the neurons whose count overflowed in WINDOW."""
COUNT_RUNS = 16
"""Counting runs per period: a run's count is quantised to a spike and moved by the jitter; the
mean of sixteen resolves a 15 µs period to about 15 ns."""
MIN_SPIKES = 60
"""Spikes per window below which a period is too coarse to show a holdoff within its
tolerance (a neuron with a defective, very weak leak): not measured."""
RISE_MARGIN = 1e-6
"""A neuron whose rise from the reset exceeds its holdoff by less than this cannot show the
whole holdoff in its period: not measured."""
CORRECTIONS = 2
"""Rounds of latency correction after the nominal code."""


def _mean_period(device: Device) -> np.ndarray:
    """Mean firing period per neuron (NaN where too slow to resolve, or overflowing in both
    windows)."""
    period = np.full(N_NEURONS, np.nan)
    todo = np.ones(N_NEURONS, dtype=bool)
    for window in (WINDOW, SHORT_WINDOW):
        readouts = [device.count_spikes(window) for _ in range(COUNT_RUNS)]
        total = np.sum([r.counts for r in readouts], axis=0).astype(float)
        overflow = np.any([r.overflow for r in readouts], axis=0)
        counted = todo & ~overflow & (total >= MIN_SPIKES * COUNT_RUNS)
        period[counted] = COUNT_RUNS * window / total[counted]
        todo &= overflow
        if not todo.any():
            break
    return period


class HoldoffTime(Routine):
    """Free part of the holdoff per neuron: the firing period without holdoff less the period
    with the present `reset_holdoff` codes (NaN where the rise is too short to show it)."""

    name = "holdoff_time"
    parameter = "reset_holdoff"
    parameter_range = ParameterRange(0, MAX_CODE)

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return dict(MEASUREMENT_SETTINGS)

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        device.write(MEASUREMENT_SETTINGS)  # the leak's large step settles over two waits

    def measure(self, device: Device) -> np.ndarray:
        codes = device.read_settings(["reset_holdoff"])["reset_holdoff"]
        with_holdoff = _mean_period(device)
        device.write({"reset_holdoff": 0})
        try:
            without = _mean_period(device)
        finally:
            device.write({"reset_holdoff": codes})
        refractory = device.read_settings(["refractory_counter", "refractory_clock_scale"])
        hold = refractory_hold(refractory)
        shown = without - hold > codes * HOLDOFF_STEP + RISE_MARGIN
        return np.where(shown, without - with_holdoff, np.nan)


def refractory_hold(settings: dict[str, np.ndarray]) -> np.ndarray:
    """Refractory time (s) of the counter settings (the hold after a spike, reset pulse aside)."""
    return refractory_time(settings["refractory_counter"], settings["refractory_clock_scale"])


def holdoff_codes(goal: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Codes closest to `goal` (s) for a release `latency` (s) per neuron; 0 for no holdoff."""
    codes = np.clip(np.rint((goal + latency) / HOLDOFF_STEP), 1, MAX_CODE).astype(np.int64)
    return np.where(goal > 0, codes, 0)


# -- plan -----------------------------------------------------------------------------------


def _calibrate(context: CalibrationContext, plan: Plan) -> None:
    """Nominal codes, then per neuron the latency they showed taken off, twice."""
    goal = context.goals["holdoff_time"]
    routine = HoldoffTime()
    estimates = []
    codes = holdoff_codes(goal, np.zeros(N_NEURONS))
    for _ in range(CORRECTIONS):
        context.write({"reset_holdoff": codes})
        shown = context.measure(routine)
        estimate = codes * HOLDOFF_STEP - shown
        estimates.append(np.where(codes > 0, estimate, np.nan))
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # neurons never measured: no latency
            latency = np.nan_to_num(np.nanmean(estimates, axis=0))
        codes = holdoff_codes(goal, latency)
    context.write({"reset_holdoff": codes})
    context.state["holdoff_latency"] = latency


def _judge(context: CalibrationContext, achieved: dict[str, np.ndarray]) -> list[Failure]:
    """Within tolerance, or unreachable (the code at its top and the target beyond what it
    gives), or not measured (a neuron that cannot show its holdoff in its period)."""
    goal = context.goals["holdoff_time"]
    measured = achieved["holdoff_time"]
    spec = HOLDOFF_TIME.quantities[0]
    tolerance = spec.tolerance_for(goal)
    codes = context.codes["reset_holdoff"]
    latency = context.state.get("holdoff_latency", np.zeros(N_NEURONS))
    highest = MAX_CODE * HOLDOFF_STEP - latency
    failures = []
    for neuron in np.flatnonzero(~np.isfinite(measured)):
        failures.append(
            Failure(
                int(neuron),
                "holdoff_time",
                FailureKind.MEASUREMENT_FAILED,
                target=float(goal[neuron]),
                unit="s",
                note="not verified: the neuron's rise from the reset is too short to show the "
                "holdoff, or it fires too slowly to resolve it",
            )
        )
    miss = np.isfinite(measured) & (np.abs(measured - goal) > tolerance)
    unreachable = miss & (codes >= MAX_CODE) & (goal > highest)
    for neuron in np.flatnonzero(unreachable):
        failures.append(
            Failure(
                int(neuron),
                "holdoff_time",
                FailureKind.UNREACHABLE,
                target=float(goal[neuron]),
                unit="s",
                note=f"{goal[neuron] * 1e6:.3g} µs outside this neuron's range "
                f"0..{highest[neuron] * 1e6:.3g} µs",
            )
        )
    for neuron in np.flatnonzero(miss & ~unreachable):
        failures.append(
            Failure(
                int(neuron),
                "holdoff_time",
                FailureKind.OUT_OF_TOLERANCE,
                value=float(measured[neuron]),
                target=float(goal[neuron]),
                tolerance=float(tolerance[neuron]),
                unit="s",
            )
        )
    return failures


def check_holdoff_target(target: NeuronTarget) -> None:
    """The holdoff is the end part of the refractory time: never longer than it."""
    holdoff = np.broadcast_to(np.asarray(target.holdoff_time, float), (N_NEURONS,))
    refractory = np.broadcast_to(np.asarray(target.refractory_time, float), (N_NEURONS,))
    bad = np.flatnonzero(holdoff > refractory)
    if bad.size:
        n = int(bad[0])
        scalar = np.ndim(target.holdoff_time) == 0 and np.ndim(target.refractory_time) == 0
        where = "" if scalar else f" (neuron {n}, {bad.size} neurons in all)"
        raise ValueError(
            f"holdoff_time = {holdoff[n] * 1e6:g} µs is longer than refractory_time = "
            f"{refractory[n] * 1e6:g} µs{where}: the holdoff is the end of the refractory time"
        )


HOLDOFF_TIME = register_plan(
    Plan(
        name="holdoff_time",
        rank=12.5,
        quantities=(
            QuantitySpec(
                "holdoff_time",
                "s",
                0.0,
                4e-6,
                0.1e-6,
                relative=False,
                default=None,
                description="end of the refractory time in which the membrane is released from "
                "the reset but the neuron cannot fire",
                long_name="reset holdoff time",
            ),
        ),
        cells=("reset_holdoff",),
        routine=lambda context: HoldoffTime(),
        action=_calibrate,
        judge=_judge,
        after=("refractory_time", "tau_mem", "threshold"),
        applies=lambda target: target.holdoff_time is not None,
        extra={
            "check_before_run": check_holdoff_target,
            "judged_by_plan": True,
            "searches": (),
        },
    )
)
