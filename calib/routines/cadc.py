"""CADC calibration, as calix does it: a reference voltage at CapMem code 70 reads 20 and one at
code 550 reads 220 in every quadrant; then per-channel digital offsets equalise the channels.

After it, CADC codes are the unit of every potential target.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.algorithms import BinarySearch, LocalScan
from calib.core.plans import CalibrationContext, Plan, register_plan
from calib.core.routine import Routine
from device_model.protocol import (
    CELLS,
    N_QUADRANTS,
    NEURONS_PER_QUADRANT,
    Device,
)
from observables.cadc import cadc_mean

REFERENCE_LOW_CODE = 70
READ_AT_LOW = 20.0
REFERENCE_HIGH_CODE = 550
READ_AT_HIGH = 220.0
CODES_PER_LSB = (REFERENCE_HIGH_CODE - REFERENCE_LOW_CODE) / (READ_AT_HIGH - READ_AT_LOW)
"""CapMem codes of a potential cell per calibrated CADC LSB (the calibration's map)."""
OFFSET_REFERENCE_CODE = 310
"""Reference code at which channel offsets are equalised: mid-range of the calibrated map."""
SAMPLES = 20
CHANNEL_OFFSET_SAMPLES = 200


def expected_reading(reference_code: float) -> float:
    """What a calibrated channel reads for a reference voltage at `reference_code`."""
    slope = (READ_AT_HIGH - READ_AT_LOW) / (REFERENCE_HIGH_CODE - REFERENCE_LOW_CODE)
    return READ_AT_LOW + slope * (reference_code - REFERENCE_LOW_CODE)


def quadrant_means(readings: np.ndarray) -> np.ndarray:
    """Mean reading of each quadrant's channels (samples averaged)."""
    per_channel = readings.reshape(readings.shape[0], -1).mean(axis=0)
    return per_channel.reshape(N_QUADRANTS, NEURONS_PER_QUADRANT).mean(axis=1)


class _QuadrantRampRoutine(Routine):
    """Per-quadrant ramp cell calibrated on the mean reading of the quadrant's channels."""

    reference_code: int
    inverted = True

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {
            "cadc_connect_reference": 1,
            "cadc_channel_offset": 0,
            "v_cadc_reference": self.reference_code,
        }

    def measure(self, device: Device) -> np.ndarray:
        return quadrant_means(device.read_cadc(samples=SAMPLES).astype(float))


class CADCRampOffset(_QuadrantRampRoutine):
    """Ramp start voltage: a higher code starts the ramp higher, so readings drop."""

    name = "cadc_ramp_offset"
    parameter = "cadc_ramp_offset"
    reference_code = REFERENCE_LOW_CODE
    target = READ_AT_LOW


class CADCRampSlope(_QuadrantRampRoutine):
    """Ramp slope: a steeper ramp (higher code) means more volts per LSB, so readings drop."""

    name = "cadc_ramp_slope"
    parameter = "cadc_ramp_slope"
    reference_code = REFERENCE_HIGH_CODE
    target = READ_AT_HIGH


def channel_offsets(device: Device) -> np.ndarray:
    """Digital offsets that make every channel read the calibrated map's value.

    Computed directly from one averaged reading of a mid-range reference (no search needed:
    the offset adds to the code one to one).
    """
    spec = CELLS["cadc_channel_offset"]
    saved = device.read_settings(["cadc_connect_reference", "cadc_channel_offset"])
    device.write(
        {
            "cadc_connect_reference": 1,
            "cadc_channel_offset": 0,
            "v_cadc_reference": OFFSET_REFERENCE_CODE,
        }
    )
    try:
        readings = cadc_mean(device, CHANNEL_OFFSET_SAMPLES)
    finally:
        device.write(saved)
    offsets = np.rint(expected_reading(OFFSET_REFERENCE_CODE) - readings)
    return np.clip(offsets, spec.low, spec.high).astype(np.int64)


# -- plan -----------------------------------------------------------------------------------


def calibrate_cadc(context: CalibrationContext, plan: Plan) -> None:
    """Ramp offset, slope, offset again (the slope moves the offset), then channel offsets."""
    low = np.full(N_QUADRANTS, READ_AT_LOW)
    context.search(plan, CADCRampOffset(), low)
    context.search(plan, CADCRampSlope(), np.full(N_QUADRANTS, READ_AT_HIGH))
    context.search(plan, CADCRampOffset(), low)
    offsets = channel_offsets(context.device)
    context.write({"cadc_channel_offset": offsets, "cadc_connect_reference": 0})


CADC = register_plan(
    Plan(
        name="cadc",
        rank=0,
        cells=("cadc_ramp_offset", "cadc_ramp_slope", "cadc_channel_offset"),
        action=calibrate_cadc,
        algorithm=lambda target: BinarySearch(),
        # the offset's second search: the slope moved it a little from the first's result
        rerun_algorithm=lambda target: LocalScan(),
        recalibratable=False,
        extra={"searches": ("cadc_ramp_offset", "cadc_ramp_slope")},
    )
)
