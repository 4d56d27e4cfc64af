"""Leak, reset and threshold potentials, read on the calibrated CADC (targets in CADC LSB)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import BinarySearch, LocalScan, NoiseRobustBinarySearch
from calib.core.plans import (
    UNMEASURED_STATE,
    CalibrationContext,
    Plan,
    QuantitySpec,
    register_plan,
)
from calib.core.routine import Routine
from calib.core.targets import NeuronTarget
from device_model.protocol import CAPMEM_MAX, N_NEURONS, Device
from observables.cadc import cadc_mean
from observables.firing_maxima import threshold_estimate, top_counts

POTENTIAL_SAMPLES = 200
"""CADC samples averaged per potential reading: read noise (~1 LSB) falls to ~0.07 LSB."""
THRESHOLD_SAMPLES = 400
"""Random-phase samples of a firing neuron; their maximum approaches the threshold."""
THRESHOLD_READS = 8
"""Reads whose maxima are averaged: the maximum of one read scatters by ~0.4 LSB."""
FAST_REFRACTORY = {"refractory_counter": 1, "refractory_clock_scale": 0}
"""Shortest refractory time: a firing neuron spends its time on the rising trajectory."""
FIRING_CHECK_WINDOW = 300e-6
"""The threshold's verification counts spikes this long in its configuration: a neuron whose
leak at its top stays below its threshold never fires, and the top of its reads is its resting
potential, not a threshold (it would pass wherever that rest lies near the target). A leak that
barely clears the threshold still fires every few tens of us."""
PLATEAU_AT_10US = 5.0
"""The reset clamp is finite and also feels the leak, pulled to the top for the reading: the
held potential sits about this many LSB above the reset at tau_mem 10 us, more with a faster
membrane (a larger leak conductance against the clamp's), in proportion to 1 / tau_mem."""
PLATEAU_MARGIN = 10.0
"""LSB kept between the held potential and the threshold; closer, the reset is lowered."""
THRESHOLD_SCAN_REPEATS = 6
"""Reads per code of the threshold search's window. A read scatters by about half a code
step, so the choice between neighbouring codes rests on the line through the window: with
three reads a code, the residual was 1.09..1.19x the oracle's at the defaults."""
THRESHOLD_SHIFT_REPEATS = 1
"""... and of a window shifted onto a crossing outside the first: every neuron reads it (one
write serves all), few need it, and their line spans both windows."""


def threshold_search(target: NeuronTarget | None = None) -> NoiseRobustBinarySearch:
    """The threshold's search; its binary phase's last reads join the window's line (the read
    noise is about half a code step, where they pay: `NoiseRobustBinarySearch`)."""
    return NoiseRobustBinarySearch(
        scan_repeats=THRESHOLD_SCAN_REPEATS,
        shift_repeats=THRESHOLD_SHIFT_REPEATS,
        binary_reads=True,
    )


def channel_offsets(device: Device) -> np.ndarray:
    """The CADC channels' digital offsets (LSB) as set: the compressed top acts before them."""
    return device.read_settings(["cadc_channel_offset"])["cadc_channel_offset"].astype(float)


def plateau_crowds(threshold: ArrayLike, reset: ArrayLike, tau_mem: ArrayLike) -> np.ndarray:
    """Neurons whose held reset potential may reach their threshold while it is read: their
    reset is lowered for the reading (elsewhere it stays, the firing trajectory starts there)."""
    plateau = PLATEAU_AT_10US * 10e-6 / np.asarray(tau_mem, dtype=float)
    gap = np.asarray(threshold, dtype=float) - np.asarray(reset, dtype=float)
    return np.broadcast_to(gap < 2 * plateau + PLATEAU_MARGIN, (N_NEURONS,))


class _CadcPotential(Routine):
    def __init__(self, samples: int = POTENTIAL_SAMPLES) -> None:
        self.samples = samples

    def measure(self, device: Device) -> np.ndarray:
        return cadc_mean(device, self.samples)


class LeakPotential(_CadcPotential):
    """Resting potential of a quiet neuron, set by v_leak."""

    name = "leak"
    parameter = "v_leak"

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {"threshold_enable": 0, "reset_hold": 0}


class ResetPotential(_CadcPotential):
    """Potential of a neuron held in reset, set by v_reset (the clamp also feels the leak)."""

    name = "reset"
    parameter = "v_reset"

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {"threshold_enable": 0, "reset_hold": 1}


class FiringCheck:
    """A threshold reading that, with `check_firing`, also counts spikes in its configuration
    and reads NaN for the neurons without any (`silent`, from the last read): a verification's
    guard (see FIRING_CHECK_WINDOW). A search goes without it: there, the top of a silent
    neuron's reads still shows which way to go."""

    check_firing: bool = False
    silent: np.ndarray | None = None

    def checked(self, device: Device, values: np.ndarray) -> np.ndarray:
        if not self.check_firing:
            return values
        counted = device.count_spikes(FIRING_CHECK_WINDOW)
        self.silent = (counted.counts == 0) & ~counted.overflow
        return np.where(self.silent, np.nan, values)


class ThresholdPotential(FiringCheck, Routine):
    """Spike threshold: the neuron's leak is pulled far above threshold so that it fires
    continuously, and the CADC samples its membrane at random phases of the firing cycle.

    The maximum of a read approaches the threshold but sits above it by the read noise's
    excursion (~0.3..2 LSB). The mean of several reads' maxima is precise; its bias, per
    neuron, follows from the sample density near the top and the read noise, both measured
    from the same samples (`observables.firing_maxima`), and is removed.
    """

    name = "threshold"
    parameter = "v_threshold"

    def __init__(
        self,
        samples: int = THRESHOLD_SAMPLES,
        reads: int = THRESHOLD_READS,
        lower_reset: ArrayLike | None = None,
    ) -> None:
        """`lower_reset`: neurons read with their reset at its lowest code (`plateau_crowds`)."""
        self.samples = samples
        self.reads = reads
        self.lower_reset = None if lower_reset is None else np.asarray(lower_reset, bool)

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        settings: dict[str, ArrayLike] = {
            "threshold_enable": 1,
            "reset_hold": 0,
            "v_leak": CAPMEM_MAX,
            **FAST_REFRACTORY,
            "reset_holdoff": 0,  # a free membrane inside a holdoff may pass the threshold
        }
        if self.lower_reset is not None and self.lower_reset.any():
            v_reset = device.read_settings(["v_reset"])["v_reset"]
            settings["v_reset"] = np.where(self.lower_reset, 0, v_reset)
        return settings

    def measure(self, device: Device) -> np.ndarray:
        codes = device.read_cadc(samples=self.samples * self.reads)
        estimate = threshold_estimate(top_counts(codes, self.reads), channel_offsets(device))
        return self.checked(device, estimate)


# -- plans ----------------------------------------------------------------------------------

POTENTIAL_UNIT = "CADC LSB"


def _leak(context: CalibrationContext) -> LeakPotential:
    return LeakPotential(context.options.cadc_samples)


def _final_leak(context: CalibrationContext, plan: Plan) -> None:
    """The leak once more with both synaptic inputs connected and spiking enabled: the
    configuration the neuron is used in."""
    context.write({"syn_exc_enable": 1, "syn_inh_enable": 1, "threshold_enable": 1})
    context.search(plan, _leak(context), context.goals["leak"])
    context.write({"threshold_enable": 1})


def check_consistency(target: NeuronTarget) -> None:
    """Fields that contradict each other: one ValueError naming both fields and why.

    The leak must not lie above the threshold (the neuron would fire without input, and its
    resting potential could not be read), and the reset must lie below the threshold (a neuron
    reset at or above it fires again at once).
    """
    rules = (
        (
            "threshold",
            "leak",
            np.greater_equal,
            "is below",
            "a neuron resting above its threshold fires without input",
        ),
        (
            "reset",
            "threshold",
            np.less,
            "is not below",
            "a neuron reset at or above its threshold fires again at once",
        ),
    )
    for first, second, holds, relation, why in rules:
        a = np.broadcast_to(np.asarray(getattr(target, first), float), (N_NEURONS,))
        b = np.broadcast_to(np.asarray(getattr(target, second), float), (N_NEURONS,))
        bad = np.flatnonzero(~holds(a, b))
        if bad.size:
            n = int(bad[0])
            scalar = np.ndim(getattr(target, first)) == 0 and np.ndim(getattr(target, second)) == 0
            where = "" if scalar else f" (neuron {n}, {bad.size} neurons in all)"
            raise ValueError(f"{first} = {a[n]:g} {relation} {second} = {b[n]:g}{where}: {why}")


LEAK = register_plan(
    Plan(
        name="leak",
        rank=2,
        display_rank=2.0,
        quantities=(
            QuantitySpec(
                "leak",
                POTENTIAL_UNIT,
                50,
                160,
                3.0,
                relative=False,
                default=80.0,
                description="resting potential of a quiet neuron",
                long_name="leak potential",
            ),
        ),
        cells=("v_leak",),
        routine=_leak,
        # Only places the membrane for tau_mem, which moves the leak: a local scan follows it
        # there, and another in the final configuration (leak_final). A read scatters by a
        # sixth of a code step, so the plain search lands on the closest code or next to it.
        algorithm=lambda target: BinarySearch(),
        rerun_algorithm=lambda target: LocalScan(),
        after=("working_point",),
        disturbs=("reset",),
        record_before=False,  # the final leak step records the spread, in the final configuration
    )
)
LEAK_FINAL = register_plan(
    Plan(
        name="leak_final",
        rank=100,
        records="leak",
        cells=("v_leak",),
        action=_final_leak,
        algorithm=lambda target: NoiseRobustBinarySearch(),
        rerun_algorithm=lambda target: LocalScan(),
        after=("psp_amplitude_exc", "psp_amplitude_inh", "refractory_time", "adex_switches"),
        recalibratable=False,
        extra={"searches": ()},  # its search is the leak's ("leak" in an algorithm mapping)
    )
)
RESET = register_plan(
    Plan(
        name="reset",
        rank=10,
        display_rank=2.1,
        quantities=(
            QuantitySpec(
                "reset",
                POTENTIAL_UNIT,
                50,
                160,
                3.0,
                relative=False,
                default=70.0,
                description="potential a neuron is held at after a spike",
                long_name="reset potential",
            ),
        ),
        cells=("v_reset",),
        routine=lambda context: ResetPotential(context.options.cadc_samples),
        algorithm=lambda target: NoiseRobustBinarySearch(),
        after=("leak",),
        disturbs=("threshold",),  # read on the firing trajectory, which starts at the reset
    )
)


def _cadc_threshold(context: CalibrationContext) -> ThresholdPotential:
    return ThresholdPotential(
        context.options.threshold_samples,
        lower_reset=plateau_crowds(
            context.goals["threshold"], context.goals["reset"], context.goals["tau_mem"]
        ),
    )


THRESHOLD_METHODS: dict[str, Callable[[CalibrationContext], Routine]] = {"cadc": _cadc_threshold}
"""Ways to measure the threshold, by the name `CalibrationOptions.threshold_method` gives:
the CADC here, the MADC in calib/routines/threshold_madc.py."""


def threshold_routine(context: CalibrationContext) -> Routine:
    """The threshold's routine for the method the calibration's options choose."""
    return THRESHOLD_METHODS[getattr(context.options, "threshold_method", "cadc")](context)


def verify_threshold(context: CalibrationContext) -> dict[str, np.ndarray]:
    """The threshold measured by the chosen method, NaN where the neuron does not fire
    (`FiringCheck`); with another method than the CADC, the CADC estimate as well, kept with
    the difference in models['threshold'] (a cross-check)."""
    routine = threshold_routine(context)
    if isinstance(routine, FiringCheck):
        routine.check_firing = True
    measured = context.measure(routine)
    silent = routine.silent if isinstance(routine, FiringCheck) else None
    if silent is not None:
        context.state.setdefault(UNMEASURED_STATE, {})["threshold"] = {
            int(neuron): f"no spike in {FIRING_CHECK_WINDOW * 1e6:g} µs with the leak at its "
            "top (the threshold lies above the leak's range)"
            for neuron in np.flatnonzero(silent)
        }
    if getattr(context.options, "threshold_method", "cadc") != "cadc":
        cadc = context.measure(_cadc_threshold(context))
        models = context.models.setdefault("threshold", {})
        models["cadc_estimate"] = cadc
        models["madc_minus_cadc"] = measured - cadc
    return {"threshold": measured}


THRESHOLD = register_plan(
    Plan(
        name="threshold",
        rank=11,
        display_rank=2.2,
        quantities=(
            QuantitySpec(
                "threshold",
                POTENTIAL_UNIT,
                50,
                220,
                4.0,
                relative=False,
                default=125.0,
                description="membrane potential at which the neuron spikes",
                long_name="threshold potential",
            ),
        ),
        cells=("v_threshold",),
        routine=lambda context: threshold_routine(context),
        algorithm=threshold_search,
        verify=lambda context: verify_threshold(context),
        after=("reset",),
        # a target may ask for a firing rate instead (calib/routines/firing_rate.py)
        applies=lambda target: target.threshold is not None,
        extra={"check_before_run": check_consistency},
    )
)
