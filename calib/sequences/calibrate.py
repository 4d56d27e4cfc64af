"""The functional API: calibrate a whole chip to a target, or recalibrate what went stale."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

import numpy as np

from calib.algorithms.base import Algorithm
from calib.core.plans import EMBEDDED, HOST
from calib.core.results import NeuronResult, Provenance, ResultsStoreLike
from calib.core.targets import NeuronTarget
from calib.sequences.lif import NeuronCalibration, searched_routines
from calib.sequences.session import CalibrationOptions
from device_model.protocol import N_NEURONS, Device

ProgressCallback = Callable[[str, int, int], None]
"""progress(step name, step index starting at 0, number of steps)."""

__all__ = ["CalibrationOptions", "ProgressCallback", "calibrate", "recalibrate"]


def _versions(device: Device) -> dict[str, str]:
    versions = {"numpy": np.__version__, "device": type(device).__name__}
    try:
        versions["analog-calib"] = metadata.version("analog-calib")
    except metadata.PackageNotFoundError:
        versions["analog-calib"] = "unknown"
    return versions


def _algorithms(algorithm: Algorithm | Mapping[str, Algorithm] | None) -> dict[str, Algorithm]:
    """One algorithm for every LIF routine, or a mapping routine name -> algorithm (the AdEx
    parts, which need multi-parameter searches, are named there too)."""
    if isinstance(algorithm, Algorithm):
        return dict.fromkeys(searched_routines(), algorithm)
    chosen = dict(algorithm or {})
    known = searched_routines(lif_only_plans=False)
    unknown = set(chosen) - set(known)
    if unknown:
        raise ValueError(
            f"algorithm given for unknown routines {sorted(unknown)}; known: {', '.join(known)}"
        )
    return chosen


def _check_device(device: Device) -> None:
    if device.n_neurons != N_NEURONS:
        raise ValueError(
            f"device {device.chip_id!r} has {device.n_neurons} neurons, "
            f"calibration expects {N_NEURONS}"
        )


def _run(
    device: Device,
    calibration: NeuronCalibration,
    steps: list[tuple[str, Callable[[], None]]],
    progress: ProgressCallback | None,
    provenance_extra: Mapping[str, Any] | None,
) -> NeuronResult:
    """Run `steps`, verify, judge, and wrap everything up as a NeuronResult."""
    started, stats_before = time.perf_counter(), device.stats.copy()
    costs: dict[str, dict[str, float]] = {}
    session = calibration.session

    def timed(name: str, index: int, action: Callable[[], Any]) -> Any:
        if progress is not None:
            progress(name, index, len(steps) + 1)
        session.device.step = name
        host, stats = time.perf_counter(), device.stats.copy()
        value = action()
        spent = Provenance.stats_dict(device.stats - stats)
        spent["host_time"] = time.perf_counter() - host
        cost = costs.setdefault(name, dict.fromkeys(spent, 0.0))
        for key, amount in spent.items():
            cost[key] += amount
        return value

    for index, (name, step) in enumerate(steps):
        timed(name, index, step)
    achieved = timed("verify", len(steps), calibration.verify)
    success, failures = calibration.judge(achieved)
    for plan in calibration.plans:
        # What belongs to the calibrated configuration but would disturb the verification of
        # the other quantities (e.g. closed compartment connections) is configured last.
        finish = plan.extra.get("configure_after_verify")
        if finish is not None:
            finish(session)
    used: dict[str, list[str]] = {}
    for name, kind in sorted(session.used.items()):
        used.setdefault(kind, []).append(name)
    provenance = Provenance(
        chip_id=device.chip_id,
        created=datetime.now(UTC).isoformat(),
        duration=time.perf_counter() - started,
        versions=_versions(device),
        device_stats=Provenance.stats_dict(device.stats - stats_before),
        algorithm="; ".join(f"{kind} ({', '.join(names)})" for kind, names in sorted(used.items())),
        extra=dict(provenance_extra or {}),
        steps=costs,
        retries=dict(session.device.retries),
    )
    return NeuronResult(
        target=calibration.target,
        codes=device.read_settings(),
        achieved=achieved,
        success=success,
        failure_records=failures,
        provenance=provenance,
        before=session.before,
        models=session.models,
        notes=session.notes,
    )


def calibrate(
    device: Device,
    target: NeuronTarget | None = None,
    *,
    store: ResultsStoreLike | None = None,
    algorithm: Algorithm | Mapping[str, Algorithm] | None = None,
    progress: ProgressCallback | None = None,
    options: CalibrationOptions | None = None,
    provenance_extra: Mapping[str, Any] | None = None,
    mode: str = HOST,
) -> NeuronResult:
    """Calibrate every neuron of `device` to `target` (default: NeuronTarget()).

    `algorithm` replaces the default search for every routine (one Algorithm) or for the
    routines named in a mapping. With `store`, the result is saved there as well. `mode`
    "embedded" runs the plans the chip's embedded processor can drive alone (CADC and spike
    counters only, docs/embedded.md) inside the device's `embedded_program()` where it has
    one; the provenance's `extra["mode"]` records the mode.
    """
    target = NeuronTarget() if target is None else target
    if not isinstance(target, NeuronTarget):
        raise ValueError(f"target must be a NeuronTarget, got {type(target).__name__}")
    _check_device(device)
    calibration = NeuronCalibration(device, target, _algorithms(algorithm), options, mode)
    extra = {**(provenance_extra or {}), "mode": mode}
    program = getattr(device, "embedded_program", None) if mode == EMBEDDED else None
    with program() if program is not None else nullcontext():
        result = _run(device, calibration, calibration.steps, progress, extra)
    if store is not None:
        store.save(result)
    return result


def _open_while_calibrated(calibration: NeuronCalibration) -> None:
    """Open what a plan configures only after the verification (closed compartment
    connections) when a previous result applied it; the plan closes it again at the end."""
    cells = [
        cell
        for plan in calibration.plans
        if "configure_after_verify" in plan.extra
        for cell in plan.extra.get("open_while_checked", ())
    ]
    device = calibration.session.device
    closed = [name for name, codes in device.read_settings(cells).items() if codes.any()]
    if closed:
        device.write(dict.fromkeys(closed, 0))


def recalibrate(
    device: Device,
    previous: NeuronResult,
    quantities: Iterable[str],
    *,
    store: ResultsStoreLike | None = None,
    algorithm: Algorithm | Mapping[str, Algorithm] | None = None,
    progress: ProgressCallback | None = None,
    options: CalibrationOptions | None = None,
    provenance_extra: Mapping[str, Any] | None = None,
) -> NeuronResult:
    """Start from `previous` on its chip and recalibrate only `quantities` (and what they
    disturb); every quantity is verified again. The CADC calibration is kept."""
    if device.chip_id != previous.chip_id:
        raise ValueError(
            f"previous result is for chip {previous.chip_id!r}, device is {device.chip_id!r}"
        )
    _check_device(device)
    quantities = list(quantities)
    calibration = NeuronCalibration(device, previous.target, _algorithms(algorithm), options)
    steps = calibration.partial_steps(quantities)
    previous.apply(calibration.session.device)
    _open_while_calibrated(calibration)
    calibration.session.codes = calibration.session.device.read_settings()
    for name, goal in previous.goals().items():  # matched quantities keep their chosen goal
        calibration.session.goals.setdefault(name, goal)
    calibration.session.before = dict(previous.before)
    extra = {"recalibrated": sorted(quantities), **(provenance_extra or {})}
    result = _run(device, calibration, steps, progress, extra)
    if store is not None:
        store.save(result)
    return result
