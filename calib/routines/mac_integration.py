"""MAC mode on the neuron side: integration baseline, synaptic input strength per neuron and
the synapse DAC bias per quadrant (after calix hagen/neuron.py and common/synapse.py).

- Baseline: the reading after an integration without input, set by the reset potential the
  integration starts from.
- Input strength: the integrated amplitude of the strength pattern (every row, one small
  weight), set by the input's transconductance bias; matched across neurons.
- Synapse DAC bias: the median amplitude of each quadrant's neurons, set by the quadrant's DAC
  bias; matched to the weakest quadrant, as calix does, so that every quadrant can reach it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calib.core.routine import Routine
from calib.routines.mac_patterns import (
    SAMPLES,
    integrated_amplitude,
    strength_activations,
    strength_pattern,
    zero_activations,
)
from device_model.protocol import N_QUADRANTS, NEURONS_PER_QUADRANT, Device
from observables.cadc import cadc_mean


def _prefix(inhibitory: bool) -> str:
    return "inh" if inhibitory else "exc"


class IntegrationBaseline(Routine):
    """Reading after an integration without input, set by v_reset."""

    name = "baseline"
    parameter = "v_reset"

    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples = samples

    def measure(self, device: Device) -> np.ndarray:
        return cadc_mean(device, self.samples, stimulus=zero_activations())


class MacInputStrength(Routine):
    """Integrated amplitude of the strength pattern through one input, set by its gm bias."""

    def __init__(self, inhibitory: bool, samples: int = SAMPLES) -> None:
        self.inhibitory = inhibitory
        self.samples = samples
        self.name = f"amplitude_{_prefix(inhibitory)}"
        self.parameter = f"i_bias_syn_{_prefix(inhibitory)}_gm"

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return strength_pattern(self.inhibitory)

    def measure(self, device: Device) -> np.ndarray:
        return np.abs(integrated_amplitude(device, strength_activations(), self.samples))


class SynapseDacBias(Routine):
    """Median excitatory amplitude of each quadrant's neurons, set by syn_i_bias_dac."""

    name = "synapse_dac_bias"
    parameter = "syn_i_bias_dac"

    def __init__(self, samples: int = SAMPLES) -> None:
        self.samples = samples
        self.target: np.ndarray | None = None

    def measurement_settings(self, device: Device) -> dict[str, ArrayLike]:
        return strength_pattern(inhibitory=False)

    def prelude(self, device: Device) -> None:
        super().prelude(device)
        self.target = np.full(N_QUADRANTS, float(np.min(self.measure(device))))

    def measure(self, device: Device) -> np.ndarray:
        amplitude = integrated_amplitude(device, strength_activations(), self.samples)
        return np.median(amplitude.reshape(N_QUADRANTS, NEURONS_PER_QUADRANT), axis=1)
