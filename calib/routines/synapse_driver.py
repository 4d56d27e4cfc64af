"""Synapse drivers in MAC mode: the activation encoding (after calix hagen/synapse_driver.py).

- Offset: a driver turns activation a into a charge proportional to max(a - a0, 0); its
  hagen-DAC offset code moves a0 (higher code: higher a0). Measured from the driver's
  amplitudes at two activations, a0 = (a_l q_h - a_h q_l) / (q_h - q_l), which is independent
  of the gain of the neurons that read it; the target is a0 = 0, a proportional encoding.
- STP ramp: the ramp current of a CapMem block scales the pulse of its 64 drivers. The two
  blocks of a hemisphere feed the same neurons, so their mean amplitudes compare without
  neuron mismatch; each is matched to its hemisphere's mean at the reference code. What
  differs between hemispheres the per-neuron input strength takes up afterwards.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.routine import ParameterRange, Routine
from calib.routines.mac_patterns import SAMPLES, driver_amplitudes, driver_pattern
from device_model.protocol import N_DRIVER_BLOCKS, Device
from device_model.synapses import DRIVER_BLOCK

LOW_ACTIVATION = 6
HIGH_ACTIVATION = 20
"""The two activations the offset is measured at: well above the uncalibrated a0 spread,
and the high one keeps the reading below the CADC's compressed top."""
TEST_ACTIVATION = 16
"""Activation at which the blocks' amplitudes are matched (calix: address 15, i.e. 31 - 15)."""
RAMP_RANGE = ParameterRange(200, 900)
"""calix's search range of the STP ramp current."""
RAMP_REFERENCE_CODE = 500


class DriverOffset(Routine):
    """Activation offset a0 of every driver (activation units), set by driver_hagen_offset."""

    name = "driver_offset"
    parameter = "driver_hagen_offset"
    parameter_range = ParameterRange(0, 63)

    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples = samples

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return driver_pattern()

    def measure(self, device: Device) -> np.ndarray:
        low = driver_amplitudes(device, LOW_ACTIVATION, self.samples)
        high = driver_amplitudes(device, HIGH_ACTIVATION, self.samples)
        with np.errstate(divide="ignore", invalid="ignore"):
            offset = (LOW_ACTIVATION * high - HIGH_ACTIVATION * low) / (high - low)
        return np.where(high - low > 0, offset, np.nan)


def block_means(driver_values: np.ndarray) -> np.ndarray:
    """(4,) mean of a per-driver array over each CapMem block's drivers."""
    return np.bincount(DRIVER_BLOCK, driver_values, N_DRIVER_BLOCKS) / np.bincount(
        DRIVER_BLOCK, minlength=N_DRIVER_BLOCKS
    )


class StpRamp(Routine):
    """Mean amplitude of each CapMem block's drivers at TEST_ACTIVATION, set by stp_i_ramp."""

    name = "stp_ramp"
    parameter = "stp_i_ramp"
    parameter_range = RAMP_RANGE

    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples = samples
        self.target: np.ndarray | None = None

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return driver_pattern()

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        device.write({self.parameter: RAMP_REFERENCE_CODE})
        means = self.measure(device)
        # Blocks 2h and 2h + 1 belong to hemisphere h: each pair is matched to its mean.
        pairs = means.reshape(-1, 2).mean(axis=1)
        self.target = np.repeat(pairs, 2)

    def measure(self, device: Device) -> np.ndarray:
        return block_means(driver_amplitudes(device, TEST_ACTIVATION, self.samples))
