"""The synapse array, the synapse drivers and the non-spiking MAC ("hagen") mode.

Geometry (BSS-2, from calix hagen/synapse_driver.py and hagen/multiplication.py): each of the
two hemispheres has a synapse array of 256 rows x 256 columns feeding that hemisphere's 256
neurons; 128 synapse drivers per hemisphere each drive two rows; every synapse holds a 6-bit
weight and a 6-bit address; a row drives the excitatory or the inhibitory input of its
neurons. Drivers take their analog biases from four CapMem blocks of 64 drivers: driver d of
hemisphere h sits on block 2h + (d mod 2) (calix picks its ramp-calibration drivers that way).

MAC mode (seed paper section 3.4; calix hagen): a vector of 5-bit activations, one per row, is
sent as one event per row; the driver turns the activation into a pulse whose length grows with
the activation, and each synapse of the row emits a charge proportional to weight x pulse onto
its neuron's synaptic input. The neurons integrate with the leak switched off, starting from the
reset potential; the CADC converts the membranes after the last event.

Model of the pulse of driver D at activation a (a = 0 sends no event):
    pulse = MAC_CHARGE_PER_ACTIVATION * ramp_b * g_D * max(a - a0_D, 0)
    ramp_b = block gain * stp_i_ramp / STP_RAMP_REFERENCE_CODE
    a0_D = threshold_D + HAGEN_OFFSET_STEP * (driver_hagen_offset - HAGEN_OFFSET_CENTER)
The pulse scales the synaptic current jump of a spiking event of the same weight; the synapse
adds its own current mismatch (1 + eps_rn).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import numpy as np

from device_model import params as p
from device_model.dynamics import Membrane, NeuronEvents, clip_rails, fast_exp
from device_model.protocol import (
    COLUMNS_PER_HEMISPHERE,
    DRIVERS_PER_HEMISPHERE,
    N_DRIVER_BLOCKS,
    N_DRIVERS,
    N_HEMISPHERES,
    N_NEURONS,
    ROW_EXCITATORY,
    ROW_INHIBITORY,
    ROWS_PER_DRIVER,
    ROWS_PER_HEMISPHERE,
)
from device_model.stimuli import RowEvents

STREAM_SYNAPSES = 5
"""Random stream of the synapse and driver mismatch (apart from the neurons', so adding these
circuits left every neuron of a chip as it was)."""

DRIVER_INDEX = np.arange(N_DRIVERS)
DRIVER_BLOCK = (
    N_DRIVER_BLOCKS // N_HEMISPHERES * (DRIVER_INDEX // DRIVERS_PER_HEMISPHERE) + DRIVER_INDEX % 2
)
"""(256,) CapMem block of every driver."""
ROW_DRIVER = np.arange(N_HEMISPHERES * ROWS_PER_HEMISPHERE) // ROWS_PER_DRIVER
"""(512,) driver of every row (global row h * 256 + r)."""


def driver_block(driver: np.ndarray | int) -> np.ndarray:
    """CapMem block (0..3) of driver index h * 128 + d."""
    return DRIVER_BLOCK[np.asarray(driver)]


@dataclass(frozen=True)
class SynapseTruth:
    """Ground truth of the synapse array and the drivers (for studies and benchmarks only)."""

    synapse_gain: np.ndarray
    """(256, 512) relative current of each synapse (1 = nominal), indexed like synapse cells."""
    driver_gain: np.ndarray
    """(256,) relative pulse length per activation step of each driver."""
    driver_threshold: np.ndarray
    """(256,) activation offset a0 of each driver at the centre offset code (activation units)."""
    ramp_gain: np.ndarray
    """(4,) relative ramp slope of each CapMem block of drivers."""

    def __post_init__(self) -> None:
        for field in fields(self):
            getattr(self, field.name).flags.writeable = False


def draw_synapse_truth(seed: int, mismatch_scale: float) -> SynapseTruth:
    rng = np.random.default_rng([seed, STREAM_SYNAPSES])
    s = mismatch_scale
    return SynapseTruth(
        synapse_gain=1.0
        + p.SYNAPSE_GAIN_SPREAD * s * rng.standard_normal((ROWS_PER_HEMISPHERE, N_NEURONS)),
        driver_gain=np.exp(p.DRIVER_GAIN_SIGMA * s * rng.standard_normal(N_DRIVERS)),
        driver_threshold=p.DRIVER_THRESHOLD_SPREAD * s * rng.standard_normal(N_DRIVERS),
        ramp_gain=np.exp(p.STP_RAMP_BLOCK_SIGMA * s * rng.standard_normal(N_DRIVER_BLOCKS)),
    )


# --- Activation encoding ---------------------------------------------------------------------


def driver_threshold(offset_codes: np.ndarray, truth: SynapseTruth) -> np.ndarray:
    """a0 of every driver (activation units) at the given driver_hagen_offset codes; broadcasts
    over leading axes of `offset_codes` (..., 256)."""
    return truth.driver_threshold + p.HAGEN_OFFSET_STEP * (
        np.asarray(offset_codes, dtype=float) - p.HAGEN_OFFSET_CENTER
    )


def driver_slope(ramp_codes: np.ndarray, truth: SynapseTruth) -> np.ndarray:
    """(256,) pulse (in units of a spiking event's charge) per activation step of each driver."""
    ramp = truth.ramp_gain * np.asarray(ramp_codes, dtype=float) / p.STP_RAMP_REFERENCE_CODE
    return p.MAC_CHARGE_PER_ACTIVATION * truth.driver_gain * ramp[DRIVER_BLOCK]


def row_pulses(
    activations: np.ndarray, values: Mapping[str, np.ndarray], truth: SynapseTruth
) -> np.ndarray:
    """(512,) relative charge of every row's event for (512,) activations (0: no event)."""
    threshold = driver_threshold(values["driver_hagen_offset"], truth)[ROW_DRIVER]
    slope = driver_slope(values["stp_i_ramp"], truth)[ROW_DRIVER]
    enabled = values["driver_enable"][ROW_DRIVER] > 0
    pulse = slope * np.maximum(activations - threshold, 0.0)
    return np.where(enabled & (activations > 0), pulse, 0.0)


# --- Spiking mode: addressed events through rows ---------------------------------------------

COLUMN_HEMISPHERE = np.arange(N_NEURONS) // COLUMNS_PER_HEMISPHERE
"""(512,) hemisphere of every neuron column."""


def row_event_trains(
    stimuli: list[RowEvents], values: Mapping[str, np.ndarray], truth: SynapseTruth
) -> list[NeuronEvents]:
    """Per-neuron weighted event trains (excitatory, inhibitory) of addressed row events.

    An event on global row R = h * 256 + r reaches the neurons of hemisphere h through the
    synapses of row r whose address matches; each passes weight x (1 + its current mismatch)
    onto the input the row drives. A disabled driver or a row of mode 0 passes nothing. In
    spiking mode the driver's pulse is the fixed one of a spiking event (no activation).
    """
    times = np.concatenate([s.times for s in stimuli])
    rows = np.concatenate([s.rows for s in stimuli])
    addresses = np.concatenate([s.addresses for s in stimuli])
    local = rows % ROWS_PER_HEMISPHERE
    matches = values["synapse_address"][local] == addresses[:, None]
    here = COLUMN_HEMISPHERE[None, :] == (rows // ROWS_PER_HEMISPHERE)[:, None]
    passes = values["driver_enable"][ROW_DRIVER[rows]] > 0
    weights = np.where(
        matches & here & passes[:, None],
        values["synapse_weight"][local] * truth.synapse_gain[local],
        0.0,
    )
    modes = values["row_mode"][rows]
    return [
        NeuronEvents(times[modes == kind], weights[modes == kind], kind == ROW_INHIBITORY)
        for kind in (ROW_EXCITATORY, ROW_INHIBITORY)
        if np.any(modes == kind)
    ]


# --- Integration ------------------------------------------------------------------------------


def integration_time(sends: int = 1) -> float:
    """From the end of the reset to the conversion: every row's event slot (per send), then the
    wait."""
    return sends * ROWS_PER_HEMISPHERE * p.MAC_EVENT_INTERVAL + p.MAC_SETTLE_TIME


def run_time(sends: int = 1) -> float:
    """Emulated time of one MAC integration (reset, events, settling), the CADC read excluded."""
    return p.MAC_RESET_TIME + integration_time(sends)


def _kernel(s: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray) -> np.ndarray:
    """Membrane response (V per A/F) at delay s to a current jump decaying with tau_s, leaking
    with tau_m; tends to tau_s (1 - exp(-s / tau_s)) for a long tau_m."""
    rate = 1.0 / tau_m - 1.0 / tau_s
    near = np.abs(rate) * tau_m < 1e-4
    rate = np.where(near, 1e-4 / tau_m, rate)
    tau_s = 1.0 / (1.0 / tau_m - rate)
    return (fast_exp(-s / tau_s) - fast_exp(-s / tau_m)) / rate


def integrated_step(
    activations: np.ndarray,
    values: Mapping[str, np.ndarray],
    truth: SynapseTruth,
    m: Membrane,
    sends: int = 1,
) -> np.ndarray:
    """(512,) noise-free membrane change (V) at conversion caused by the rows' events.

    `activations` holds one activation per global row (512,). Row r's event of send k comes at
    (k * 256 + r) * MAC_EVENT_INTERVAL in both hemispheres at once.
    """
    pulses = row_pulses(activations, values, truth).reshape(N_HEMISPHERES, ROWS_PER_HEMISPHERE)
    modes = values["row_mode"].reshape(N_HEMISPHERES, ROWS_PER_HEMISPHERE)
    # Per synapse [r, n]: its row's pulse and mode in the hemisphere of column n.
    pulse = np.repeat(pulses.T, COLUMNS_PER_HEMISPHERE, axis=1)
    mode = np.repeat(modes.T, COLUMNS_PER_HEMISPHERE, axis=1)
    charge = values["synapse_weight"] * truth.synapse_gain * pulse
    slots = np.arange(sends * ROWS_PER_HEMISPHERE).reshape(sends, ROWS_PER_HEMISPHERE)
    delay = integration_time(sends) - slots * p.MAC_EVENT_INTERVAL
    step = np.zeros(N_NEURONS)
    for kind, jump, tau_s in (
        (ROW_EXCITATORY, m.jump_exc, m.tau_syn_exc),
        (ROW_INHIBITORY, m.jump_inh, m.tau_syn_inh),
    ):
        chosen = mode == kind
        if not chosen.any() or not np.any(jump):
            continue
        weighted = np.where(chosen, charge, 0.0)
        used = np.flatnonzero(weighted.any(axis=1))
        if used.size == 0:
            continue
        kernel = sum(_kernel(delay[k, used][:, None], m.tau_mem, tau_s) for k in range(sends))
        step += jump / m.capacitance * np.einsum("rn,rn->n", weighted[used], kernel)
    return step


def integrated_potential(
    activations: np.ndarray,
    values: Mapping[str, np.ndarray],
    truth: SynapseTruth,
    m: Membrane,
    sends: int = 1,
) -> np.ndarray:
    """(512,) noise-free membrane potential at conversion: released from reset, the events
    integrated, the (small) leak towards the resting potential included. A neuron whose
    threshold is enabled and crossed has fired and sits at its reset potential; clamped
    neurons stay there, dead ones at their fixed level."""
    relax = np.exp(-integration_time(sends) / m.tau_mem)
    step = integrated_step(activations, values, truth, m, sends)
    volts = m.e_rest + (m.v_hold - m.e_rest) * relax + step
    fired = m.threshold_on & ~m.clamped & (volts > m.v_threshold)
    volts = np.where(fired | m.clamped, m.v_hold, volts)
    return clip_rails(np.where(m.dead, p.DEAD_NEURON_POTENTIAL, volts))


def row_activations(activations: np.ndarray) -> np.ndarray:
    """A validated (256,) or (2, 256) activation array as (512,) per global row."""
    array = np.asarray(activations, dtype=float)
    if array.shape == (ROWS_PER_HEMISPHERE,):
        return np.tile(array, N_HEMISPHERES)
    return array.reshape(-1)


# --- Oracle ------------------------------------------------------------------------------------


def ideal_driver_offsets(truth: SynapseTruth) -> np.ndarray:
    """(256,) driver_hagen_offset codes whose activation offset a0 lies closest to 0, so that
    activation -> charge is proportional (all 64 codes evaluated)."""
    codes = np.arange(64, dtype=float)[:, None]
    return np.argmin(np.abs(driver_threshold(codes, truth)), axis=0).astype(np.int64)


def ideal_ramp_codes(truth: SynapseTruth, low: int = 0, high: int = 1022) -> np.ndarray:
    """(4,) stp_i_ramp codes that give every block the same mean driver slope: the median
    block's at the reference code."""
    mean_gain = (
        np.array([truth.driver_gain[DRIVER_BLOCK == b].mean() for b in range(N_DRIVER_BLOCKS)])
        * truth.ramp_gain
    )
    codes = p.STP_RAMP_REFERENCE_CODE * np.median(mean_gain) / mean_gain
    return np.clip(np.rint(codes), low, high).astype(np.int64)
