"""From cell codes to the physical parameters of every neuron: the static part of the model.

Each derived parameter is a node with the cells (or other nodes) it depends on, so the chip
recomputes only what a write changed. Nodes broadcast: the oracle evaluates a cell at all its
codes at once by passing an array of shape (codes, 512) for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from device_model import coba
from device_model import params as p
from device_model.holdoff import effective_holdoff
from device_model.mismatch import ChipTruth

Values = Mapping[str, np.ndarray]

CROSSTALK_CELLS = ("v_leak", "v_reset", "v_threshold", "v_exp")
"""Voltage cells whose quadrant mean shifts the quadrant (crosstalk)."""


@dataclass(frozen=True)
class Node:
    name: str
    deps: tuple[str, ...]
    compute: Callable[[Values, ChipTruth], np.ndarray]


NODES: list[Node] = []


def node(*deps: str) -> Callable:
    def register(function: Callable[[Values, ChipTruth], np.ndarray]) -> Callable:
        NODES.append(Node(function.__name__, deps, function))
        return function

    return register


def quadrant_mean(codes: np.ndarray) -> np.ndarray:
    """(..., 4) mean code of each quadrant's 128 cells."""
    return codes.reshape(*codes.shape[:-1], 4, -1).mean(axis=-1)


def conductance(
    code: np.ndarray,
    per_code: float,
    gain: np.ndarray,
    dead_zone: np.ndarray,
    saturation: float,
    parallel: np.ndarray | float,
) -> np.ndarray:
    """g(c) = G * gain * max(c - c0, 0) / (1 + c / saturation) + g_parallel."""
    return per_code * gain * np.maximum(code - dead_zone, 0.0) / (1 + code / saturation) + parallel


def capmem_voltage(name: str, v: Values, truth: ChipTruth) -> np.ndarray:
    """V(c) with the quadrant's gain error and the crosstalk of the quadrant's cells of a kind."""
    shift = p.CROSSTALK_COEFFICIENT * (v[f"mean_{name}"] - p.CROSSTALK_CENTER)
    code = v[name] + truth.per_neuron(shift)
    return code * p.CAPMEM_VOLTS_PER_CODE * (1 + truth.per_neuron(truth.capmem_gain))


def _mean_node(name: str) -> None:
    NODES.append(Node(f"mean_{name}", (name,), lambda v, t: quadrant_mean(v[name])))


for _cell in CROSSTALK_CELLS:
    _mean_node(_cell)


@node("i_bias_leak", "leak_divide", "leak_multiply")
def g_leak(v: Values, t: ChipTruth) -> np.ndarray:
    factor = np.where(v["leak_divide"] > 0, t.leak_divide, 1.0) * np.where(
        v["leak_multiply"] > 0, t.leak_multiply, 1.0
    )
    # The switches scale the bias-controlled part; the parasitic conductance stays.
    return (
        factor
        * conductance(
            v["i_bias_leak"],
            p.LEAK_CONDUCTANCE_PER_CODE,
            t.leak_gain,
            t.leak_dead_zone,
            p.LEAK_SATURATION_CODE,
            0.0,
        )
        + t.leak_parallel
    )


@node("membrane_capacitance")
def capacitance(v: Values, t: ChipTruth) -> np.ndarray:
    return p.MEMBRANE_UNIT_CAPACITANCE * v["membrane_capacitance"] + t.membrane_intrinsic


@node("capacitance", "g_leak")
def tau_mem(v: Values, t: ChipTruth) -> np.ndarray:
    return v["capacitance"] / v["g_leak"]


@node("v_leak", "mean_v_leak", "g_leak")
def e_leak(v: Values, t: ChipTruth) -> np.ndarray:
    return (
        capmem_voltage("v_leak", v, t)
        - t.leak_drop
        + t.leak_offset
        + t.leak_beta * np.log(v["g_leak"] / p.LEAK_REFERENCE_CONDUCTANCE)
    )


