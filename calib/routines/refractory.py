"""Refractory time: digital (counter x clock period), computed exactly, then verified.

t_ref = counter * 2**(scale + 1) / 250 MHz. The finest clock scale whose counter range covers the
target is chosen per neuron. The verification measures each neuron's firing period with the
target setting and with a zero counter (leak over threshold): their difference is t_ref.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.failures import Failure, FailureKind
from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from device_model.protocol import CAPMEM_MAX, CELLS, Device

CLOCK_FREQUENCY = 250e6
"""Base clock of the refractory counters (BrainScaleS-2)."""
MAX_COUNTER = CELLS["refractory_counter"].high
MAX_SCALE = CELLS["refractory_clock_scale"].high
VERIFY_RUNS = 4
PROBE_DURATION = 100e-6
TARGET_SPIKES = 200
"""Spikes per verification run: enough resolution without reaching the 8-bit counter limit."""


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


def _mean_period(device: Device, duration: float) -> np.ndarray:
    """Mean inter-spike period per neuron; NaN where it did not fire or the counter overflowed."""
    readouts = [device.count_spikes(duration) for _ in range(VERIFY_RUNS)]
    total = np.sum([r.counts for r in readouts], axis=0).astype(float)
    overflow = np.any([r.overflow for r in readouts], axis=0)
    valid = (total > 0) & ~overflow
    return np.where(valid, VERIFY_RUNS * duration / np.maximum(total, 1), np.nan)


def measure_refractory_time(device: Device, settings: dict[str, np.ndarray]) -> np.ndarray:
    """Measured refractory time per neuron with `settings` (NaN where a neuron does not fire)."""
    saved = device.read_settings(["threshold_enable", "reset_hold", "v_leak", *settings])
    expected = refractory_time(settings["refractory_counter"], settings["refractory_clock_scale"])
    try:
        device.write({"threshold_enable": 1, "reset_hold": 0, "v_leak": CAPMEM_MAX,
                      "refractory_counter": 0, "refractory_clock_scale": 0})
        probe = float(np.nanmedian(_mean_period(device, PROBE_DURATION)))
        base_period = _mean_period(device, TARGET_SPIKES * probe)
        device.write(settings)
        period = _mean_period(device, TARGET_SPIKES * (probe + float(np.max(expected))))
    finally:
        device.write(saved)
    return period - base_period


# -- plan -----------------------------------------------------------------------------------

VERIFY_TOLERANCE = 0.1
"""Relative disagreement between the digital setting and its measurement flagged as a fault."""
VERIFY_FLOOR = 60e-9
"""... or this absolute one (s), whichever is larger: the measurement's resolution."""


def _set_refractory(context: CalibrationContext, plan: Plan) -> None:
    context.write(refractory_settings(context.goals["refractory_time"]))


def _verify(context: CalibrationContext) -> dict[str, np.ndarray]:
    """The time the settings give, and (for the judgement) what a firing neuron shows."""
    settings = context.device.read_settings(["refractory_counter", "refractory_clock_scale"])
    context.state["refractory_measured"] = measure_refractory_time(context.device, settings)
    return {"refractory_time": refractory_time(*settings.values())}


def _judge(context: CalibrationContext, achieved: dict[str, np.ndarray]) -> list[Failure]:
    expected = achieved.get("refractory_time")
    measured = context.state.get("refractory_measured")
    if expected is None or measured is None:
        return []
    disagrees = ~(np.abs(measured - expected) <= np.maximum(VERIFY_TOLERANCE * expected,
                                                            VERIFY_FLOOR))
    failures = []
    for neuron in np.flatnonzero(disagrees):
        value = float(measured[neuron])
        if np.isfinite(value):
            failures.append(Failure(
                int(neuron), "refractory_time", FailureKind.OUT_OF_TOLERANCE, value=value,
                target=float(expected[neuron]),
                tolerance=float(max(VERIFY_TOLERANCE * expected[neuron], VERIFY_FLOOR)),
                unit="s", note="measured against the setting"))
        else:
            failures.append(Failure(
                int(neuron), "refractory_time", FailureKind.MEASUREMENT_FAILED,
                target=float(expected[neuron]), unit="s",
                note="no firing period to measure it from"))
    return failures


REFRACTORY_TIME = register_plan(Plan(
    name="refractory_time",
    rank=12,
    quantities=(QuantitySpec(
        "refractory_time", "s", 40e-9, 32e-6, 0.02, relative=True, default=2e-6,
        description="time a neuron is held at reset after a spike (digital counter)",
        long_name="refractory time"),),
    cells=("refractory_counter", "refractory_clock_scale"),
    action=_set_refractory,
    verify=_verify,
    judge=_judge,
))
