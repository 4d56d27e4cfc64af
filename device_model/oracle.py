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
from device_model.compartments import connections, true_tau_icc
from device_model.dynamics import Membrane, interspike_interval, steady_potential
from device_model.mismatch import ChipTruth
from device_model.protocol import CAPMEM_MAX, N_NEURONS
from device_model.readout import cadc_continuous, cadc_ramp_count

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
COBA_QUANTITY_CELLS = {
    "e_coba_exc": "i_bias_syn_exc_coba",
    "e_coba_inh": "i_bias_syn_inh_coba",
}
"""COBA quantities `ideal_codes` knows: each input's effective reversal potential (CADC LSB on
the CADC's linear scale, the compressed top not applied: where the PSP amplitude extrapolates
to zero, see device_model/coba.py), set by the COBA bias at a given reference."""
SPIKING_QUANTITY_CELLS = {"firing_rate": "v_threshold"}
"""Quantities of a neuron firing under its own leak (leak above threshold): the regular rate
(Hz) is set by the threshold, with leak, reset, tau_mem and refractory time as configured."""
ALL_QUANTITY_CELLS = {
    **QUANTITY_CELLS,
    **MAC_QUANTITY_CELLS,
    **COBA_QUANTITY_CELLS,
    **SPIKING_QUANTITY_CELLS,
}
COMPARTMENT_QUANTITY_CELLS = {"tau_icc": "i_bias_icc"}
"""The inter-compartment time constant (s) of each neuron's connection (NaN without one), set
by the bias of the pair's owner (device_model/compartments.py)."""
ALL_QUANTITY_CELLS.update(COMPARTMENT_QUANTITY_CELLS)


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
    if name in COBA_QUANTITY_CELLS:
        # An extrapolated potential: the ramp's linear count, not the compressed reading.
        reversal = values[f"coba_reversal_{name[-3:]}"]
        reading = cadc_ramp_count(reversal, values, truth.cadc_channel_offset)
        return np.where(dead | stuck, np.nan, reading + values["cadc_channel_offset"])
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
    """Every quantity of TRUE_QUANTITIES, PSP_PER_WEIGHT and COBA_QUANTITY_CELLS for fully
    settled `codes` (cell -> float codes)."""
    values = evaluate(dict(codes), truth)
    return {
        **{name: _quantity(name, values, truth) for name in TRUE_QUANTITIES},
        **psp_per_weight(codes, truth),
        **{name: _quantity(name, values, truth) for name in COBA_QUANTITY_CELLS},
        **compartment_quantities(values, truth),
    }


def compartment_quantities(
    values: dict[str, np.ndarray], truth: ChipTruth
) -> dict[str, np.ndarray]:
    """tau_icc of every neuron's connection (NaN where it has none or a circuit is dead);
    nothing while no connection is closed (the quantities of single neurons as before)."""
    owners, partners = connections(values)
    if truth.compartments is None or not owners.size:
        return {}
    tau = true_tau_icc(values, truth.compartments, values["capacitance"])
    broken = np.zeros(N_NEURONS, dtype=bool)
    if owners.size:
        bad = truth.dead | truth.stuck
        pair_bad = bad[owners] | bad[partners]
        broken[owners[pair_bad]] = True
        broken[partners[pair_bad]] = True
    return {"tau_icc": np.where(broken, np.nan, tau)}


def ideal_icc_codes(
    target: ArrayLike, codes: dict[str, np.ndarray], truth: ChipTruth
) -> np.ndarray:
    """Per neuron of a connection, the i_bias_icc code whose tau_icc lies closest to `target`
    (the owner's code decides; its partner gets the same); other neurons keep their code."""
    assert truth.compartments is not None
    target = np.broadcast_to(np.asarray(target, dtype=float), (N_NEURONS,))
    values = evaluate(dict(codes), truth)
    candidates = np.arange(CAPMEM_MAX + 1, dtype=float)[:, None]
    grid = {**values, "i_bias_icc": np.broadcast_to(candidates, (CAPMEM_MAX + 1, N_NEURONS))}
    tau = true_tau_icc(grid, truth.compartments, values["capacitance"])
    error = np.abs(tau - target)
    error = np.where(np.isfinite(error), error, np.inf)
    best = np.argmin(error, axis=0)
    owners, partners = connections(values)
    out = np.asarray(codes["i_bias_icc"]).astype(np.int64).copy()
    out[owners] = best[owners]
    out[partners] = best[owners]
    return out


def ideal_codes(
    quantity: str, target: ArrayLike, codes: dict[str, np.ndarray], truth: ChipTruth
) -> np.ndarray:
    """Per neuron, the code of `quantity`'s cell whose noise-free value lies closest to
    `target`, every other cell at `codes`. All 1023 codes of all neurons are evaluated at once.

    Crosstalk makes a quadrant's voltage depend on the mean code of its cells; the mean is
    taken from the previous answer (three rounds, starting from the present codes), so the
    returned codes are consistent with the crosstalk they cause themselves.
    """
    if quantity in COMPARTMENT_QUANTITY_CELLS:
        return ideal_icc_codes(target, codes, truth)
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