@node("syn_exc_enable", "syn_inh_enable", "i_bias_syn_exc_shift", "i_bias_syn_inh_shift")
def i_offset(v: Values, t: ChipTruth) -> np.ndarray:
    """Offset current of the enabled synaptic inputs (A); zero at each input's cancel code."""
    total = 0.0
    for kind in ("exc", "inh"):
        current = (
            p.SYN_OFFSET_CURRENT_PER_CODE
            * getattr(t, f"syn_{kind}_offset_gain")
            * (v[f"i_bias_syn_{kind}_shift"] - getattr(t, f"syn_{kind}_cancel_code"))
        )
        total = total + np.where(v[f"syn_{kind}_enable"] > 0, current, 0.0)
    return total


@node("e_leak", "i_offset", "g_leak")
def e_rest(v: Values, t: ChipTruth) -> np.ndarray:
    """Resting potential without stimulus: the leak potential moved by the input offsets."""
    return v["e_leak"] + v["i_offset"] / v["g_leak"]


@node("v_reset", "mean_v_reset")
def v_reset_target(v: Values, t: ChipTruth) -> np.ndarray:
    return capmem_voltage("v_reset", v, t) - t.reset_drop + t.reset_offset


@node("i_bias_reset")
def g_reset(v: Values, t: ChipTruth) -> np.ndarray:
    return conductance(
        v["i_bias_reset"],
        p.RESET_CONDUCTANCE_PER_CODE,
        t.reset_gain,
        0.0,
        p.RESET_SATURATION_CODE,
        0.0,
    )


@node("e_rest", "v_reset_target", "g_leak", "g_reset")
def v_hold(v: Values, t: ChipTruth) -> np.ndarray:
    """Potential while held in reset: the finite clamp against the leak (and input offsets)."""
    g_l, g_r = v["g_leak"], v["g_reset"]
    return (g_l * v["e_rest"] + g_r * v["v_reset_target"]) / (g_l + g_r)


@node("v_threshold", "mean_v_threshold")
def v_threshold_volts(v: Values, t: ChipTruth) -> np.ndarray:
    return capmem_voltage("v_threshold", v, t) + t.threshold_offset


def _tau_syn(kind: str, v: Values, t: ChipTruth) -> np.ndarray:
    g = conductance(
        v[f"i_bias_syn_{kind}_tau"],
        p.SYN_CONDUCTANCE_PER_CODE,
        getattr(t, f"syn_{kind}_tau_gain"),
        getattr(t, f"syn_{kind}_dead_zone"),
        p.SYN_SATURATION_CODE,
        getattr(t, f"syn_{kind}_parallel"),
    )
    high = np.where(
        v[f"syn_{kind}_high_resistance"] > 0, getattr(t, f"syn_{kind}_high_resistance"), 1.0
    )
    return high * p.SYN_CAPACITANCE / g


@node("i_bias_syn_exc_tau", "syn_exc_high_resistance")
def tau_syn_exc(v: Values, t: ChipTruth) -> np.ndarray:
    return _tau_syn("exc", v, t)


@node("i_bias_syn_inh_tau", "syn_inh_high_resistance")
def tau_syn_inh(v: Values, t: ChipTruth) -> np.ndarray:
    return _tau_syn("inh", v, t)


def _jump(kind: str, v: Values, t: ChipTruth) -> np.ndarray:
    gm = (np.maximum(v[f"i_bias_syn_{kind}_gm"], 0.0) / p.SYN_GM_REFERENCE_CODE) ** (
        p.SYN_GM_EXPONENT
    )
    jump = (
        p.SYN_CURRENT_PER_WEIGHT
        * t.per_neuron(t.syn_dac_gain)
        * getattr(t, f"syn_{kind}_gm_gain")
        * gm
    )
    # The quadrant's synapse DAC bias scales the current of every synapse (1 at its default).
    jump = jump * t.per_neuron(np.asarray(v["syn_i_bias_dac"]) / p.SYN_DAC_REFERENCE_CODE)
    return np.where(v[f"syn_{kind}_enable"] > 0, jump, 0.0)


