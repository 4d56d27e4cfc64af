"""Nominal circuit models: what a mismatch-free neuron does at a code, from the design's figures.

They place a working point before a quantity is calibrated and suggest the codes worth sweeping;
they are only starting points (every calibration measures the real neuron). One model per
circuit, used by every routine that needs it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import CAPMEM_MAX, N_NEURONS

MAX_MEMBRANE_CAPACITANCE = 63
"""Capacitance units of the membrane (6 bit)."""
CAPACITANCE_UNIT = 36e-15
"""Farad per capacitance unit."""
INTRINSIC_CAPACITANCE = 0.15e-12

# -- the leak conductance ----------------------------------------------------------------------
LEAK_ANCHOR_CODE, LEAK_ANCHOR_TAU = 540.0, 10e-6
"""The design point: tau_mem 10 us at this leak bias with the divide switch and the full
capacitance."""
LEAK_SATURATION = 4000.0
"""Code scale of the leak conductance's saturation, g ~ code / (1 + code / saturation)."""
DIVIDE_FACTOR = 1 / 8
MULTIPLY_FACTOR = 8.0
"""Conductance per code with the divide / multiply switch, relative to neither."""
DIVIDE_ABOVE = 7e-6
"""tau_mem targets above this use the divide switch (with it, the strongest bias gives ~6 us)."""
MULTIPLY_BELOW = 0.9e-6
"""Targets below this use the multiply switch (without it, the strongest bias gives ~0.7 us)."""


def membrane_capacitance(units: ArrayLike) -> np.ndarray:
    """Farad of `units` capacitance units."""
    return CAPACITANCE_UNIT * np.asarray(units, dtype=float) + INTRINSIC_CAPACITANCE


def leak_switches(tau_mem: ArrayLike) -> dict[str, np.ndarray]:
    """Divide/multiply switch settings per neuron for its target membrane time constant."""
    tau_mem = np.asarray(tau_mem, dtype=float)
    return {
        "leak_divide": (tau_mem > DIVIDE_ABOVE).astype(np.int64),
        "leak_multiply": (tau_mem < MULTIPLY_BELOW).astype(np.int64),
    }


def stronger_switches(
    tau_mem: ArrayLike, too_slow: ArrayLike, far_too_slow: ArrayLike | None = None
) -> dict[str, np.ndarray]:
    """The nominal switches for `tau_mem`, one step stronger where a neuron stayed `too_slow`
    at the strongest bias (divide -> neither -> multiply), two where it stayed `far_too_slow`
    (slower than one step can make up: divide -> multiply; without it, every `too_slow`)."""
    slow = np.asarray(too_slow, dtype=bool)
    far = slow if far_too_slow is None else slow & np.asarray(far_too_slow, dtype=bool)
    return one_step_stronger(one_step_stronger(leak_switches(tau_mem), slow), far)


def switch_strength(switches: dict[str, np.ndarray]) -> np.ndarray:
    """0 with the divide switch, 1 with neither, 2 with the multiply switch."""
    return 1 - np.asarray(switches["leak_divide"]) + np.asarray(switches["leak_multiply"])


def one_step_stronger(switches: dict[str, np.ndarray], where: ArrayLike) -> dict[str, np.ndarray]:
    """`switches` one step stronger `where` (divide -> neither -> multiply; multiply stays)."""
    strength = switch_strength(switches)
    strength = np.where(np.asarray(where, dtype=bool), np.minimum(strength + 1, 2), strength)
    return {
        "leak_divide": (strength == 0).astype(np.int64),
        "leak_multiply": (strength == 2).astype(np.int64),
    }


def switches_after_probe(
    tau_mem: ArrayLike, probed: ArrayLike, margin: float = 0.0
) -> dict[str, np.ndarray]:
    """The switches for `tau_mem` once a probe at the strongest bias read `probed` (s): one
    step stronger where the neuron stayed slower than its target less `margin` (or read
    nothing), two where even one step (a factor of about 1 / DIVIDE_FACTOR) would not make up."""
    tau_mem = np.asarray(tau_mem, dtype=float)
    probed = np.asarray(probed, dtype=float)
    reach = tau_mem * (1 - margin)
    return stronger_switches(tau_mem, ~(probed <= reach), probed * DIVIDE_FACTOR > reach)


