"""Conductance-based (COBA) synaptic inputs: the membrane potential modulates an input's strength.

BSS-2 (calix spiking/synapse.py, COBA classes): an OTA compares the membrane potential V with a
reference potential V_ref and modulates the synaptic input's bias current in proportion to the
difference; with the COBA bias at 0 the input is current-based. Per input the model scales the
current jump of an event by

    s = max(1 - k (V - V_ref), 0)  (excitatory),   s = max(1 + k (V - V_ref), 0)  (inhibitory),
    k = COBA_SLOPE_PER_CODE * gain * code(i_bias_syn_<kind>_coba),
    V_ref = V(code(v_syn_<kind>_coba_reference)) + OTA offset,

so the PSP amplitude falls linearly with V and vanishes at the effective reversal potential
E_rev = V_ref + 1/k (excitatory) or V_ref - 1/k (inhibitory): s = (E_rev - V) / (E_rev - V_ref).
The OTA's output cannot reverse the bias current, hence the clip at 0 (beyond E_rev the input
does nothing).

Approximation: V is the neuron's resting potential (the `e_rest` node: the leak moved by the
inputs' offsets), not the potential at each event. This is exact for sparse input, where every
event finds the membrane at rest, and keeps the membrane response linear in the events (no
nonlinear ODE): a PSP riding on earlier PSPs is scaled as if it started at rest. Measurements
of the reversal potential move the resting potential (the leak) and read single PSPs, so they
see the model exactly.

The mismatch is drawn from a random stream of its own, so adding these cells left every other
part of a chip as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from device_model import params as p
from device_model.protocol import N_NEURONS

STREAM_COBA = 17
"""Random stream of the COBA mismatch (apart from the neurons' and the synapses')."""
KINDS = ("exc", "inh")


@dataclass(frozen=True)
class CobaTruth:
    """Ground truth of the COBA OTAs (for studies and benchmarks only), per input kind."""

    exc_reference_offset: np.ndarray
    """(512,) input offset (V) of the excitatory COBA OTA."""
    inh_reference_offset: np.ndarray
    exc_slope_gain: np.ndarray
    """(512,) relative gain of the excitatory OTA's modulation (1 = nominal)."""
    inh_slope_gain: np.ndarray

    def __post_init__(self) -> None:
        for field in fields(self):
            getattr(self, field.name).flags.writeable = False


def draw_coba_truth(seed: int, mismatch_scale: float) -> CobaTruth:
    rng = np.random.default_rng([seed, STREAM_COBA])
    s = mismatch_scale
    draws = {}
    for kind in KINDS:
        draws[f"{kind}_reference_offset"] = (
            p.COBA_REFERENCE_OFFSET_SPREAD * s * rng.standard_normal(N_NEURONS)
        )
        draws[f"{kind}_slope_gain"] = np.exp(
            p.COBA_SLOPE_SIGMA * s * rng.standard_normal(N_NEURONS)
        )
    return CobaTruth(**draws)


def reference_volts(
    kind: str, code: np.ndarray, capmem_gain: np.ndarray, truth: CobaTruth | None
) -> np.ndarray:
    """V_ref of every neuron (V): its CapMem voltage with the quadrant's gain error (per neuron,
    `capmem_gain`), moved by the OTA's offset."""
    offset = 0.0 if truth is None else getattr(truth, f"{kind}_reference_offset")
    return np.asarray(code) * p.CAPMEM_VOLTS_PER_CODE * (1 + capmem_gain) + offset


def slope(kind: str, code: np.ndarray, truth: CobaTruth | None) -> np.ndarray:
    """k (1/V): the relative change of the input's strength per volt of membrane potential."""
    gain = 1.0 if truth is None else getattr(truth, f"{kind}_slope_gain")
    return p.COBA_SLOPE_PER_CODE * gain * np.maximum(np.asarray(code, dtype=float), 0.0)


def strength_scale(kind: str, v_rest: np.ndarray, v_ref: np.ndarray, k: np.ndarray) -> np.ndarray:
    """s: the factor on the input's current jump at membrane potential `v_rest`; exactly 1
    where k is 0 (current-based input)."""
    sign = -1.0 if kind == "exc" else 1.0
    return np.maximum(1.0 + sign * k * (v_rest - v_ref), 0.0)


def reversal_volts(kind: str, v_ref: np.ndarray, k: np.ndarray) -> np.ndarray:
    """E_rev (V), where the PSP amplitude extrapolates to zero; NaN where k is 0 (no COBA)."""
    sign = 1.0 if kind == "exc" else -1.0
    with np.errstate(divide="ignore"):
        distance = np.where(k > 0, 1.0 / np.where(k > 0, k, 1.0), np.nan)
    return v_ref + sign * distance