@node("i_bias_syn_exc_gm", "syn_exc_enable", "syn_i_bias_dac", "coba_scale_exc")
def jump_exc(v: Values, t: ChipTruth) -> np.ndarray:
    """Synaptic current jump (A) per excitatory weight unit; zero while the input is off."""
    return _jump("exc", v, t) * v["coba_scale_exc"]


@node("i_bias_syn_inh_gm", "syn_inh_enable", "syn_i_bias_dac", "coba_scale_inh")
def jump_inh(v: Values, t: ChipTruth) -> np.ndarray:
    """Synaptic current jump (A) per inhibitory weight unit (pulls down); zero while off."""
    return -_jump("inh", v, t) * v["coba_scale_inh"]


# --- MAC mode (device_model/synapses.py): charge gain of the synaptic inputs ---------------
@node("jump_exc", "tau_syn_exc", "capacitance")
def mac_gain_exc(v: Values, t: ChipTruth) -> np.ndarray:
    """Membrane step (V) of a fully integrated excitatory event per weight unit and unit
    pulse: jump * tau_syn / C (the leak off)."""
    return v["jump_exc"] * v["tau_syn_exc"] / v["capacitance"]


@node("jump_inh", "tau_syn_inh", "capacitance")
def mac_gain_inh(v: Values, t: ChipTruth) -> np.ndarray:
    """Magnitude of the membrane step (V) of an inhibitory event, as mac_gain_exc."""
    return -v["jump_inh"] * v["tau_syn_inh"] / v["capacitance"]


@node("refractory_counter", "refractory_clock_scale")
def refractory_time(v: Values, t: ChipTruth) -> np.ndarray:
    return v["refractory_counter"] * 2.0 ** (v["refractory_clock_scale"] + 1) / p.REFRACTORY_CLOCK


@node("reset_holdoff", "refractory_time")
def holdoff_time(v: Values, t: ChipTruth) -> np.ndarray:
    """Free part of the holdoff (s): released from the reset, spikes still blocked."""
    return effective_holdoff(v["reset_holdoff"], v["refractory_time"], t.holdoff)


@node("i_bias_adapt_a", "adaptation_enable")
def adapt_a(v: Values, t: ChipTruth) -> np.ndarray:
    a = p.ADAPT_A_PER_CODE * t.adapt_a_gain * v["i_bias_adapt_a"]
    return np.where(v["adaptation_enable"] > 0, a, 0.0)


@node("i_bias_adapt_b", "adaptation_enable")
def adapt_b(v: Values, t: ChipTruth) -> np.ndarray:
    b = p.ADAPT_B_PER_CODE * t.adapt_b_gain * v["i_bias_adapt_b"]
    return np.where(v["adaptation_enable"] > 0, b, 0.0)


@node("i_bias_adapt_tau")
def tau_w(v: Values, t: ChipTruth) -> np.ndarray:
    g = conductance(
        v["i_bias_adapt_tau"],
        p.ADAPT_CONDUCTANCE_PER_CODE,
        t.adapt_tau_gain,
        0.0,
        p.ADAPT_SATURATION_CODE,
        p.ADAPT_PARALLEL_CONDUCTANCE,
    )
    return p.ADAPT_CAPACITANCE / g


@node("i_bias_exp")
def delta_t(v: Values, t: ChipTruth) -> np.ndarray:
    return (p.EXP_DELTA_T_BASE + p.EXP_DELTA_T_PER_CODE * v["i_bias_exp"]) * t.exp_slope_gain


@node("v_exp", "mean_v_exp")
def v_t(v: Values, t: ChipTruth) -> np.ndarray:
    return capmem_voltage("v_exp", v, t) + t.exp_onset_offset


