"""The reset holdoff: the last part of the refractory time, in which the membrane is released
from the reset but the neuron cannot fire yet.

BSS-2 splits the refractory period into a reset phase (the membrane clamped to the reset) and a
holdoff phase at its end (the membrane evolves freely, spikes are blocked); calix sets the
holdoff with the refractory clock (`calix/spiking/refractory_period.py`, targets 0..4 µs in
its neuron calibration). The simulated chip counts the holdoff on a clock of its own, in steps
of HOLDOFF_STEP (cell `reset_holdoff`, 0..255), so that it does not coarsen the refractory
counter's resolution. The reset switch opens a little after the digital end of the reset
phase (a per-neuron release latency), so the free part of the holdoff is shorter than its
setting:

    holdoff = clip(code * HOLDOFF_STEP - latency, 0, refractory time)    (code > 0; else 0)

A neuron whose membrane reaches the threshold inside the holdoff fires when it ends, so the
interval between spikes is t_hold + max(rise - holdoff, 0), the rise taken from the release.
Code 0 (the default) is no holdoff at all: the chip behaves as without this circuit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from device_model import params as p
from device_model.protocol import N_NEURONS

STREAM_HOLDOFF = 6
"""Random stream of the holdoff mismatch (apart from the neurons' and the synapses', so adding
this circuit left every chip's other ground truth as it was)."""


@dataclass(frozen=True)
class HoldoffTruth:
    """Ground truth of the holdoff circuit (for studies and benchmarks only)."""

    release_latency: np.ndarray
    """(512,) delay (s) of the reset switch's opening after the reset phase's digital end."""

    def __post_init__(self) -> None:
        for field in fields(self):
            getattr(self, field.name).flags.writeable = False


def draw_holdoff_truth(seed: int, mismatch_scale: float) -> HoldoffTruth:
    """The chip's holdoff ground truth, from its own stream (every spread times the scale)."""
    rng = np.random.default_rng([seed, STREAM_HOLDOFF])
    latency = p.HOLDOFF_LATENCY_MEAN + (
        p.HOLDOFF_LATENCY_SPREAD * mismatch_scale * rng.standard_normal(N_NEURONS)
    )
    return HoldoffTruth(release_latency=np.maximum(latency, 0.0))


def effective_holdoff(
    code: ArrayLike, refractory_time: ArrayLike, truth: HoldoffTruth | None
) -> np.ndarray:
    """Free part (s) of the holdoff for `code`: its setting less the release latency, never
    negative nor longer than the refractory time; exactly 0 for code 0."""
    code = np.asarray(code, dtype=float)
    latency = 0.0 if truth is None else truth.release_latency
    holdoff = np.clip(code * p.HOLDOFF_STEP - latency, 0.0, refractory_time)
    return np.where(code > 0, holdoff, 0.0)
