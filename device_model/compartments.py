"""Multi-compartment neurons: neighbouring neuron circuits connected by a conductance.

Geometry (BSS-2, from calix multicomp/neuron_icc_bias.py and the chip's neuron switches): a
neuron circuit connects to its right neighbour in the same row (neuron i to i + 1, not across
the row's end at 255 / 511) or to the circuit below it (neuron i of the top row to i + 256).
The connection's conductance is the inter-compartment conductance of the circuit that owns
the switch (the lower index of the pair), set by its `i_bias_icc` cell with a divide and a
multiply switch, in the leak conductance's form with its own per-circuit mismatch:

    g_icc = factor * ICC_CONDUCTANCE_PER_CODE * gain * max(c - c0, 0) / (1 + c / saturation)

The model connects pairs: a circuit takes part in at most one connection.

Quantity (calix's definition, which assumes equal compartments): tau_icc = C / g_icc. With
unequal membranes C is the harmonic mean 2 C1 C2 / (C1 + C2): the potential difference of a
pair without leak then decays with tau_icc / 2, the way calix measures it.

Dynamics: two coupled linear membranes,
    C1 dV1/dt = -g1 (V1 - E1) - g_icc (V1 - V2),   C2 likewise,
solved in closed form (eigenmodes of the 2x2 system), vectorised over pairs. A pair's traces
follow this free relaxation (the compartments' spiking and other stimuli are not modelled for
connected circuits); CADC reads and spike counts treat every circuit as unconnected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from device_model import params as p
from device_model.dynamics import Membrane, clip_rails
from device_model.protocol import COLUMNS_PER_HEMISPHERE, N_NEURONS

STREAM_COMPARTMENTS = 16
"""Random stream of the inter-compartment conductances (apart from every other circuit's, so
adding them left every chip's neurons and synapses as they were)."""

RIGHT, DOWN = "icc_connect_right", "icc_connect_down"


@dataclass(frozen=True)
class CompartmentTruth:
    """Ground truth of the inter-compartment conductances (for studies and benchmarks only)."""

    gain: np.ndarray
    """(512,) relative conductance of each circuit's inter-compartment conductance."""
    dead_zone: np.ndarray
    divide: np.ndarray
    multiply: np.ndarray

    def __post_init__(self) -> None:
        for field in fields(self):
            getattr(self, field.name).flags.writeable = False


def draw_compartment_truth(seed: int, mismatch_scale: float) -> CompartmentTruth:
    rng = np.random.default_rng([seed, STREAM_COMPARTMENTS])
    s = mismatch_scale

    def lognormal(sigma: float) -> np.ndarray:
        return np.exp(sigma * s * rng.standard_normal(N_NEURONS))

    return CompartmentTruth(
        gain=lognormal(p.ICC_GAIN_SIGMA),
        dead_zone=p.ICC_DEAD_ZONE_SPREAD * s * rng.standard_normal(N_NEURONS),
        divide=p.ICC_DIVIDE_FACTOR * lognormal(p.ICC_SWITCH_SPREAD),
        multiply=p.ICC_MULTIPLY_FACTOR * lognormal(p.ICC_SWITCH_SPREAD),
    )


# --- Layout ----------------------------------------------------------------------------------


def connection_error(first: int, second: int) -> str | None:
    """Why the chip cannot connect neurons `first` and `second` (None: it can)."""
    low, high = sorted((int(first), int(second)))
    if low < 0 or high >= N_NEURONS:
        return f"indices must lie in 0..{N_NEURONS - 1}"
    if high - low == 1 and low // COLUMNS_PER_HEMISPHERE == high // COLUMNS_PER_HEMISPHERE:
        return None
    if high - low == COLUMNS_PER_HEMISPHERE:
        return None
    if high - low == 1:
        return "they sit at the ends of different rows (a row's last neuron has no right neighbour)"
    return (
        "they are not neighbours (a neuron connects to its right neighbour i + 1 in its row "
        f"or to the neuron i + {COLUMNS_PER_HEMISPHERE} below it)"
    )


def connections(codes: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(owners, partners) of the connections the switches close; ValueError naming the
    neurons of a switch the chip cannot close or of a circuit in two connections."""
    right = np.asarray(codes.get(RIGHT, np.zeros(N_NEURONS))) > 0
    down = np.asarray(codes.get(DOWN, np.zeros(N_NEURONS))) > 0
    if not (right.any() or down.any()):
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    index = np.arange(N_NEURONS)
    row_end = index % COLUMNS_PER_HEMISPHERE == COLUMNS_PER_HEMISPHERE - 1
    if (right & row_end).any():
        n = int(np.flatnonzero(right & row_end)[0])
        raise ValueError(
            f"cell {RIGHT!r} at neuron {n}: a row's last neuron has no right neighbour"
        )
    bottom = index >= COLUMNS_PER_HEMISPHERE
    if (down & bottom).any():
        n = int(np.flatnonzero(down & bottom)[0])
        raise ValueError(f"cell {DOWN!r} at neuron {n}: the bottom row has no neuron below")
    owners = np.concatenate([np.flatnonzero(right), np.flatnonzero(down)])
    partners = np.concatenate(
        [np.flatnonzero(right) + 1, np.flatnonzero(down) + COLUMNS_PER_HEMISPHERE]
    )
    members = np.concatenate([owners, partners])
    used, counts = np.unique(members, return_counts=True)
    if (counts > 1).any():
        n = int(used[counts > 1][0])
        linked = sorted(
            {int(x) for o, q in zip(owners, partners, strict=True) if n in (o, q) for x in (o, q)}
            - {n}
        )
        raise ValueError(
            f"neuron {n} is connected to neurons {linked[0]} and {linked[1]}: the model "
            "connects pairs, a neuron takes part in one connection"
        )
    return owners.astype(np.int64), partners.astype(np.int64)


# --- Conductance and ground truth ------------------------------------------------------------


def g_icc(values: Mapping[str, np.ndarray], truth: CompartmentTruth) -> np.ndarray:
    """(..., 512) inter-compartment conductance of every circuit (used where it owns a closed
    connection); broadcasts over leading axes of the bias codes."""
    code = np.asarray(values["i_bias_icc"], dtype=float)
    factor = np.where(np.asarray(values["icc_divide"]) > 0, truth.divide, 1.0) * np.where(
        np.asarray(values["icc_multiply"]) > 0, truth.multiply, 1.0
    )
    return (
        factor
        * p.ICC_CONDUCTANCE_PER_CODE
        * truth.gain
        * np.maximum(code - truth.dead_zone, 0.0)
        / (1 + code / p.ICC_SATURATION_CODE)
    )


def pair_capacitance(
    capacitance: np.ndarray, owners: np.ndarray, partners: np.ndarray
) -> np.ndarray:
    """Harmonic mean of the pairs' membrane capacitances (the C of tau_icc = C / g_icc)."""
    c1, c2 = capacitance[..., owners], capacitance[..., partners]
    return 2 * c1 * c2 / (c1 + c2)


def true_tau_icc(
    values: Mapping[str, np.ndarray], truth: CompartmentTruth, capacitance: np.ndarray
) -> np.ndarray:
    """(..., 512) tau_icc of the connection each neuron belongs to (both neurons of a pair get
    it), NaN for a neuron without one."""
    owners, partners = connections(values)
    g = g_icc(values, truth)
    shape = np.broadcast_shapes(np.shape(g), np.shape(capacitance))
    out = np.full(shape, np.nan)
    if owners.size:
        c = np.broadcast_to(capacitance, shape)
        g = np.broadcast_to(g, shape)
        with np.errstate(divide="ignore"):
            tau = pair_capacitance(c, owners, partners) / g[..., owners]
        tau = np.where(np.isfinite(tau), tau, np.nan)
        out[..., owners] = tau
        out[..., partners] = tau
    return out


# --- Dynamics --------------------------------------------------------------------------------


def pair_traces(
    m: Membrane,
    owners: np.ndarray,
    partners: np.ndarray,
    conductance: np.ndarray,
    times: np.ndarray,
    connect_time: float | None,
) -> tuple[np.ndarray, np.ndarray]:
    """(owner traces, partner traces), each (n_pairs, T): each compartment at its own rest
    until `connect_time`, then the pair's free relaxation (None: connected throughout, the
    pair rests at its joint steady state). `m` covers all 512 neurons; `conductance` is the
    owners' g_icc."""
    c1, c2 = m.capacitance[owners, None], m.capacitance[partners, None]
    g1, g2 = m.g_leak[owners, None], m.g_leak[partners, None]
    e1, e2 = m.e_rest[owners, None], m.e_rest[partners, None]
    gc = conductance[:, None]
    # dV/dt = A (V - V*) with A = [[a, b], [c, d]]
    a, b = -(g1 + gc) / c1, gc / c1
    c, d = gc / c2, -(g2 + gc) / c2
    det = g1 * g2 + gc * (g1 + g2)
    steady1 = (g1 * e1 * (g2 + gc) + gc * g2 * e2) / det
    steady2 = (g2 * e2 * (g1 + gc) + gc * g1 * e1) / det
    if connect_time is None:
        v1 = np.broadcast_to(steady1, (owners.size, times.size))
        v2 = np.broadcast_to(steady2, (owners.size, times.size))
        return clip_rails(v1), clip_rails(v2)
    half_trace = (a + d) / 2
    root = np.sqrt(np.maximum(((a - d) / 2) ** 2 + b * c, 0.0))
    fast, slow = half_trace - root, half_trace + root
    x1, x2 = e1 - steady1, e2 - steady2
    s = np.maximum(times[None, :] - connect_time, 0.0)
    e_fast, e_slow = np.exp(fast * s), np.exp(slow * s)
    # expm(A s) = (e_slow (A - fast I) - e_fast (A - slow I)) / (slow - fast) (Sylvester);
    # equal eigenvalues only without coupling (root 0), where expm is diagonal.
    spread = slow - fast
    distinct = spread > 0
    safe = np.where(distinct, spread, 1.0)
    p11 = np.where(distinct, (e_slow * (a - fast) - e_fast * (a - slow)) / safe, np.exp(a * s))
    p22 = np.where(distinct, (e_slow * (d - fast) - e_fast * (d - slow)) / safe, np.exp(d * s))
    p12 = np.where(distinct, b * (e_slow - e_fast) / safe, 0.0)
    p21 = np.where(distinct, c * (e_slow - e_fast) / safe, 0.0)
    v1 = steady1 + p11 * x1 + p12 * x2
    v2 = steady2 + p21 * x1 + p22 * x2
    return clip_rails(v1), clip_rails(v2)
