"""The LIF neuron calibration: routines run in dependency order, then verified and judged."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from calib.adex import ADEX_ROUTINES, AdExCalibration, lif_only
from calib.algorithms import BinarySearch, NoiseRobustBinarySearch
from calib.algorithms.base import Algorithm, measure_once, with_retries
from calib.algorithms.fitting import FittingSearch
from calib.routine import Routine
from calib.routines.cadc import (
    READ_AT_HIGH,
    READ_AT_LOW,
    CADCRampOffset,
    CADCRampSlope,
    channel_offsets,
)
from calib.routines.membrane import MembraneTimeConstant, leak_switches, nominal_leak_bias
from calib.routines.neuron_potentials import (
    POTENTIAL_SAMPLES,
    THRESHOLD_SAMPLES,
    LeakPotential,
    ResetPotential,
    ThresholdPotential,
)
from calib.routines.refractory import (
    measure_refractory_time,
    refractory_settings,
    refractory_time,
)
from calib.routines.synaptic_input import SynapticGain, SynapticReference, SynapticTimeConstant
from calib.targets import QUANTITIES, NeuronTarget
from device_model.protocol import N_NEURONS, N_QUADRANTS, Device

REFRACTORY_VERIFY_TOLERANCE = 0.1
"""Relative disagreement between the digital setting and its measurement flagged as a fault."""
REFRACTORY_VERIFY_FLOOR = 60e-9
@dataclass(frozen=True)
class CalibrationOptions:
    """Measurement effort: CADC samples averaged per potential reading and per PSP reading."""

    cadc_samples: int = POTENTIAL_SAMPLES
    threshold_samples: int = THRESHOLD_SAMPLES

    def __post_init__(self) -> None:
        for name in ("cadc_samples", "threshold_samples"):
            value = getattr(self, name)
            if not (isinstance(value, int) and 1 <= value <= 10_000):
                raise ValueError(f"{name} must be an integer 1..10000, got {value!r}")


RECALIBRATABLE = tuple(QUANTITIES)


def default_algorithms() -> dict[str, Algorithm]:
    """The algorithm used for each routine unless the caller overrides it."""
    robust = NoiseRobustBinarySearch()
    plain = BinarySearch()
    # Fitting beats binary search on time constants: lower residuals with 9 measurements
    # (each 256 MADC runs) instead of 13 (bench/fitting_search.py).
    fitting = FittingSearch(refine=2)
    return {
        "cadc_ramp_offset": plain,
        "cadc_ramp_slope": plain,
        "leak": robust,
        "reset": robust,
        "threshold": robust,
        "tau_mem": fitting,
        "tau_syn_exc": fitting,
        "tau_syn_inh": fitting,
        "psp_amplitude_exc": plain,
        "psp_amplitude_inh": plain,
        "reference_exc": robust,
        "reference_inh": robust,
    }


@dataclass
class _Session:
    """State of one calibration: the codes found so far and what went wrong where."""

    device: Device
    target: NeuronTarget
    algorithms: dict[str, Algorithm]
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    before: dict[str, np.ndarray] = field(default_factory=dict)
    at_bound: dict[str, np.ndarray] = field(default_factory=dict)
    models: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def write(self, settings: Mapping[str, Any]) -> None:
        self.device.write(settings)
        self.codes.update(self.device.read_settings(list(settings)))

    def search(self, routine: Routine, target: np.ndarray, record_before: bool = True) -> None:
        """Drive `routine` to `target`; keep its codes, bound flags and the uniform-code spread."""
        algorithm = self.algorithms[routine.name]
        outcome = algorithm.run(routine, self.device, target)
        codes = outcome.codes
        self.codes[routine.parameter] = np.array(codes, copy=True)
        self.at_bound[routine.name] = routine.parameter_range.at_bound(codes)
        if outcome.models:
            self.models[routine.name] = dict(outcome.models)
        if record_before and routine.name in QUANTITIES:
            self.before[routine.name] = self.measure_uniform(routine, codes)

    def measure_uniform(self, routine: Routine, codes: np.ndarray) -> np.ndarray:
        """The quantity with every neuron at the median code (per parameter, for several): the
        uncalibrated spread."""
        codes = np.asarray(codes)
        median = np.broadcast_to(np.rint(np.median(codes, axis=0)), codes.shape).astype(np.int64)
        with_retries(routine, routine.prelude, self.device)
        try:
            with_retries(routine, routine.apply, self.device, median)
            values = with_retries(routine, routine.measure, self.device)
            with_retries(routine, routine.apply, self.device, codes)
        finally:
            routine.postlude(self.device)
        return values


class LIFCalibration:
    """A full LIF neuron calibration, step by step in dependency order."""

    def __init__(
        self,
        device: Device,
        target: NeuronTarget,
        algorithms: Mapping[str, Algorithm] | None = None,
        options: CalibrationOptions | None = None,
    ) -> None:
        options = options or CalibrationOptions()
        chosen = default_algorithms()
        chosen.update(algorithms or {})
        self.session = _Session(device, target, chosen)
        self.target = target
        self.goals = target.quantities()
        self.routines = {
            "leak": LeakPotential(options.cadc_samples),
            "reset": ResetPotential(options.cadc_samples),
            "threshold": ThresholdPotential(options.threshold_samples),
            "tau_mem": MembraneTimeConstant(self.goals["tau_mem"], target.membrane_capacitance),
            "tau_syn_exc": SynapticTimeConstant(self.goals["tau_syn_exc"], inhibitory=False),
            "tau_syn_inh": SynapticTimeConstant(self.goals["tau_syn_inh"], inhibitory=True),
            "psp_amplitude_exc": SynapticGain(self.goals["psp_amplitude_exc"], False,
                                              self.goals["tau_mem"], self.goals["tau_syn_exc"]),
            "psp_amplitude_inh": SynapticGain(self.goals["psp_amplitude_inh"], True,
                                              self.goals["tau_mem"], self.goals["tau_syn_inh"]),
            "reference_exc": SynapticReference(inhibitory=False),
            "reference_inh": SynapticReference(inhibitory=True),
        }
        # --- AdEx (only when the target asks for it): its steps, verification, judgement ---
        self.adex = AdExCalibration(self.session, target, self.goals, {
            name: algorithm for name, algorithm in chosen.items() if name in ADEX_ROUTINES})

    @property
    def steps(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("cadc", self.calibrate_cadc),
            ("setup", self.configure_working_point),
            ("leak", lambda: self.search("leak", record_before=False)),
            ("tau_mem", lambda: self.search("tau_mem")),
            ("leak", lambda: self.search("leak", record_before=False)),
            ("tau_syn_exc", lambda: self.search("tau_syn_exc")),
            ("tau_syn_inh", lambda: self.search("tau_syn_inh")),
            ("psp_amplitude_exc", lambda: self.search("psp_amplitude_exc")),
            ("psp_amplitude_inh", lambda: self.search("psp_amplitude_inh")),
            ("reference_exc", lambda: self.search("reference_exc", goal="leak")),
            ("reference_inh", lambda: self.search("reference_inh", goal="leak")),
            # reset first: the threshold is read on the firing trajectory, which starts there
            ("reset", lambda: self.search("reset")),
            ("threshold", lambda: self.search("threshold")),
            ("refractory_time", self.set_refractory),
            *self.adex.steps,
            ("leak", self.refine_leak),
        ]

    def partial_steps(self, quantities: Iterable[str]) -> list[tuple[str, Callable[[], None]]]:
        """Steps that recalibrate `quantities` on a chip already calibrated (others kept).

        What a quantity disturbs comes along: tau_mem moves the leak, the leak moves the reset.
        """
        wanted = set(quantities)
        unknown = wanted - set(RECALIBRATABLE)
        if unknown:
            raise ValueError(
                f"cannot recalibrate {sorted(unknown)}; choose from {', '.join(RECALIBRATABLE)}"
            )
        if "tau_mem" in wanted:
            wanted |= {"leak", "reset"}
        if "leak" in wanted:
            wanted.add("reset")
        if "reset" in wanted:
            wanted.add("threshold")  # read on the firing trajectory that starts at the reset
        order = ["tau_mem", "tau_syn_exc", "tau_syn_inh", "psp_amplitude_exc",
                 "psp_amplitude_inh", "leak", "reset", "threshold", "refractory_time"]
        actions: dict[str, Callable[[], None]] = {
            "leak": lambda: self.search("leak"),
            "refractory_time": self.set_refractory,
        }
        return [(name, actions.get(name, lambda n=name: self.search(n)))
                for name in order if name in wanted]

    def search(self, name: str, *, goal: str | None = None, record_before: bool = True) -> None:
        self.session.search(self.routines[name], self.goals[goal or name], record_before)

    def calibrate_cadc(self) -> None:
        session = self.session
        session.search(CADCRampOffset(), np.full(N_QUADRANTS, READ_AT_LOW))
        session.search(CADCRampSlope(), np.full(N_QUADRANTS, READ_AT_HIGH))
        session.search(CADCRampOffset(), np.full(N_QUADRANTS, READ_AT_LOW))
        offsets = channel_offsets(session.device)
        session.write({"cadc_channel_offset": offsets, "cadc_connect_reference": 0})

    def configure_working_point(self) -> None:
        tau_mem = self.goals["tau_mem"]
        capacitance = self.target.membrane_capacitance
        self.session.write({
            "membrane_capacitance": capacitance,
            **leak_switches(tau_mem),
            "i_bias_leak": nominal_leak_bias(tau_mem, capacitance),
            "threshold_enable": 0,
            "reset_hold": 0,
            "syn_exc_enable": 0,
            "syn_inh_enable": 0,
            **refractory_settings(self.goals["refractory_time"]),
        })

    def set_refractory(self) -> None:
        self.session.write(refractory_settings(self.goals["refractory_time"]))

    def refine_leak(self) -> None:
        """Final leak with both synaptic inputs connected and spiking enabled."""
        self.session.write({"syn_exc_enable": 1, "syn_inh_enable": 1, "threshold_enable": 1})
        self.search("leak", record_before=True)
        self.session.write({"threshold_enable": 1})

    def verify(self) -> dict[str, np.ndarray]:
        """Every quantity measured once more with the final configuration (the LIF quantities
        with the AdEx parts switched off: they describe the LIF part)."""
        with lif_only(self.session.device):
            achieved = self._verify_lif()
        achieved.update(self.adex.verify())
        return achieved

    def _verify_lif(self) -> dict[str, np.ndarray]:
        device = self.session.device
        measuring = {
            **self.routines,
            "tau_mem": MembraneTimeConstant(
                self.goals["tau_mem"], self.target.membrane_capacitance, choose_switches=False),
        }
        achieved = {
            name: measure_once(measuring[name], device)
            for name in ("leak", "reset", "threshold", "tau_mem", "tau_syn_exc", "tau_syn_inh",
                         "psp_amplitude_exc", "psp_amplitude_inh")
        }
        codes = self.session.codes
        achieved["refractory_time"] = refractory_time(
            codes["refractory_counter"], codes["refractory_clock_scale"])
        self.refractory_measured = measure_refractory_time(device, {
            "refractory_counter": codes["refractory_counter"],
            "refractory_clock_scale": codes["refractory_clock_scale"],
        })
        return achieved

    def judge(self, achieved: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[int, str]]:
        """Success per neuron and the reasons for every failure."""
        problems: list[list[str]] = [[] for _ in range(N_NEURONS)]

        def flag(mask: np.ndarray, text: Callable[[int], str]) -> None:
            for neuron in np.flatnonzero(mask):
                problems[neuron].append(text(int(neuron)))

        for name, values in achieved.items():
            if name not in QUANTITIES:
                continue  # AdEx: judged below
            spec = QUANTITIES[name]
            goal = self.goals[name]
            tolerance = spec.tolerance_for(goal)
            flag(~np.isfinite(values), lambda n, q=name: f"{q}: measurement failed")
            miss = np.isfinite(values) & (np.abs(values - goal) > tolerance)
            flag(miss, lambda n, q=name, v=values, g=goal, t=tolerance, s=spec:
                 f"{q}: reached {_fmt(v[n], s.unit)}, target {_fmt(g[n], s.unit)} "
                 f"± {_fmt(t[n], s.unit)}")
        for name, bound in self.session.at_bound.items():
            routine = self.routines.get(name)
            if routine is None or bound.shape != (N_NEURONS,):
                continue
            limits = routine.parameter_range
            flag(bound < 0, lambda n, q=name, p=routine.parameter, c=limits.low:
                 f"{q}: {p} at lower bound {c}")
            flag(bound > 0, lambda n, q=name, p=routine.parameter, c=limits.high:
                 f"{q}: {p} at upper bound {c}")
        expected = achieved["refractory_time"]
        measured = self.refractory_measured
        disagrees = ~(np.abs(measured - expected) <= np.maximum(
            REFRACTORY_VERIFY_TOLERANCE * expected, REFRACTORY_VERIFY_FLOOR))
        flag(disagrees, lambda n: f"refractory_time: measured {_fmt(measured[n], 's')} "
             f"differs from the setting {_fmt(expected[n], 's')}")
        for neuron, texts in self.adex.problems(achieved).items():
            problems[neuron].extend(texts)
        reasons = {n: "; ".join(p) for n, p in enumerate(problems) if p}
        success = np.array([not p for p in problems])
        return success, reasons


def _fmt(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value * 1e6:.3g} us"
    return f"{value:.3g} {unit}"


