"""Fingerprints of a simulated chip that tell a changed model from an unchanged one on any
machine.

Floating-point results differ between machines in their last bits (numpy's vectorised exp and
log take other code paths on other CPUs), so a hash of float bytes breaks on a new machine
although the model is the same. Floats are folded into one weighted sum, compared to a
relative 1e-9: a changed draw, default or formula of any weight moves it by far more. Integer
readouts (codes, counts) are hashed exactly.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

import numpy as np

from device_model import SimulatedChip

RTOL = 1e-9


def float_checksum(arrays: Iterable[np.ndarray]) -> float:
    """Sum over the arrays of their values (NaN as 0) times fixed weights in [1, 2)."""
    total = 0.0
    for index, value in enumerate(arrays):
        flat = np.nan_to_num(np.asarray(value, dtype=float).ravel())
        weights = np.random.default_rng([index, flat.size]).uniform(1, 2, flat.size)
        total += float(flat @ weights)
    return total


def integer_digest(arrays: Iterable[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for value in arrays:
        digest.update(np.ascontiguousarray(value, dtype=np.int64).tobytes())
    return digest.hexdigest()[:16]


def truth_arrays(chip: SimulatedChip, synapses: bool = True) -> list[np.ndarray]:
    """The chip's ground-truth arrays, field by field (the synapse array's too)."""
    parts = [chip.truth, chip.truth.synapses] if synapses else [chip.truth]
    return [
        getattr(part, field.name)
        for part in parts
        for field in dataclasses.fields(part)
        if isinstance(getattr(part, field.name), np.ndarray)
    ]
