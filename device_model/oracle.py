"""Noise-free ground-truth quantities and the best achievable codes (for studies and benchmarks).

These read the chip's `ChipTruth`; calibration code never may. Potentials are in CADC LSB
through the chip's present CADC configuration (continuous, not rounded or clipped to 8 bit),
times in seconds. Dead neurons report NaN for threshold and time constants.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from device_model import params as p
from device_model.circuit import CROSSTALK_CELLS, evaluate, quadrant_mean
from device_model.dynamics import Membrane, interspike_interval, steady_potential
from device_model.mismatch import ChipTruth
from device_model.protocol import CAPMEM_MAX, N_NEURONS
from device_model.readout import cadc_continuous

QUANTITY_CELLS = {
    "leak": "v_leak",
    "reset": "v_reset",
    "threshold": "v_threshold",
    "tau_mem": "i_bias_leak",
    "tau_syn_exc": "i_bias_syn_exc_tau",
    "tau_syn_inh": "i_bias_syn_inh_tau",
}
"""Each neuron quantity `ideal_codes` knows, and the cell that sets it."""
MAC_QUANTITY_CELLS = {
    "mac_gain_exc": "i_bias_syn_exc_gm",
    "mac_gain_inh": "i_bias_syn_inh_gm",
}
"""MAC-mode quantities `ideal_codes` knows: the charge gain of each synaptic input (V per weight
unit and unit pulse, see device_model/synapses.py)."""
SPIKING_QUANTITY_CELLS = {"firing_rate": "v_threshold"}
"""Quantities of a neuron firing under its own leak (leak above threshold): the regular rate
(Hz) is set by the threshold, with leak, reset, tau_mem and refractory time as configured."""
ALL_QUANTITY_CELLS = {**QUANTITY_CELLS, **MAC_QUANTITY_CELLS, **SPIKING_QUANTITY_CELLS}


def _quantity(name: str, values: dict[str, np.ndarray], truth: ChipTruth) -> np.ndarray:
    dead, stuck = truth.dead, truth.stuck

    def lsb(volts: np.ndarray) -> np.ndarray:
        volts = np.clip(np.where(dead, p.DEAD_NEURON_POTENTIAL, volts), *p.MEMBRANE_RAILS)
        return cadc_continuous(volts, values, truth.cadc_channel_offset)

    if name == "leak":
        return lsb(np.where(stuck, values["v_hold"], values["e_rest"]))
    if name == "reset":
        return lsb(values["v_hold"])
    if name == "threshold":
        return np.where(dead, np.nan, lsb(values["v_threshold_volts"]))
    if name == "firing_rate":
        return firing_rate(values, truth)
    if name == "refractory_time":
        return np.broadcast_to(values["refractory_time"], (N_NEURONS,)).copy()
    return np.where(dead, np.nan, values[name])


TRUE_QUANTITIES = (
    "leak",
    "reset",
    "threshold",
    "tau_mem",
    "tau_syn_exc",
    "tau_syn_inh",
    "refractory_time",
    "firing_rate",
    "holdoff_time",
)
PSP_PER_WEIGHT = ("psp_per_weight_exc", "psp_per_weight_inh")
"""Spiking-mode PSP height (CADC LSB) per weight unit of one event through a synapse of
nominal current (device_model/synapses.py), with the input connected."""


def firing_rate(values: dict[str, np.ndarray], truth: ChipTruth) -> np.ndarray:
    """Regular firing rate (Hz) without input: 1 / the LIF interval from the hold potential
    to the threshold under the resting potential, the hold after a spike included; 0 for a
    neuron that does not fire, NaN for a dead one."""
    m = Membrane.from_values(values, truth.dead, truth.stuck)
    interval = interspike_interval(m, steady_potential(m))
    with np.errstate(divide="ignore"):
        rate = np.where(np.isfinite(interval), 1.0 / interval, 0.0)
    return np.where(truth.dead, np.nan, rate)


def psp_peak(tau_mem: np.ndarray, tau_syn: np.ndarray) -> np.ndarray:
    """Peak (s) of the membrane response (exp(-s/tau_s) - exp(-s/tau_m)) / (1/tau_m - 1/tau_s)
    to a unit current jump per capacitance: at s* = ln(tau_m / tau_s) / (1/tau_s - 1/tau_m);
    tau / e where the two constants coincide."""
    tau_mem, tau_syn = np.asarray(tau_mem, float), np.asarray(tau_syn, float)
    near = np.abs(tau_mem - tau_syn) < 1e-6 * tau_mem
    m = np.where(near, 1.0, tau_mem)
    s = np.where(near, 2.0, tau_syn)
    rate = 1.0 / m - 1.0 / s
    peak_time = np.log(m / s) / (1.0 / s - 1.0 / m)
    peak = (np.exp(-peak_time / s) - np.exp(-peak_time / m)) / rate
    return np.where(near, 0.5 * (tau_mem + tau_syn) / np.e, peak)


def psp_per_weight(codes: dict[str, np.ndarray], truth: ChipTruth) -> dict[str, np.ndarray]:
    """PSP_PER_WEIGHT for fully settled `codes`: each input connected (as its calibration
    measures it), its current jump per weight unit times the peak of the membrane response,
    read through the CADC from the resting potential."""
    out = {}
    for name, kind in zip(PSP_PER_WEIGHT, ("exc", "inh"), strict=True):
        values = evaluate({**codes, f"syn_{kind}_enable": np.ones(N_NEURONS)}, truth)
        jump = np.abs(values[f"jump_{kind}"])
        volts = (
            jump / values["capacitance"] * psp_peak(values["tau_mem"], values[f"tau_syn_{kind}"])
        )
        rest = np.clip(values["e_rest"], *p.MEMBRANE_RAILS)
        height = np.abs(
            cadc_continuous(
                np.clip(rest + np.sign(values[f"jump_{kind}"]) * volts, *p.MEMBRANE_RAILS),
                values,
                truth.cadc_channel_offset,
            )
            - cadc_continuous(rest, values, truth.cadc_channel_offset)
        )
        out[name] = np.where(truth.dead | truth.stuck, np.nan, height)
    return out


def true_quantities(codes: dict[str, np.ndarray], truth: ChipTruth) -> dict[str, np.ndarray]:
    """Every quantity of TRUE_QUANTITIES and PSP_PER_WEIGHT for fully settled `codes` (cell ->
    float codes)."""
    values = evaluate(dict(codes), truth)
    return {
        **{name: _quantity(name, values, truth) for name in TRUE_QUANTITIES},
        **psp_per_weight(codes, truth),
    }


def ideal_codes(
    quantity: str, target: ArrayLike, codes: dict[str, np.ndarray], truth: ChipTruth
) -> np.ndarray:
    """Per neuron, the code of `quantity`'s cell whose noise-free value lies closest to
    `target`, every other cell at `codes`. All 1023 codes of all neurons are evaluated at once.

    Crosstalk makes a quadrant's voltage depend on the mean code of its cells; the mean is
    taken from the previous answer (three rounds, starting from the present codes), so the
    returned codes are consistent with the crosstalk they cause themselves.
    """
    cell = ALL_QUANTITY_CELLS[quantity]
    target = np.broadcast_to(np.asarray(target, dtype=float), (N_NEURONS,))
    candidates = np.broadcast_to(
        np.arange(CAPMEM_MAX + 1, dtype=float)[:, None], (CAPMEM_MAX + 1, N_NEURONS)
    )
    best = codes[cell]
    rounds = 3 if cell in CROSSTALK_CELLS else 1
    for _ in range(rounds):
        values = dict(codes)
        values[cell] = candidates
        if cell in CROSSTALK_CELLS:
            values[f"mean_{cell}"] = quadrant_mean(np.asarray(best, dtype=float))
        for name in CROSSTALK_CELLS:
            values.setdefault(f"mean_{name}", quadrant_mean(codes[name]))
        values = evaluate(values, truth)
        error = np.abs(_quantity(quantity, values, truth) - target)
        error = np.where(np.isfinite(error), error, np.inf)
        chosen = np.argmin(error, axis=0)
        unreachable = ~np.isfinite(error.min(axis=0))
        best = np.where(unreachable, codes[cell], chosen)
    return np.asarray(best).astype(np.int64)
