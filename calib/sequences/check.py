"""Quick check of a calibration result on its chip: a few device runs, no search.

The potentials are read on the CADC (one run each, all neurons) and tau_mem is fitted on a small
sample of neurons; a quantity is stale when its calibrated neurons moved away from their target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from calib.algorithms.base import measure_once
from calib.core.checks import CheckRecord, QuantityDrift
from calib.core.plans import PLANS
from calib.core.results import NeuronResult
from calib.core.retry import retrying
from calib.routines.membrane import (
    RELEASE_TIME,
    SHORTEST_FRACTION,
    bin_factor,
    decay_reset,
)
from calib.routines.neuron_potentials import LeakPotential, ResetPotential, ThresholdPotential
from device_model.protocol import Device
from device_model.stimuli import ResetRelease
from observables import decay_time_constants
from observables.traces import bin_trace

CHECK_SAMPLES = 100
TAU_SAMPLE_NEURONS = 32
"""Neurons whose tau_mem is fitted in a check (16 MADC runs)."""
MAX_OUT_OF_TOLERANCE = 0.05
"""A quantity is stale when more than this fraction of its calibrated neurons miss the target."""
MAX_MEDIAN_SHIFT = 0.5
"""... or when their median moved by more than this fraction of the tolerance."""


@dataclass(frozen=True)
class QuantityCheck:
    name: str
    checked_neurons: int
    out_of_tolerance: float
    """Fraction of checked, previously calibrated neurons now outside the tolerance."""
    median_shift: float
    """Median of (now - stored achieved value), in the quantity's unit."""
    tolerance: float
    """Median tolerance, in the quantity's unit."""
    spread: float = float("nan")
    """Standard deviation of the checked neurons' values now, in the quantity's unit."""
    measured: np.ndarray | None = field(default=None, compare=False, repr=False)
    """Per-neuron value now (NaN where the neuron was not checked)."""

    @property
    def stale(self) -> bool:
        return bool(
            self.out_of_tolerance > MAX_OUT_OF_TOLERANCE
            or abs(self.median_shift) > MAX_MEDIAN_SHIFT * self.tolerance
        )


@dataclass(frozen=True)
class CheckReport:
    chip_id: str
    quantities: dict[str, QuantityCheck]
    runs: int

    @property
    def holds(self) -> bool:
        return not any(check.stale for check in self.quantities.values())

    @property
    def stale(self) -> list[str]:
        return [name for name, check in self.quantities.items() if check.stale]

    def record(
        self,
        result: NeuronResult,
        checked_run: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> CheckRecord:
        """The check as a record for the results store (its own kind, `check_record`)."""
        quantities = {
            name: QuantityDrift(
                median_shift=check.median_shift,
                spread=check.spread,
                out_of_tolerance=check.out_of_tolerance,
                tolerance=check.tolerance,
                checked_neurons=check.checked_neurons,
                stale=check.stale,
            )
            for name, check in self.quantities.items()
        }
        measured = {
            name: np.asarray(check.measured, dtype=float)
            for name, check in self.quantities.items()
            if check.measured is not None
        }
        return CheckRecord(
            chip_id=self.chip_id,
            checked_run=checked_run,
            target_fingerprint=result.target.fingerprint(),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            runs=self.runs,
            quantities=quantities,
            measured=measured,
            extra=dict(extra or {}),
        )

    def summary(self) -> str:
        lines = [
            f"chip {self.chip_id}: {'holds' if self.holds else 'drifted'} ({self.runs} device runs)"
        ]
        for check in self.quantities.values():
            lines.append(
                f"  {check.name:<10} shift {check.median_shift:+.3g}, "
                f"{100 * check.out_of_tolerance:.1f} % out of tolerance"
                f"{'  STALE' if check.stale else ''}"
            )
        return "\n".join(lines)


def _sampled_tau_mem(device: Device, neurons: np.ndarray, duration: float) -> np.ndarray:
    saved = device.read_settings(["threshold_enable", "v_reset"])
    v_leak = device.read_settings(["v_leak"])["v_leak"]
    device.write({"threshold_enable": 0, "v_reset": decay_reset(v_leak)})
    try:
        trace = device.record_madc(
            [int(n) for n in neurons],
            RELEASE_TIME + duration,
            ResetRelease(release_time=RELEASE_TIME),
        )
    finally:
        device.write(saved)
    binned = bin_trace(trace, bin_factor(SHORTEST_FRACTION * duration / 5))
    return decay_time_constants(binned, start_time=RELEASE_TIME)["tau"]


def check_result(device: Device, result: NeuronResult, *, apply: bool = True) -> CheckReport:
    """Apply `result` to `device` (unless told not to) and check it still holds."""
    if device.chip_id != result.chip_id:
        raise ValueError(f"result is for chip {result.chip_id!r}, device is {device.chip_id!r}")
    device = retrying(device)
    runs_before = device.stats.runs
    if apply:
        result.apply(device)
    goals = result.goals()
    measured = {
        "leak": measure_once(LeakPotential(CHECK_SAMPLES), device),
        "reset": measure_once(ResetPotential(CHECK_SAMPLES), device),
        "threshold": measure_once(ThresholdPotential(), device),
    }
    ok = result.success
    sample = np.flatnonzero(ok)[:: max(1, int(ok.sum()) // TAU_SAMPLE_NEURONS)][:TAU_SAMPLE_NEURONS]
    tau = np.full(device.n_neurons, np.nan)
    if sample.size:
        # cells a plan opens while single neurons are measured (closed compartment
        # connections couple the sampled membranes), restored afterwards
        cells = [cell for plan in PLANS for cell in plan.extra.get("open_while_checked", ())]
        kept = {name: codes for name, codes in device.read_settings(cells).items() if codes.any()}
        if kept:
            device.write(dict.fromkeys(kept, 0))
        tau[sample] = _sampled_tau_mem(device, sample, 5 * float(goals["tau_mem"].max()))
        if kept:
            device.write(kept)
    measured["tau_mem"] = tau

    checks = {}
    for name, values in measured.items():
        stored = result.achieved.get(name)
        considered = ok & np.isfinite(values)
        if stored is None or not considered.any():
            continue
        tolerance = PLANS.quantities()[name].tolerance_for(goals[name])
        missing = np.abs(values - goals[name]) > tolerance
        checks[name] = QuantityCheck(
            name=name,
            checked_neurons=int(considered.sum()),
            out_of_tolerance=float(missing[considered].mean()),
            median_shift=float(np.median((values - stored)[considered])),
            tolerance=float(np.median(tolerance)),
            spread=float(np.std(values[considered])) if considered.sum() >= 2 else float("nan"),
            measured=np.where(considered, values, np.nan),
        )
    return CheckReport(result.chip_id, checks, device.stats.runs - runs_before)
