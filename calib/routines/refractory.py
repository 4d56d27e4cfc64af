"""Refractory time: digital (counter x clock period), computed exactly, then verified.

t_ref = counter * 2**(scale + 1) / 250 MHz. The finest clock scale whose counter range covers the
target is chosen per neuron. The verification measures each neuron's firing period with the
target setting and with a zero counter: their difference is t_ref. Both are measured with the
leak pulled far above the threshold, the strongest leak bias (a fast membrane, so that the
comparator's run-to-run jitter barely moves the period) and the reset at its lowest code (so
that the reset clamp, which also feels the leak, holds the membrane below the threshold). Each
neuron's period is counted over a window of about TARGET_SPIKES periods; neurons that need
different windows are counted in separate runs. A neuron whose leak at its top barely clears its
threshold (a high threshold target on a weak leak) rises too slowly for the difference to stand
out of its jitter, and one whose threshold lies just above its reset fires faster than the
counter counts: each is counted again with the threshold moved to a middle code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from calib.core.failures import Failure, FailureKind
from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from device_model.protocol import CAPMEM_MAX, CELLS, SPIKE_COUNTER_MAX, Device

CLOCK_FREQUENCY = 250e6
"""Base clock of the refractory counters (BrainScaleS-2)."""
MAX_COUNTER = CELLS["refractory_counter"].high
MAX_SCALE = CELLS["refractory_clock_scale"].high
VERIFY_RUNS = 4
"""Counting runs per window: the window opens at a random phase of the cycle, so the mean
count over the runs is unbiased."""
PROBE_DURATIONS = (10e-6, 300e-6)
"""Windows of the first count without refractory time: the shorter one for fast neurons (the
longer would overflow the counter), the longer for slow ones."""
TARGET_SPIKES = 200
"""Spikes per counting window: enough resolution without reaching the 8-bit counter limit."""
WINDOW_STEP = 2.0
"""Windows are rounded to powers of this factor, so that few runs serve all neurons."""
SHORTEST_WINDOW = 1e-6
LONGEST_WINDOW = 50e-3
SLOW_PERIOD_FACTOR = 8.0
"""A period without refractory time this many times the chip's median marks a slow rise (a
leak barely above the threshold), counted again with the threshold moved (VERIFY_THRESHOLD)."""
VERIFY_THRESHOLD = 300
"""The threshold (code) a second count moves to: about a third of the way up the leak's
range, far below its top, so the rise is fast and steady, and above the level the reset clamp
(at its lowest code, pulled up by the leak) holds a neuron at, where a threshold just above
the reset (a low potentials target) had it fire faster than the counter counts."""
OVERFLOW_RETRIES = 2
"""A neuron whose count overflowed is counted again in a window this many times shorter, up
to this many times."""
VERIFY_SETTINGS = {
    "threshold_enable": 1,
    "reset_hold": 0,
    "v_leak": CAPMEM_MAX,
    "i_bias_leak": CAPMEM_MAX,
    "leak_divide": 0,
    "leak_multiply": 0,
    "v_reset": 0,
    "reset_holdoff": 0,  # a holdoff would cut the rise into the period (calib/routines/holdoff.py)
}


def refractory_time(counter: ArrayLike, scale: ArrayLike) -> np.ndarray:
    return np.asarray(counter) * 2.0 ** (np.asarray(scale) + 1) / CLOCK_FREQUENCY


def refractory_settings(target: ArrayLike) -> dict[str, np.ndarray]:
    """Counter and clock scale per neuron closest to `target` seconds."""
    target = np.asarray(target, dtype=float)
    periods = 2.0 ** (np.arange(MAX_SCALE + 1) + 1) / CLOCK_FREQUENCY
    # finest scale whose counter range reaches the target
    needed = target[:, None] / periods[None, :]
    scale = np.argmax(needed <= MAX_COUNTER, axis=1)
    counter = np.clip(np.rint(target / periods[scale]), 1, MAX_COUNTER)
    return {
        "refractory_counter": counter.astype(np.int64),
        "refractory_clock_scale": scale.astype(np.int64),
    }


@dataclass(frozen=True)
class RefractoryCheck:
    """The verification's outcome per neuron."""

    measured: np.ndarray
    """Measured refractory time (s); NaN where it could not be measured."""
    why: np.ndarray
    """Why not, per neuron (empty where measured)."""


def _count(device: Device, window: float) -> tuple[np.ndarray, np.ndarray]:
    """(total spikes over VERIFY_RUNS runs, any run overflowed) per neuron."""
    readouts = [device.count_spikes(window) for _ in range(VERIFY_RUNS)]
    total = np.sum([r.counts for r in readouts], axis=0).astype(float)
    overflow = np.any([r.overflow for r in readouts], axis=0)
    return total, overflow


