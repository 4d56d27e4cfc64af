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
from device_model.stimuli import ResetRelease, SynapticEvents
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


# -- the short synaptic time constant, measured (CADC only) ------------------------------------

TAU_RELEASE = 0.5e-6
"""The neurons leave their reset this long after the run starts, as a MAC integration does."""
TAU_EVENT = 1.0e-6
"""The probe's events arrive then (the reset released half a microsecond earlier)."""
TAU_PROBE_EVENTS = 192
"""Coincident events of full weight: a response of about 50 LSB at the calibrated strength,
inside the CADC's range from the baseline in either direction."""
TAU_EARLY_READ = 0.3e-6
"""Early read after the events: near the shortest time constant, where the rise is steepest."""
TAU_PLATEAU_READS = (3e-6, 6e-6)
"""Two late reads: the charge fully integrated, the slow leak's droop extrapolated back
linearly (2 V(3 us) - V(6 us)); first-order exact in delay / tau_mem."""
TAU_LARGEST_FRACTION = 1 - 1e-3
"""Rise fractions above this read as tau = early delay / ln(1000) (faster than resolved)."""


class MacSynapticTimeConstant(Routine):
    """tau_syn of one input in MAC mode, from timed CADC reads of its response to a volley.

    With the leak off the membrane integrates the input current: V(s) = Q (1 - exp(-s/tau_syn))
    after the events, so the fraction reached at an early read gives tau_syn =
    -s / ln(1 - V(s) / Q). Each read is taken with and without the events (the same release
    from reset), so the membrane's own relaxation cancels. Set by the input's tau bias; MAC
    mode keeps the bias at its top and judges the measured value against a bound.
    """

    inverted = True

    def __init__(self, inhibitory: bool, samples: int = SAMPLES) -> None:
        self.inhibitory = inhibitory
        self.samples = samples
        self.name = f"tau_syn_{_prefix(inhibitory)}"
        self.parameter = f"i_bias_syn_{_prefix(inhibitory)}_tau"
        self.release = ResetRelease(TAU_RELEASE)
        self.events = SynapticEvents((TAU_EVENT,) * TAU_PROBE_EVENTS, inhibitory=inhibitory)

    def response(self, device: Device, delay: float) -> np.ndarray:
        """Mean reading `delay` after the events minus the reading without them."""
        read_time = TAU_EVENT + delay
        with_events = device.read_cadc(
            self.samples, stimulus=(self.release, self.events), read_time=read_time
        )
        without = device.read_cadc(self.samples, stimulus=self.release, read_time=read_time)
        return with_events.astype(float).mean(axis=0) - without.astype(float).mean(axis=0)

    def measure(self, device: Device) -> np.ndarray:
        early = self.response(device, TAU_EARLY_READ)
        late, later = (self.response(device, delay) for delay in TAU_PLATEAU_READS)
        plateau = 2 * late - later
        with np.errstate(divide="ignore", invalid="ignore"):
            fraction = early / plateau
        usable = np.isfinite(fraction) & (fraction > 0) & (np.abs(plateau) >= MIN_PROBE_HEIGHT)
        fraction = np.clip(np.where(usable, fraction, 0.5), None, TAU_LARGEST_FRACTION)
        return np.where(usable, -TAU_EARLY_READ / np.log1p(-fraction), np.nan)


MIN_PROBE_HEIGHT = 5.0
"""A plateau lower than this (LSB) gives no time constant (a dead or saturated neuron)."""
