"""Experiment-time calibration: reuse a fresh stored result when the chip confirms it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from calib.core.results import NeuronResult, ResultsStoreLike
from calib.core.targets import NeuronTarget
from calib.sequences.calibrate import calibrate
from calib.sequences.check import check_result
from device_model.protocol import Device

DEFAULT_MAX_AGE = timedelta(hours=24)


def _age(result: NeuronResult, now: datetime) -> timedelta:
    return now - datetime.fromisoformat(result.provenance.created)


def ensure(
    device: Device,
    target: NeuronTarget | None = None,
    store: ResultsStoreLike | None = None,
    *,
    max_age: timedelta = DEFAULT_MAX_AGE,
    check: bool = True,
    **calibrate_options: Any,
) -> NeuronResult:
    """The newest stored result for this chip and target, applied to `device`, when it is younger
    than `max_age` and a quick check on the device confirms it; otherwise a new calibration,
    stored. `result.origin` says which path was taken and why."""
    if store is None:
        raise ValueError("store is required: ensure() looks up and saves results in it")
    if not isinstance(max_age, timedelta) or max_age <= timedelta(0):
        raise ValueError(f"max_age must be a positive timedelta, got {max_age!r}")
    target = NeuronTarget() if target is None else target
    stored = store.latest(device.chip_id, target)
    why: str
    if stored is None:
        why = "no stored result for this target"
    elif (age := _age(stored, datetime.now(UTC))) > max_age:
        why = f"stored result is {age.total_seconds() / 3600:.1f} h old (max {max_age})"
    elif not check:
        stored.apply(device)
        stored.origin = "stored (not checked)"
        return stored
    else:
        report = check_result(device, stored)
        if report.holds:
            stored.origin = f"stored (quick check held, {report.runs} runs)"
            return stored
        why = f"stored result drifted: {', '.join(report.stale)}"
    result = calibrate(device, target, store=store, **calibrate_options)
    result.origin = f"calibrated ({why})"
    return result
