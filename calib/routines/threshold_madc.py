"""Threshold through the MADC: a second measurement method, to cross-check the CADC estimate.

Selected with `CalibrationOptions(threshold_method="madc")` (command line: `calibrate
--threshold-method madc`). The neuron fires under its leak pulled far above the threshold, as
for the CADC method; the MADC records every neuron's membrane (two neurons per run) and the
threshold is the potential just before each reset, averaged over the spikes of the recording,
with half a sample's rise added (the crossing lies between the last sample and the next one).
calix measures the threshold with the MADC in the same way (`calix/spiking/neuron_threshold.py`,
`MembraneTimeConstantCalib`-style traces of a neuron firing under its leak).

Targets are in CADC LSB, so MADC codes are mapped to CADC LSB per neuron: both converters read
the same quiet membrane at two leak levels (the calibrated leak, and higher) before the search;
a line per quadrant (the CADC ramp's slope is a quadrant's) through each neuron's two points
maps the rest. The map is linear: above the CADC's compression knee (about 200 LSB) the two
methods part.

With the MADC method the verification measures the threshold both ways; the CADC estimate and
the difference (MADC - CADC, LSB) are kept in the result's models (`threshold`:
`cadc_estimate`, `madc_minus_cadc`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.plans import CalibrationContext
from calib.core.routine import Routine
from calib.routines.neuron_potentials import (
    THRESHOLD_METHODS,
    FiringCheck,
    ThresholdPotential,
    plateau_crowds,
)
from device_model.protocol import CAPMEM_MAX, N_NEURONS, N_QUADRANTS, Device
from observables.cadc import cadc_mean

RECORD_DURATION = 60e-6
"""MADC recording per neuron pair: the first 8 µs are invalid, the rest holds a few firing
cycles of a 10 µs membrane."""
RESET_DROP = 30
"""MADC codes a sample must fall below its predecessor to count as a reset."""
MAP_SAMPLES = 200
"""CADC samples averaged per reference level of the MADC-to-CADC map."""
MAP_LEAK_STEP = 150
"""v_leak codes the map's upper reference lies above the calibrated leak (about 60 CADC LSB)."""


def peak_potentials(codes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Mean potential (MADC codes) just before each reset, per trace, with half the last
    sample's rise added; NaN for a trace without a reset."""
    trace = codes[:, valid].astype(float)
    step = np.diff(trace, axis=1)
    drop = step < -RESET_DROP
    drop[:, 0] = False  # the sample before it is needed for the rise
    before = trace[:, :-1]
    rise = np.concatenate([np.zeros((trace.shape[0], 1)), step[:, :-1]], axis=1)
    peak = before + 0.5 * np.clip(rise, 0.0, None)
    count = drop.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, (peak * drop).sum(axis=1) / np.maximum(count, 1), np.nan)


def _madc_levels(device: Device) -> np.ndarray:
    """Mean MADC code per neuron of the membrane as configured (a quiet neuron)."""
    trace = device.record_madc(list(range(N_NEURONS)), RECORD_DURATION / 4)
    return trace.codes[:, trace.valid].astype(float).mean(axis=1)


class MadcThreshold(FiringCheck, Routine):
    """Spike threshold (CADC LSB) from MADC traces of neurons firing under their own leak."""

    name = "threshold"
    parameter = "v_threshold"

    def __init__(self, lower_reset: ArrayLike | None = None) -> None:
        self.lower_reset = None if lower_reset is None else np.asarray(lower_reset, bool)
        self.slope = np.ones(N_NEURONS)
        self.offset = np.zeros(N_NEURONS)

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return ThresholdPotential(lower_reset=self.lower_reset).measurement_settings(device)

    def prelude(self, device: Device) -> None:
        """The MADC-to-CADC map, from the quiet membrane at two leak levels; then the firing
        configuration."""
        saved = device.read_settings(["v_leak", "threshold_enable"])
        points = []
        try:
            for shift in (0, MAP_LEAK_STEP):
                leak = np.clip(saved["v_leak"] + shift, 0, CAPMEM_MAX)
                settings = {"v_leak": leak, "threshold_enable": 0}
                device.write(settings)
                device.write(settings)
                points.append((_madc_levels(device), cadc_mean(device, MAP_SAMPLES)))
        finally:
            device.write(saved)
            device.write(saved)
        (madc_low, cadc_low), (madc_high, cadc_high) = points
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = (cadc_high - cadc_low) / (madc_high - madc_low)
        per_quadrant = np.nanmedian(ratio.reshape(N_QUADRANTS, -1), axis=1)
        self.slope = np.repeat(per_quadrant, N_NEURONS // N_QUADRANTS)
        self.offset = 0.5 * (cadc_low + cadc_high) - self.slope * 0.5 * (madc_low + madc_high)
        super().prelude(device)

    def measure(self, device: Device) -> np.ndarray:
        """Threshold per neuron; where no reset shows (a threshold so close to the held
        potential that the drop is lost in the noise, or one the membrane never reaches) the
        highest potential of the trace stands in, so that a search still sees which way to go."""
        trace = device.record_madc(list(range(N_NEURONS)), RECORD_DURATION)
        peaks = peak_potentials(trace.codes, trace.valid)
        highest = trace.codes[:, trace.valid].max(axis=1).astype(float)
        threshold = self.offset + self.slope * np.where(np.isfinite(peaks), peaks, highest)
        return self.checked(device, threshold)


def madc_threshold(context: CalibrationContext) -> MadcThreshold:
    return MadcThreshold(
        lower_reset=plateau_crowds(
            context.goals["threshold"], context.goals["reset"], context.goals["tau_mem"]
        )
    )


THRESHOLD_METHODS["madc"] = madc_threshold
