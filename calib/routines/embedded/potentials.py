"""The threshold read on integer histograms of the CADC codes (embedded mode).

The estimator is the host mode's (`calib.routines.neuron_potentials.ThresholdPotential`,
`observables.firing_maxima`), computed on the 8-bit codes themselves: per-neuron maxima and
counts of codes at or above three levels below the top, compares and adds that a vector unit
does while the samples stream in, instead of float passes over every sample.
"""

from __future__ import annotations

import numpy as np

from calib.routines.neuron_potentials import ThresholdPotential, channel_offsets
from device_model.protocol import CADC_MAX, Device
from observables.firing_maxima import BAND_WIDTH, TopCounts, threshold_estimate


def count_at_least(codes: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Per neuron, the samples of `codes` (samples, n; uint8) reading `level` or more."""
    level = np.clip(level, 0, CADC_MAX).astype(codes.dtype)
    return np.count_nonzero(codes >= level[None, :], axis=0).astype(float)


class CountingThreshold(ThresholdPotential):
    """Spike threshold from the maxima of random-phase CADC reads of a firing neuron."""

    def measure(self, device: Device) -> np.ndarray:
        codes = device.read_cadc(samples=self.samples * self.reads)
        maxima = codes.reshape(self.reads, self.samples, -1).max(axis=1).mean(axis=0)
        top = codes.max(axis=0).astype(np.int64)
        width = int(BAND_WIDTH)
        half = width // 2

        def count_from(level: np.ndarray) -> np.ndarray:
            return count_at_least(codes, level)

        # Bands as the host estimator's: level = top - width - 0.5 on the codes' bin edges;
        # the counts are compares and sums on the 8-bit codes.
        above = count_from(top - width)
        counts = TopCounts(
            maxima=maxima,
            top=top.astype(float),
            above=above,
            near=count_from(top - width - half) - above,
            far=count_from(top - 2 * width) - count_from(top - width - half),
            samples_per_read=self.samples,
            reads=self.reads,
        )
        return threshold_estimate(counts, channel_offsets(device))