def _window(period: np.ndarray) -> np.ndarray:
    """A window of about TARGET_SPIKES periods, rounded to a power of WINDOW_STEP."""
    wanted = np.clip(TARGET_SPIKES * period, SHORTEST_WINDOW, LONGEST_WINDOW)
    return WINDOW_STEP ** np.round(np.log(wanted) / np.log(WINDOW_STEP))


def _periods(
    device: Device, expected: np.ndarray, wanted: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mean firing period, no spikes at all) of the `wanted` neurons, each counted in a
    window fitted to its `expected` period; NaN where not measured."""
    period = np.full(expected.shape, np.nan)
    silent = np.zeros(expected.shape, dtype=bool)
    window = _window(expected)
    todo = wanted.copy()
    for _ in range(OVERFLOW_RETRIES + 1):
        overflowed = np.zeros_like(todo)
        for length in np.unique(window[todo]):
            members = todo & (window == length)
            total, overflow = _count(device, float(length))
            counted = members & ~overflow & (total > 0)
            period[counted] = VERIFY_RUNS * length / total[counted]
            silent |= members & ~overflow & (total == 0)
            overflowed |= members & overflow
        todo = overflowed & (window / WINDOW_STEP**2 >= SHORTEST_WINDOW)
        window = np.where(todo, window / WINDOW_STEP**2, window)
        if not todo.any():
            break
    return period, silent


def _probe(device: Device) -> np.ndarray:
    """Rough firing period per neuron without refractory time (NaN: no spikes counted)."""
    short, long = PROBE_DURATIONS
    total_short, overflow_short = _count(device, short)
    total_long, overflow_long = _count(device, long)
    from_long = ~overflow_long & (total_long > 0)
    from_short = ~overflow_short & (total_short > 0)
    period = np.where(from_long, VERIFY_RUNS * long / np.maximum(total_long, 1), np.nan)
    period = np.where(
        ~from_long & from_short, VERIFY_RUNS * short / np.maximum(total_short, 1), period
    )
    # faster than the counter in the short window: an upper bound, the count's window shrinks
    return np.where(overflow_short, short / SPIKE_COUNTER_MAX, period)


def measure_refractory_time(device: Device, settings: dict[str, np.ndarray]) -> RefractoryCheck:
    """Measured refractory time per neuron with `settings` (counter and clock scale), and why
    a neuron could not be measured.

    A neuron whose leak at its top barely clears the threshold rises slowly: its period is
    tens of times the others', its jitter swamps the difference, and one whose leak stays
    below the threshold does not fire at all; one whose threshold lies just above its reset
    fires faster than the counter counts. Those are counted again with the threshold moved to
    VERIFY_THRESHOLD (the counter is digital: the threshold only has to be crossed)."""
    first, base = _measure(device, settings, None)
    slow = np.isfinite(base) & (base > SLOW_PERIOD_FACTOR * np.nanmedian(base))
    again = slow | ~np.isfinite(first.measured)
    if not again.any():
        return first
    threshold = device.read_settings(["v_threshold"])["v_threshold"]
    moved = np.where(again, VERIFY_THRESHOLD, threshold)
    second, _ = _measure(device, settings, moved, again)
    better = again & np.isfinite(second.measured)
    return RefractoryCheck(
        measured=np.where(better, second.measured, first.measured),
        why=np.where(better, second.why, first.why),
    )


def _measure(
    device: Device,
    settings: dict[str, np.ndarray],
    threshold: np.ndarray | None,
    neurons: np.ndarray | None = None,
) -> tuple[RefractoryCheck, np.ndarray]:
    """The check with `threshold` (v_threshold codes) where given, and the period without
    refractory time (s, NaN where not measured); the periods are counted in the windows the
    `neurons` (a mask, default all) need, and read for them alone."""
    names = ["refractory_counter", "refractory_clock_scale"]
    verify = dict(VERIFY_SETTINGS)
    if threshold is not None:
        verify["v_threshold"] = threshold
    saved = device.read_settings([*verify, *names])
    expected = refractory_time(settings["refractory_counter"], settings["refractory_clock_scale"])
    n = expected.shape[0]
    why = np.full(n, "", dtype=object)
    chosen = np.ones(n, dtype=bool) if neurons is None else np.asarray(neurons, dtype=bool)
    try:
        device.write({**verify, "refractory_counter": 0, "refractory_clock_scale": 0})
        device.write(verify)  # the leak's large step settles over two waits
        rise = _probe(device)
        fires = np.isfinite(rise)
        why[~fires] = (
            f"no spike in {PROBE_DURATIONS[-1] * 1e6:g} µs with the leak pulled "
            "above the threshold (the neuron does not fire)"
        )
        base, silent_base = _periods(device, rise, fires & chosen)
        device.write(settings)
        period, silent = _periods(device, base + expected, np.isfinite(base) & chosen)
    finally:
        device.write(saved)
        device.write(saved)
    missing = fires & chosen & ~np.isfinite(base)
    why[missing & silent_base] = "stopped firing when counted without refractory time"
    why[missing & ~silent_base] = (
        f"fires faster than the {SPIKE_COUNTER_MAX}-spike counter can count in the shortest window"
    )
    lost = fires & np.isfinite(base) & ~np.isfinite(period)
    why[lost & silent] = "does not fire with its refractory setting"
    why[lost & ~silent] = "fires faster with its refractory setting than the counter can count"
    return RefractoryCheck(measured=period - base, why=why), base


# -- plan -----------------------------------------------------------------------------------

VERIFY_TOLERANCE = 0.1
"""Relative disagreement between the digital setting and its measurement flagged as a fault."""
VERIFY_FLOOR = 60e-9
"""... or this absolute one (s), whichever is larger: the measurement's resolution."""


