"""Leak, reset and threshold potentials, read on the calibrated CADC (targets in CADC LSB)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.routine import Routine
from device_model.protocol import CAPMEM_MAX, Device

POTENTIAL_SAMPLES = 200
"""CADC samples averaged per potential reading: read noise (~1 LSB) falls to ~0.07 LSB."""
THRESHOLD_SAMPLES = 400
"""Random-phase samples of a firing neuron; their maximum approaches the threshold."""
FAST_REFRACTORY = {"refractory_counter": 1, "refractory_clock_scale": 0}
"""Shortest refractory time: a firing neuron spends its time on the rising trajectory."""


class _CadcPotential(Routine):
    def __init__(self, samples: int = POTENTIAL_SAMPLES) -> None:
        self.samples = samples

    def measure(self, device: Device) -> np.ndarray:
        return device.read_cadc(samples=self.samples).astype(float).mean(axis=0)


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
    continuously; the maximum of many random-phase CADC samples is the threshold."""

    name = "threshold"
    parameter = "v_threshold"

    def __init__(self, samples: int = THRESHOLD_SAMPLES) -> None:
        self.samples = samples

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return {
            "threshold_enable": 1,
            "reset_hold": 0,
            "v_leak": CAPMEM_MAX,
            **FAST_REFRACTORY,
        }

    def measure(self, device: Device) -> np.ndarray:
        return device.read_cadc(samples=self.samples).max(axis=0).astype(float)
