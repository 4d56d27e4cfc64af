"""`calibrate_mac`: the MAC-mode calibration, step by step in dependency order.

CADC (as for spiking) -> integration mode -> baseline (reset) -> driver offsets (gain-free
intercepts) -> STP ramp per driver block -> synapse DAC bias per quadrant -> excitatory and
inhibitory input strength per neuron -> baseline again -> verification and judgement (the
synaptic time constants, kept at their shortest setting, are measured there and judged
against the target's bound).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np

from calib.algorithms import BinarySearch, NoiseRobustBinarySearch
from calib.algorithms.base import Algorithm, measure_once, with_retries
from calib.core.retry import retrying
from calib.core.routine import Routine
from calib.mac.result import MacResult
from calib.mac.target import MacTarget
from calib.routines.cadc import (
    READ_AT_HIGH,
    READ_AT_LOW,
    CADCRampOffset,
    CADCRampSlope,
    channel_offsets,
)
from calib.routines.mac_integration import (
    IntegrationBaseline,
    MacInputStrength,
    MacSynapticTimeConstant,
    SynapseDacBias,
)
from calib.routines.mac_patterns import clean_pattern, mac_mode_settings
from calib.routines.synapse_driver import DriverOffset, StpRamp
from device_model.protocol import N_DRIVERS, N_NEURONS, N_QUADRANTS, Device

INITIAL_RESET_CODE = 450
"""v_reset (and v_leak) before the baseline search: mid-range of the calibrated CADC."""
CALIBRATED_CELLS = (
    "v_reset",
    "driver_hagen_offset",
    "stp_i_ramp",
    "syn_i_bias_dac",
    "i_bias_syn_exc_gm",
    "i_bias_syn_inh_gm",
)
"""Cells whose uncalibrated spread `before` records (every unit at its median code)."""


def default_mac_algorithms() -> dict[str, Algorithm]:
    robust = NoiseRobustBinarySearch()
    return {
        "cadc_ramp_offset": BinarySearch(),
        "cadc_ramp_slope": BinarySearch(),
        "baseline": robust,
        "driver_offset": NoiseRobustBinarySearch(steps=6, scan_radius=2, scan_repeats=2),
        "stp_ramp": BinarySearch(),
        "synapse_dac_bias": BinarySearch(),
        "amplitude_exc": robust,
        "amplitude_inh": robust,
    }


class MacCalibration:
    """One MAC calibration of one device."""

    def __init__(
        self, device: Device, target: MacTarget, algorithms: dict[str, Algorithm] | None = None
    ) -> None:
        self.device = device
        self.target = target
        self.algorithms = {**default_mac_algorithms(), **(algorithms or {})}
        self.codes: dict[str, np.ndarray] = {}
        self.at_bound: dict[str, np.ndarray] = {}
        self.routines: dict[str, Routine] = {
            "baseline": IntegrationBaseline(),
            "driver_offset": DriverOffset(),
            "stp_ramp": StpRamp(),
            "synapse_dac_bias": SynapseDacBias(),
            "amplitude_exc": MacInputStrength(inhibitory=False),
            "amplitude_inh": MacInputStrength(inhibitory=True),
            "tau_syn_exc": MacSynapticTimeConstant(inhibitory=False),
            "tau_syn_inh": MacSynapticTimeConstant(inhibitory=True),
        }
        self.amplitude_target = np.nan

    @property
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("cadc", self.calibrate_cadc),
            ("integration_mode", self.configure),
            ("baseline", lambda: self.search("baseline", self.target.baseline)),
            ("driver_offset", lambda: self.search("driver_offset", 0.0)),
            ("stp_ramp", self.calibrate_ramp),
            ("synapse_dac_bias", self.calibrate_dac),
            ("amplitude_exc", self.calibrate_strength),
            ("amplitude_inh", lambda: self.search("amplitude_inh", self.amplitude_target)),
            ("baseline", lambda: self.search("baseline", self.target.baseline)),
        ]

    def write(self, settings: dict) -> None:
        self.device.write(settings)
        self.codes.update(self.device.read_settings(list(settings)))

    def search(self, name: str, goal: float | np.ndarray) -> None:
        routine = self.routines[name]
        units = (
            N_DRIVERS
            if name == "driver_offset"
            else (N_QUADRANTS if name in ("stp_ramp", "synapse_dac_bias") else N_NEURONS)
        )
        goal = np.broadcast_to(np.asarray(goal, dtype=float), (units,))
        outcome = self.algorithms[name].run(routine, self.device, goal)
        self.codes[routine.parameter] = np.array(outcome.codes, copy=True)
        self.at_bound[name] = routine.parameter_range.at_bound(outcome.codes)

    def calibrate_cadc(self) -> None:
        self.search_cadc(CADCRampOffset(), READ_AT_LOW)
        self.search_cadc(CADCRampSlope(), READ_AT_HIGH)
        self.search_cadc(CADCRampOffset(), READ_AT_LOW)
        self.write(
            {"cadc_channel_offset": channel_offsets(self.device), "cadc_connect_reference": 0}
        )

    def search_cadc(self, routine: Routine, goal: float) -> None:
        outcome = self.algorithms[routine.name].run(
            routine, self.device, np.full(N_QUADRANTS, goal)
        )
        self.codes[routine.parameter] = np.array(outcome.codes, copy=True)

    def configure(self) -> None:
        self.write(
            {
                **mac_mode_settings(),
                "v_reset": INITIAL_RESET_CODE,
                "v_leak": INITIAL_RESET_CODE,
                "i_bias_syn_exc_gm": self.target.i_synin_gm,
                "i_bias_syn_inh_gm": self.target.i_synin_gm,
                **clean_pattern(),
            }
        )
        for name in ("synapse_weight", "row_mode"):
            self.codes.pop(name, None)  # patterns belong to experiments, not to the result

    def calibrate_ramp(self) -> None:
        routine = self.routines["stp_ramp"]
        with_retries(routine, routine.prelude, self.device)
        routine.postlude(self.device)
        self.search("stp_ramp", routine.target)

    def calibrate_dac(self) -> None:
        routine = self.routines["synapse_dac_bias"]
        with_retries(routine, routine.prelude, self.device)
        routine.postlude(self.device)
        self.search("synapse_dac_bias", routine.target)

    def calibrate_strength(self) -> None:
        goal = self.target.amplitude
        if goal is None:
            goal = float(np.median(measure_once(self.routines["amplitude_exc"], self.device)))
        self.amplitude_target = goal
        self.search("amplitude_exc", goal)

    # -- verification and judgement -------------------------------------------------------

    def measure_all(self) -> dict[str, np.ndarray]:
        device = self.device
        achieved = {
            name: measure_once(self.routines[name], device)
            for name in (
                "baseline",
                "amplitude_exc",
                "amplitude_inh",
                "driver_offset",
                "synapse_dac_bias",
                "tau_syn_exc",
                "tau_syn_inh",
            )
        }
        achieved["quadrant_amplitude"] = achieved.pop("synapse_dac_bias")
        achieved["block_amplitude"] = measure_once(self.routines["stp_ramp"], device)
        return achieved

    def measure_before(self) -> dict[str, np.ndarray]:
        """Every calibrated cell at the median of its codes, measured, then restored."""
        uniform = {
            cell: np.broadcast_to(
                np.rint(np.median(self.codes[cell])), self.codes[cell].shape
            ).astype(np.int64)
            for cell in CALIBRATED_CELLS
        }
        self.device.write(uniform)
        self.device.write(uniform)
        try:
            return self.measure_all()
        finally:
            restore = {cell: self.codes[cell] for cell in CALIBRATED_CELLS}
            self.device.write(restore)
            self.device.write(restore)

    def judge(
        self, achieved: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray, dict[int, str], dict[int, str]]:
        t = self.target
        neuron_problems: list[list[str]] = [[] for _ in range(N_NEURONS)]
        driver_problems: list[list[str]] = [[] for _ in range(N_DRIVERS)]

        def flag(problems: list[list[str]], mask: np.ndarray, text: Callable[[int], str]) -> None:
            for unit in np.flatnonzero(mask):
                problems[unit].append(text(int(unit)))

        base = achieved["baseline"]
        flag(
            neuron_problems,
            ~(np.abs(base - t.baseline) <= t.baseline_tolerance),
            lambda n: (
                f"baseline: reached {base[n]:.3g} LSB, target {t.baseline:.3g} "
                f"± {t.baseline_tolerance:.3g}"
            ),
        )
        for kind in ("exc", "inh"):
            values = achieved[f"amplitude_{kind}"]
            goal = self.amplitude_target
            miss = ~(np.abs(values - goal) <= t.amplitude_tolerance * goal)
            flag(
                neuron_problems,
                miss,
                lambda n, v=values, k=kind, g=goal: (
                    f"amplitude_{k}: reached {v[n]:.3g} LSB, target {g:.3g} "
                    f"± {100 * t.amplitude_tolerance:.3g} %"
                ),
            )
        for kind in ("exc", "inh"):
            tau = achieved[f"tau_syn_{kind}"]
            flag(
                neuron_problems,
                ~np.isfinite(tau),
                lambda n, k=kind: f"tau_syn_{k}: measurement failed (no response to the probe)",
            )
            flag(
                neuron_problems,
                np.isfinite(tau) & (tau > t.max_tau_syn),
                lambda n, v=tau, k=kind: (
                    f"tau_syn_{k}: {v[n] * 1e6:.3g} µs at the shortest setting, above the "
                    f"{t.max_tau_syn * 1e6:.3g} µs this mode allows"
                ),
            )
        for name, bound in self.at_bound.items():
            if bound.shape != (N_NEURONS,):
                continue
            cell = self.routines[name].parameter
            flag(
                neuron_problems,
                bound != 0,
                lambda n, b=bound, c=cell, q=name: (
                    f"{q}: {c} at {'upper' if b[n] > 0 else 'lower'} bound"
                ),
            )
        offset = achieved["driver_offset"]
        flag(
            driver_problems,
            ~(np.abs(offset) <= t.offset_tolerance),
            lambda d: f"driver_offset: a0 {offset[d]:.3g}, target 0 ± {t.offset_tolerance:.3g}",
        )
        flag(
            driver_problems,
            self.at_bound["driver_offset"] != 0,
            lambda d: "driver_offset: driver_hagen_offset at a range bound",
        )
        for name in ("stp_ramp", "synapse_dac_bias"):
            bound = self.at_bound[name]
            if np.any(bound != 0):
                cell = self.routines[name].parameter
                blocks = np.flatnonzero(bound != 0)
                text = f"{name}: {cell} at a range bound in block(s) {blocks.tolist()}"
                problems = driver_problems if name == "stp_ramp" else neuron_problems
                units = (
                    np.isin(np.arange(N_DRIVERS) // 64, blocks)
                    if name == "stp_ramp"
                    else np.isin(np.arange(N_NEURONS) // 128, blocks)
                )
                flag(problems, units, lambda u, s=text: s)
        neuron_reasons = {n: "; ".join(p) for n, p in enumerate(neuron_problems) if p}
        driver_reasons = {d: "; ".join(p) for d, p in enumerate(driver_problems) if p}
        return (
            np.array([not p for p in neuron_problems]),
            np.array([not p for p in driver_problems]),
            neuron_reasons,
            driver_reasons,
        )


def calibrate_mac(
    device: Device,
    target: MacTarget | None = None,
    *,
    algorithms: dict[str, Algorithm] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    provenance_extra: Mapping[str, Any] | None = None,
) -> MacResult:
    """Calibrate `device` for MAC mode; returns a MacResult (apply it to use it).

    `progress(step, index, total)` is called before each step and before the verification
    (named "verify"), as `calibrate` calls it: index from 0, total = steps + 1.
    `provenance_extra` is kept as the result's provenance["extra"] (JSON-able values, e.g.
    how the chip was made)."""
    target = target or MacTarget()
    if not isinstance(target, MacTarget):
        raise ValueError(f"target must be a MacTarget, got {type(target).__name__}")
    started = time.perf_counter()
    stats_start = device.stats
    device = retrying(device)
    calibration = MacCalibration(device, target, algorithms)
    steps: dict[str, dict[str, float]] = {}
    sequence = calibration.steps
    total = len(sequence) + 1
    for index, (name, action) in enumerate(sequence):
        if progress is not None:
            progress(name, index, total)
        before_stats, before_time = device.stats, time.perf_counter()
        action()
        spent, host = device.stats - before_stats, time.perf_counter() - before_time
        cost = steps.setdefault(
            name, {"runs": 0, "writes": 0, "hardware_time": 0.0, "host_time": 0.0}
        )
        cost["runs"] += spent.runs
        cost["writes"] += spent.writes
        cost["hardware_time"] += spent.hardware_time
        cost["host_time"] += host
    calibration_stats = device.stats - stats_start
    calibration_host = time.perf_counter() - started
    if progress is not None:
        progress("verify", total - 1, total)
    achieved = calibration.measure_all()
    before = calibration.measure_before()
    neuron_ok, driver_ok, neuron_reasons, driver_reasons = calibration.judge(achieved)
    provenance = {
        "chip_id": device.chip_id,
        "created": datetime.now(UTC).isoformat(),
        "duration": calibration_host,
        "device_stats": {
            "runs": calibration_stats.runs,
            "writes": calibration_stats.writes,
            "hardware_time": calibration_stats.hardware_time,
        },
        "amplitude_target": float(calibration.amplitude_target),
        "steps": steps,
        "extra": dict(provenance_extra or {}),
    }
    return MacResult(
        target=target,
        codes=calibration.codes,
        achieved=achieved,
        before=before,
        neuron_success=neuron_ok,
        driver_success=driver_ok,
        neuron_reasons=neuron_reasons,
        driver_reasons=driver_reasons,
        provenance=provenance,
    )