def _set_refractory(context: CalibrationContext, plan: Plan) -> None:
    context.write(refractory_settings(context.goals["refractory_time"]))


def _verify(context: CalibrationContext) -> dict[str, np.ndarray]:
    """What a firing neuron shows (NaN where it cannot be measured); the time the settings
    give is kept beside it (models['refractory_time']['setting'])."""
    settings = context.device.read_settings(["refractory_counter", "refractory_clock_scale"])
    check = measure_refractory_time(context.device, settings)
    context.state["refractory_check"] = check
    context.models.setdefault("refractory_time", {})["setting"] = refractory_time(
        *settings.values()
    )
    return {"refractory_time": check.measured}


def _judge(context: CalibrationContext, achieved: dict[str, np.ndarray]) -> list[Failure]:
    """The setting within the quantity's tolerance of the target (the digital part), and the
    measured time within the measurement's resolution of the setting (the neuron obeys it)."""
    check = context.state.get("refractory_check")
    if check is None:
        return []
    expected = context.models["refractory_time"]["setting"]
    goal = context.goals["refractory_time"]
    failures = []
    spec = REFRACTORY_TIME.quantities[0]
    tolerance = spec.tolerance_for(goal)
    for neuron in np.flatnonzero(np.abs(expected - goal) > tolerance):
        failures.append(
            Failure(
                int(neuron),
                "refractory_time",
                FailureKind.UNREACHABLE,
                target=float(goal[neuron]),
                unit="s",
                note=f"{goal[neuron] * 1e6:.3g} µs is between the counter's steps (nearest "
                f"{expected[neuron] * 1e6:.3g} µs)",
            )
        )
    measured = check.measured
    disagrees = ~(
        np.abs(measured - expected) <= np.maximum(VERIFY_TOLERANCE * expected, VERIFY_FLOOR)
    )
    for neuron in np.flatnonzero(disagrees):
        value = float(measured[neuron])
        if np.isfinite(value):
            failures.append(
                Failure(
                    int(neuron),
                    "refractory_time",
                    FailureKind.OUT_OF_TOLERANCE,
                    value=value,
                    target=float(expected[neuron]),
                    tolerance=float(max(VERIFY_TOLERANCE * expected[neuron], VERIFY_FLOOR)),
                    unit="s",
                    note="measured against the setting",
                )
            )
        else:
            failures.append(
                Failure(
                    int(neuron),
                    "refractory_time",
                    FailureKind.MEASUREMENT_FAILED,
                    target=float(expected[neuron]),
                    unit="s",
                    note=f"not verified: {check.why[neuron]}",
                )
            )
    return failures


REFRACTORY_TIME = register_plan(
    Plan(
        name="refractory_time",
        rank=12,
        quantities=(
            QuantitySpec(
                "refractory_time",
                "s",
                40e-9,
                32e-6,
                0.02,
                relative=True,
                default=2e-6,
                description="time a neuron is held at reset after a spike (digital counter)",
                long_name="refractory time",
            ),
        ),
        cells=("refractory_counter", "refractory_clock_scale"),
        action=_set_refractory,
        verify=_verify,
        judge=_judge,
        # measured against the setting at the measurement's resolution, not the tolerance
        extra={"judged_by_plan": True},
    )
)