@node("cadc_ramp_offset")
def cadc_v0(v: Values, t: ChipTruth) -> np.ndarray:
    """(..., 512) ramp start voltage seen by each channel."""
    volts = v["cadc_ramp_offset"] * p.CAPMEM_VOLTS_PER_CODE * (1 + t.capmem_gain)
    return t.per_neuron(volts + t.cadc_ramp_offset_error)


@node("cadc_ramp_slope")
def cadc_lsb(v: Values, t: ChipTruth) -> np.ndarray:
    """(..., 512) volts per LSB of each channel (higher slope code: steeper ramp, more V/LSB)."""
    lsb = (
        p.CADC_NOMINAL_LSB
        * (v["cadc_ramp_slope"] + p.CADC_SLOPE_CODE_OFFSET)
        / (500 + p.CADC_SLOPE_CODE_OFFSET)
    )
    return t.per_neuron(lsb * t.cadc_ramp_slope_gain)


@node("v_cadc_reference")
def v_reference(v: Values, t: ChipTruth) -> np.ndarray:
    volts = v["v_cadc_reference"] * p.CAPMEM_VOLTS_PER_CODE * (1 + t.capmem_gain)
    return t.per_neuron(volts)


# --- COBA synaptic inputs (device_model/coba.py) ------------------------------------------
def _coba_nodes(kind: str) -> None:
    reference, bias = f"v_syn_{kind}_coba_reference", f"i_bias_syn_{kind}_coba"

    def v_ref(v: Values, t: ChipTruth) -> np.ndarray:
        return coba.reference_volts(kind, v[reference], t.per_neuron(t.capmem_gain), t.coba)

    def k(v: Values, t: ChipTruth) -> np.ndarray:
        return coba.slope(kind, v[bias], t.coba)

    def scale(v: Values, t: ChipTruth) -> np.ndarray:
        return coba.strength_scale(
            kind, v["e_rest"], v[f"coba_reference_{kind}"], v[f"coba_slope_{kind}"]
        )

    def reversal(v: Values, t: ChipTruth) -> np.ndarray:
        return coba.reversal_volts(kind, v[f"coba_reference_{kind}"], v[f"coba_slope_{kind}"])

    NODES.append(Node(f"coba_reference_{kind}", (reference,), v_ref))
    NODES.append(Node(f"coba_slope_{kind}", (bias,), k))
    NODES.append(
        Node(
            f"coba_scale_{kind}", ("e_rest", f"coba_reference_{kind}", f"coba_slope_{kind}"), scale
        )
    )
    NODES.append(
        Node(f"coba_reversal_{kind}", (f"coba_reference_{kind}", f"coba_slope_{kind}"), reversal)
    )


for _kind in coba.KINDS:
    _coba_nodes(_kind)


def _order(nodes: list[Node]) -> list[Node]:
    """Topological order: a node after every node it depends on."""
    by_name = {n.name: n for n in nodes}
    done: list[Node] = []
    seen: set[str] = set()

    def visit(current: Node) -> None:
        if current.name in seen:
            return
        seen.add(current.name)
        for dep in current.deps:
            if dep in by_name:
                visit(by_name[dep])
        done.append(current)

    for current in nodes:
        visit(current)
    return done


ORDERED_NODES = _order(NODES)
DERIVED_NAMES = tuple(n.name for n in ORDERED_NODES)


def evaluate(
    values: dict[str, np.ndarray], truth: ChipTruth, changed: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Compute derived nodes into `values` (which holds the cell codes).

    With `changed` (names of cells written since the last call) only the nodes downstream of
    them are recomputed; without it every node is, except those already present in `values`
    (so a caller can pin e.g. a crosstalk quadrant mean). Returns `values`.
    """
    if changed is None:
        for current in ORDERED_NODES:
            if current.name not in values:
                values[current.name] = current.compute(values, truth)
        return values
    dirty = set(changed)
    for current in ORDERED_NODES:
        if dirty.intersection(current.deps):
            values[current.name] = current.compute(values, truth)
            dirty.add(current.name)
    return values
