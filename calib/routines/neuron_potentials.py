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
THRESHOLD_READS = 4
"""Reads whose maxima are averaged: the maximum of one read scatters by ~0.4 LSB."""
BAND_WIDTH = 8.0
"""Width (LSB) of the band under the top in which the sample density counts as flat."""
MIN_BAND_SAMPLES = 50
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
    continuously, and the CADC samples its membrane at random phases of the firing cycle.

    The maximum of a read approaches the threshold but sits above it by the read noise's
    excursion (~0.5 LSB). The mean of several reads' maxima is precise; its bias is measured
    from the same samples: below the threshold the sample density is nearly flat, so the mean
    of the samples in a band under the top is the band's centre whatever the noise (symmetric
    noise moves samples both ways), which places the threshold without bias for each neuron.
    The median difference over the neurons is the bias, removed from every neuron's maxima.
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
    """Median over neurons of (mean read maximum - band-centre threshold estimate)."""
    lower = codes.max(axis=0) - BAND_WIDTH - 0.5
    in_band = codes >= lower
    counts = in_band.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        band_mean = np.where(in_band, codes, 0.0).sum(axis=0) / counts
    # the band holds samples from `lower` up to the threshold: its mean is their midpoint
    estimate = 2.0 * band_mean - lower
    usable = (counts >= MIN_BAND_SAMPLES) & np.isfinite(estimate)
    if not usable.any():
        return 0.0
    return float(np.median((maxima - estimate)[usable]))
