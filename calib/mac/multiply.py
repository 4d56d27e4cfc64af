"""The MAC experiment: signed weights times activation vectors on the chip.

Signed weights use two rows per input (seed paper section 3.4; calix hagen
multiplication.py): input i drives rows 2i (excitatory, the positive part) and 2i + 1
(inhibitory, the magnitude of the negative part) of driver i, in both hemispheres, so up to
128 inputs reach all 512 neuron columns in one run.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import (
    ACTIVATION_MAX,
    DRIVERS_PER_HEMISPHERE,
    N_HEMISPHERES,
    N_NEURONS,
    ROW_EXCITATORY,
    ROW_INHIBITORY,
    ROWS_PER_HEMISPHERE,
    SYNAPSE_WEIGHT_MAX,
    Device,
)
from device_model.stimuli import MacActivations
from observables.cadc import cadc_mean

MAX_INPUTS = DRIVERS_PER_HEMISPHERE
BASELINE_SAMPLES = 20


def _integer_array(name: str, value: ArrayLike, low: int, high: int, shape: str) -> np.ndarray:
    array = np.asarray(value)
    allowed = f"allowed: {shape} of integers {low}..{high}"
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer)
        or (
            np.issubdtype(array.dtype, np.floating)
            and np.all(np.isfinite(array))
            and np.all(array == np.round(array))
        )
    ):
        raise ValueError(f"{name}: got dtype {array.dtype}; {allowed}")
    bad = (array < low) | (array > high)
    if bad.any():
        index = tuple(int(i) for i in np.unravel_index(int(np.flatnonzero(bad)[0]), array.shape))
        raise ValueError(
            f"{name}: value {array[index]} at index {index} outside {low}..{high}; {allowed}"
        )
    return array.astype(np.int64)


def signed_synapse_settings(weights: ArrayLike) -> dict[str, np.ndarray]:
    """Synapse weights and row modes for a signed (n_inputs, 512) weight matrix."""
    array = np.asarray(weights)
    if array.ndim != 2 or array.shape[1] != N_NEURONS or not 1 <= array.shape[0] <= MAX_INPUTS:
        raise ValueError(
            f"weights: got shape {array.shape}; allowed: (n_inputs, {N_NEURONS}) "
            f"with 1 <= n_inputs <= {MAX_INPUTS}, integers "
            f"-{SYNAPSE_WEIGHT_MAX}..{SYNAPSE_WEIGHT_MAX}"
        )
    array = _integer_array(
        "weights", array, -SYNAPSE_WEIGHT_MAX, SYNAPSE_WEIGHT_MAX, f"(n_inputs, {N_NEURONS})"
    )
    synapses = np.zeros((ROWS_PER_HEMISPHERE, N_NEURONS), dtype=np.int64)
    n_inputs = array.shape[0]
    synapses[0 : 2 * n_inputs : 2] = np.maximum(array, 0)
    synapses[1 : 2 * n_inputs : 2] = np.maximum(-array, 0)
    modes = np.tile(np.arange(ROWS_PER_HEMISPHERE) % 2, N_HEMISPHERES)
    row_mode = np.where(modes == 0, ROW_EXCITATORY, ROW_INHIBITORY)
    return {"synapse_weight": synapses, "row_mode": row_mode}


def row_vector(activations: np.ndarray) -> np.ndarray:
    """(256,) row activations for one (n_inputs,) input vector: both rows of each input."""
    rows = np.zeros(ROWS_PER_HEMISPHERE, dtype=np.int64)
    rows[0 : 2 * activations.size : 2] = activations
    rows[1 : 2 * activations.size : 2] = activations
    return rows


def multiply(
    device: Device, weights: ArrayLike, activations: ArrayLike, *, samples: int = 1
) -> np.ndarray:
    """Outputs (n_vectors, 512) of activations (n_vectors, n_inputs) times the signed weights
    (n_inputs, 512) on `device`, in CADC LSB relative to the integration baseline.

    The device should be calibrated for MAC mode (`calibrate_mac(...).apply(device)`).
    Everything is validated before the first write. `samples` integrations per vector are
    averaged. The weights stay written (the synapse array is the experiment's).
    """
    settings = signed_synapse_settings(weights)
    n_inputs = np.asarray(weights).shape[0]
    vectors = np.asarray(activations)
    if vectors.ndim == 1:
        vectors = vectors[None, :]
    if vectors.ndim != 2 or vectors.shape[1] != n_inputs or vectors.shape[0] < 1:
        raise ValueError(
            f"activations: got shape {np.asarray(activations).shape}; allowed: "
            f"({n_inputs},) or (n_vectors, {n_inputs}) of integers "
            f"0..{ACTIVATION_MAX}"
        )
    vectors = _integer_array("activations", vectors, 0, ACTIVATION_MAX, f"(n_vectors, {n_inputs})")
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 1000:
        raise ValueError(f"samples = {samples!r} is outside the allowed range 1..1000")
    device.write(settings)
    zero = MacActivations(np.zeros(ROWS_PER_HEMISPHERE, dtype=np.int64))
    baseline = cadc_mean(device, max(BASELINE_SAMPLES, samples), stimulus=zero)
    out = np.empty((vectors.shape[0], N_NEURONS))
    for index, vector in enumerate(vectors):  # one device run per vector
        stimulus = MacActivations(row_vector(vector))
        out[index] = cadc_mean(device, samples, stimulus=stimulus) - baseline
    return out


def exact_product(weights: ArrayLike, activations: ArrayLike) -> np.ndarray:
    """The exact (n_vectors, 512) product the chip approximates (up to its gain)."""
    vectors = np.atleast_2d(np.asarray(activations, dtype=float))
    return vectors @ np.asarray(weights, dtype=float)
