"""Synapse patterns and integrated-amplitude reads shared by the MAC-mode routines.

Two patterns, both on the whole chip at once:
- strength pattern: every row of both hemispheres connects to every neuron with one small
  weight; each neuron then integrates the mean over all drivers and synapses of its
  hemisphere, so its reading measures the neuron's own input strength.
- driver pattern (after calix hagen/synapse_driver.py, `get_synapse_mapping`): each driver's
  two rows connect to 8 neurons of their own, spread over the row, disjoint for the 32 drivers
  of one group (driver d is in group d mod 4); one run per group reads 32 drivers per
  hemisphere side by side.
"""

from __future__ import annotations

import numpy as np

from device_model.protocol import (
    COLUMNS_PER_HEMISPHERE,
    DRIVERS_PER_HEMISPHERE,
    N_DRIVERS,
    N_HEMISPHERES,
    N_NEURONS,
    ROW_DISABLED,
    ROW_EXCITATORY,
    ROW_INHIBITORY,
    ROWS_PER_HEMISPHERE,
    Device,
)
from device_model.stimuli import MacActivations
from observables.cadc import cadc_mean

STRENGTH_WEIGHT = 4
STRENGTH_ACTIVATION = 16
"""Every row at weight 4 and activation 16: some 40 CADC LSB at a nominal neuron."""
DRIVER_GROUPS = 4
NEURONS_PER_DRIVER = COLUMNS_PER_HEMISPHERE // (DRIVERS_PER_HEMISPHERE // DRIVER_GROUPS)
DRIVER_WEIGHT = 63
DRIVER_SENDS = 8
"""The driver pattern sends its vector 8 times (calix sends 8 events per driver read)."""
SAMPLES = 30
"""Integrations averaged per reading (integration and read noise ~1.6 LSB each)."""

DRIVER = np.arange(N_DRIVERS)
DRIVER_GROUP = DRIVER % DRIVER_GROUPS


def mac_mode_settings() -> dict[str, int]:
    """Neurons as integrators: leak and spiking off, both synaptic inputs on with their
    shortest time constant, full membrane capacitance (calix hagen configure_integration)."""
    return {
        "i_bias_leak": 0,
        "leak_divide": 0,
        "leak_multiply": 0,
        "threshold_enable": 0,
        "reset_hold": 0,
        "syn_exc_enable": 1,
        "syn_inh_enable": 1,
        "syn_exc_high_resistance": 0,
        "syn_inh_high_resistance": 0,
        "i_bias_syn_exc_tau": 1022,
        "i_bias_syn_inh_tau": 1022,
        "membrane_capacitance": 63,
        "adaptation_enable": 0,
        "exponential_enable": 0,
        "cadc_connect_reference": 0,
        "driver_enable": 1,
    }


def strength_pattern(inhibitory: bool) -> dict[str, np.ndarray | int]:
    """Every synapse at STRENGTH_WEIGHT, every row driving one input."""
    return {
        "synapse_weight": STRENGTH_WEIGHT,
        "row_mode": ROW_INHIBITORY if inhibitory else ROW_EXCITATORY,
    }


def strength_activations() -> MacActivations:
    return MacActivations(np.full(ROWS_PER_HEMISPHERE, STRENGTH_ACTIVATION))


def driver_columns() -> np.ndarray:
    """(256, 8) neuron indices read for each driver."""
    local = DRIVER % DRIVERS_PER_HEMISPHERE
    hemisphere = DRIVER // DRIVERS_PER_HEMISPHERE
    slot = local // DRIVER_GROUPS
    spread = DRIVERS_PER_HEMISPHERE // DRIVER_GROUPS
    columns = slot[:, None] + spread * np.arange(NEURONS_PER_DRIVER)[None, :]
    return hemisphere[:, None] * COLUMNS_PER_HEMISPHERE + columns


def driver_pattern() -> dict[str, np.ndarray]:
    """Both rows of every driver at DRIVER_WEIGHT on its own 8 neurons, excitatory."""
    weights = np.zeros((ROWS_PER_HEMISPHERE, N_NEURONS), dtype=np.int64)
    local = DRIVER % DRIVERS_PER_HEMISPHERE
    for row in (2 * local, 2 * local + 1):
        weights[row[:, None], driver_columns()] = DRIVER_WEIGHT
    return {"synapse_weight": weights, "row_mode": np.full(N_HEMISPHERES * 256, ROW_EXCITATORY)}


def group_activations(group: int, activation: int) -> MacActivations:
    """`activation` on both rows of the drivers of `group` in both hemispheres, 0 elsewhere."""
    rows = np.zeros((N_HEMISPHERES, ROWS_PER_HEMISPHERE), dtype=np.int64)
    drivers = np.flatnonzero(DRIVER_GROUP[:DRIVERS_PER_HEMISPHERE] == group)
    rows[:, 2 * drivers] = activation
    rows[:, 2 * drivers + 1] = activation
    return MacActivations(rows, sends=DRIVER_SENDS)


def zero_activations(sends: int = 1) -> MacActivations:
    return MacActivations(np.zeros(ROWS_PER_HEMISPHERE, dtype=np.int64), sends=sends)


def integrated_amplitude(
    device: Device, stimulus: MacActivations, samples: int = SAMPLES
) -> np.ndarray:
    """(512,) mean reading after integrating `stimulus` minus the mean reading without input
    (the integration baseline, read in the same way)."""
    baseline = cadc_mean(device, samples, stimulus=zero_activations(stimulus.sends))
    return cadc_mean(device, samples, stimulus=stimulus) - baseline


def driver_amplitudes(device: Device, activation: int, samples: int = SAMPLES) -> np.ndarray:
    """(256,) mean amplitude of each driver's 8 neurons at `activation` (driver pattern set)."""
    baseline = cadc_mean(device, samples, stimulus=zero_activations(DRIVER_SENDS))
    columns = driver_columns()
    amplitudes = np.empty(N_DRIVERS)
    for group in range(DRIVER_GROUPS):
        reading = cadc_mean(device, samples, stimulus=group_activations(group, activation))
        members = DRIVER_GROUP == group
        amplitudes[members] = (reading - baseline)[columns[members]].mean(axis=1)
    return amplitudes


def clean_pattern() -> dict[str, np.ndarray | int]:
    """No synapse connected: what the routines leave behind is restored by their postlude."""
    return {"synapse_weight": 0, "row_mode": ROW_DISABLED}
