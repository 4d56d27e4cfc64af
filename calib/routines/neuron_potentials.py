"""Leak, reset and threshold potentials, read on the calibrated CADC (targets in CADC LSB)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import NoiseRobustBinarySearch
from calib.core.plans import CalibrationContext, Plan, QuantitySpec, register_plan
from calib.core.routine import Routine
from device_model.protocol import CAPMEM_MAX, Device
from observables.cadc import cadc_mean

POTENTIAL_SAMPLES = 200
"""CADC samples averaged per potential reading: read noise (~1 LSB) falls to ~0.07 LSB."""
THRESHOLD_SAMPLES = 400
"""Random-phase samples of a firing neuron; their maximum approaches the threshold."""
THRESHOLD_READS = 8
"""Reads whose maxima are averaged: the maximum of one read scatters by ~0.4 LSB."""
BAND_WIDTH = 8.0
"""Distance (LSB) below the top of the level the bias estimate counts from, and the width
below the level over which the sample density is measured."""
MIN_BAND_SAMPLES = 50
FAST_REFRACTORY = {"refractory_counter": 1, "refractory_clock_scale": 0}
"""Shortest refractory time: a firing neuron spends its time on the rising trajectory."""


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


class ThresholdPotential(Routine):
    """Spike threshold: the neuron's leak is pulled far above threshold so that it fires
    continuously, and the CADC samples its membrane at random phases of the firing cycle.

    The maximum of a read approaches the threshold but sits above it by the read noise's
    excursion (~0.5..1 LSB). The mean of several reads' maxima is precise; its bias is
    measured from the same samples (see `maxima_bias`) as the median over the neurons, and
    removed.
    """

    name = "threshold"
    parameter = "v_threshold"

    def __init__(self, samples: int = THRESHOLD_SAMPLES, reads: int = THRESHOLD_READS) -> None:
        self.samples = samples
        self.reads = reads

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {
            "threshold_enable": 1,
            "reset_hold": 0,
            "v_leak": CAPMEM_MAX,
            **FAST_REFRACTORY,
        }

    def measure(self, device: Device) -> np.ndarray:
        codes = device.read_cadc(samples=self.samples * self.reads).astype(float)
        maxima = codes.reshape(self.reads, self.samples, -1).max(axis=1).mean(axis=0)
        return maxima - maxima_bias(codes, maxima)



def maxima_bias(codes: np.ndarray, maxima: np.ndarray) -> float:
    """Median over neurons of (mean read maximum - noise-free threshold estimate).

    Far below the top, read noise moves as many samples up across a level as down, so the
    samples above a level count the time the membrane spends between it and the threshold.
    Divided by the sample density there, that count is the distance to the threshold. The
    density rises towards the threshold (the membrane slows as it nears its leak potential):
    it is measured in two bins below the level and extrapolated linearly above it.
    """
    level = codes.max(axis=0) - BAND_WIDTH - 0.5  # a bin edge (a code k stands for k +- 0.5)
    half = BAND_WIDTH / 2
    above = (codes >= level).sum(axis=0)
    far = ((codes >= level - BAND_WIDTH) & (codes < level - half)).sum(axis=0) / half
    near = ((codes >= level - half) & (codes < level)).sum(axis=0) / half
    slope = (near - far) / half
    at_level = near + slope * half / 2
    # above = at_level * x + slope * x**2 / 2 for the distance x from the level to the threshold
    with np.errstate(invalid="ignore", divide="ignore"):
        curved = np.abs(slope) > 1e-9 * np.abs(at_level)
        root = np.sqrt(at_level**2 + 2 * slope * above)
        distance = np.where(curved, (root - at_level) / np.where(curved, slope, 1.0),
                            above / at_level)
    usable = ((far + near) * half >= MIN_BAND_SAMPLES) & np.isfinite(distance) & (distance > 0)
    if not usable.any():
        return 0.0
    return float(np.median(maxima[usable] - level[usable] - distance[usable]))


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


LEAK = register_plan(Plan(
    name="leak",
    rank=2,
    display_rank=2.0,
    quantities=(QuantitySpec(
        "leak", POTENTIAL_UNIT, 50, 160, 3.0, relative=False, default=80.0,
        description="resting potential of a quiet neuron", long_name="leak potential"),),
    cells=("v_leak",),
    routine=_leak,
    algorithm=lambda target: NoiseRobustBinarySearch(),
    after=("working_point",),
    disturbs=("reset",),
    record_before=False,  # the final leak step records the spread, in the final configuration
))
LEAK_FINAL = register_plan(Plan(
    name="leak_final",
    rank=100,
    records="leak",
    cells=("v_leak",),
    action=_final_leak,
    algorithm=lambda target: NoiseRobustBinarySearch(),
    after=("reference_exc", "reference_inh", "refractory_time", "adex_switches"),
    recalibratable=False,
    extra={"searches": ()},  # its search is the leak's ("leak" in an algorithm mapping)
))
RESET = register_plan(Plan(
    name="reset",
    rank=10,
    display_rank=2.1,
    quantities=(QuantitySpec(
        "reset", POTENTIAL_UNIT, 50, 160, 3.0, relative=False, default=70.0,
        description="potential a neuron is held at after a spike", long_name="reset potential"),),
    cells=("v_reset",),
    routine=lambda context: ResetPotential(context.options.cadc_samples),
    algorithm=lambda target: NoiseRobustBinarySearch(),
    after=("leak",),
    disturbs=("threshold",),  # read on the firing trajectory, which starts at the reset
))
THRESHOLD = register_plan(Plan(
    name="threshold",
    rank=11,
    display_rank=2.2,
    quantities=(QuantitySpec(
        "threshold", POTENTIAL_UNIT, 50, 220, 4.0, relative=False, default=125.0,
        description="membrane potential at which the neuron spikes",
        long_name="threshold potential"),),
    cells=("v_threshold",),
    routine=lambda context: ThresholdPotential(context.options.threshold_samples),
    algorithm=lambda target: NoiseRobustBinarySearch(),
    after=("reset",),
))