def leak_bias_code(
    tau_mem: ArrayLike, capacitance: ArrayLike, divide: ArrayLike, multiply: ArrayLike
) -> np.ndarray:
    """The (continuous, unclipped) leak bias code giving `tau_mem` on a nominal neuron; +inf
    where the conductance saturates below what the target needs."""
    factor = np.where(
        np.asarray(divide) == 1,
        DIVIDE_FACTOR,
        np.where(np.asarray(multiply) == 1, MULTIPLY_FACTOR, 1.0),
    )
    anchor = LEAK_ANCHOR_CODE / (1 + LEAK_ANCHOR_CODE / LEAK_SATURATION)
    ratio = membrane_capacitance(capacitance) / membrane_capacitance(MAX_MEMBRANE_CAPACITANCE)
    # g(code) = k f code / (1 + code / s); k from the anchor: the linear code, then saturated
    linear = (
        anchor
        * LEAK_ANCHOR_TAU
        / np.asarray(tau_mem, dtype=float)
        * ratio
        * (DIVIDE_FACTOR / factor)
    )
    remaining = 1 - linear / LEAK_SATURATION
    with np.errstate(divide="ignore"):
        return np.where(remaining > 0, linear / np.where(remaining > 0, remaining, 1.0), np.inf)


def nominal_leak_bias(tau_mem: ArrayLike, capacitance: int) -> np.ndarray:
    """A leak bias code (1..1022) that gives roughly `tau_mem` on a nominal neuron, with the
    switches `leak_switches` chooses for it."""
    switches = leak_switches(tau_mem)
    code = leak_bias_code(tau_mem, capacitance, switches["leak_divide"], switches["leak_multiply"])
    return np.clip(np.rint(np.minimum(code, CAPMEM_MAX)), 1, CAPMEM_MAX).astype(np.int64)


# -- the synaptic inputs' time constant ----------------------------------------------------------
SYNAPSE_ANCHOR_CODE, SYNAPSE_ANCHOR_TAU = 920.0, 0.3e-6
"""A nominal input has tau_syn 0.3 us at this bias without the high-resistance switch."""
SYNAPSE_SATURATION = 2000.0
SYNAPSE_HIGH_RESISTANCE = 5.0
"""Time-constant factor of the high-resistance switch."""
HIGH_RESISTANCE_ABOVE = 3e-6
"""tau_syn targets above this use the high-resistance switch. Its fastest constant (top bias)
lies near 1.4 us on a nominal input and beyond 2 us for about 8 % of the inputs on a harder
chip (mismatch 1.3x), 0.4 % beyond 3 us; below the switch, the bias codes' steps are about
1 % at 2 us and 1.5 % at 3 us (about 0.4 % RMS residual)."""


def synapse_bias_code(tau_syn: ArrayLike, high_resistance: ArrayLike) -> np.ndarray:
    """The (continuous) tau bias code giving `tau_syn` on a nominal input."""
    factor = np.where(np.asarray(high_resistance).astype(bool), SYNAPSE_HIGH_RESISTANCE, 1.0)
    anchor = SYNAPSE_ANCHOR_CODE / (1 + SYNAPSE_ANCHOR_CODE / SYNAPSE_SATURATION)
    linear = anchor * SYNAPSE_ANCHOR_TAU * factor / np.asarray(tau_syn, dtype=float)
    return linear / np.maximum(1 - linear / SYNAPSE_SATURATION, 1e-3)


def per_neuron(value: ArrayLike) -> np.ndarray:
    """`value` as a float array of shape (N_NEURONS,)."""
    return np.broadcast_to(np.asarray(value, dtype=float), (N_NEURONS,))
