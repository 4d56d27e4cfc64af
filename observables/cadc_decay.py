"""Membrane decay time constants read with the CADC: every neuron at once, in a few runs.

The neurons are held at their reset potential and released; the CADC converts each neuron's
potential a fixed time after the release, in repetitions of the release (`read_cadc` with a
`read_time`). The distance to the resting potential decays as exp(-t / tau), so per neuron a
straight line through ln(rest - V(t)) over a ladder of read times gives tau. It is the way
calix reads the membrane time constant (`MembraneTimeConstCalibCADC`): one read of all 512
neurons costs one run, where an MADC recording costs one run per pair of neurons. The CADC's
8-bit resolution makes it coarser than an MADC fit of the same neuron, so it serves where about
a percent is enough: a probe, or the known membrane of a synaptic-input fit.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import Device
from device_model.stimuli import ResetRelease
from observables.cadc import cadc_mean

REST_SAMPLES = 400
"""Samples of the resting potential (unrelated moments, so cheap): its noise stays well below
that of the reads after the release."""
FIRST_READ = 0.1
"""The first read, as a fraction of the shortest expected time constant after the release."""
LADDER_RATIO = 1.6
"""Ratio of successive read times between 0.7 x the shortest and 1.5 x the longest expected."""
MIN_DISTANCE = 3.0
"""Reads closer than this (LSB) to the resting potential carry no weight: read noise and the
8-bit steps dominate their logarithm."""
MIN_READ = 8.0
"""Reads below this (LSB) carry no weight either: their samples may have clipped at code 0."""


def read_offsets(expected: ArrayLike) -> np.ndarray:
    """Read times after the release (s) for neurons expected to decay with `expected` (s)."""
    expected = np.asarray(expected, dtype=float)
    shortest, longest = float(np.min(expected)), float(np.max(expected))
    low, high = 0.7 * shortest, 1.5 * longest
    steps = max(2, int(np.ceil(np.log(high / low) / np.log(LADDER_RATIO))) + 1)
    return np.concatenate([[FIRST_READ * shortest], np.geomspace(low, high, steps)])


def cadc_decay_time_constants(
    device: Device,
    expected: ArrayLike,
    samples: int,
    release_time: float,
    consistency: float | None = None,
) -> np.ndarray:
    """Decay time constant (s) of every neuron after a reset release, NaN where fewer than two
    reads lie far enough from the resting potential. `expected` (s, scalar or per neuron) sets
    the read times; `samples` repetitions are averaged per read. The neurons must be quiet
    (threshold off); the reset lies on either side of the leak.

    With `consistency`, also NaN where the fit without the earliest read differs from the fit
    with it by more than that fraction: a decay that is not one exponential, e.g. one starting
    at the membrane's rail, which the heavily weighted earliest read would bias."""
    rest = cadc_mean(device, REST_SAMPLES)
    offsets = read_offsets(expected)
    stimulus = ResetRelease(release_time=release_time)
    reads = np.stack(
        [
            cadc_mean(device, samples, stimulus=stimulus, read_time=release_time + float(offset))
            for offset in offsets
        ]
    )
    # A reset above the resting potential (a defective neuron) decays downwards instead.
    side = np.where(rest - reads[0] >= 0, 1.0, -1.0)
    distance = side * (rest[None, :] - reads)
    usable = (distance > MIN_DISTANCE) & (reads > MIN_READ)
    tau = _log_line_time_constant(offsets, distance, usable)
    if consistency is not None:
        later = usable & (np.cumsum(usable, axis=0) > 1)  # without each neuron's earliest
        without_first = _log_line_time_constant(offsets, distance, later)
        with np.errstate(invalid="ignore"):
            differs = ~(np.abs(without_first / tau - 1) <= consistency)
        tau = np.where(differs, np.nan, tau)
    return tau


def _log_line_time_constant(
    offsets: np.ndarray, distance: np.ndarray, usable: np.ndarray
) -> np.ndarray:
    """-1 / slope of the weighted line through ln(distance) over the read times, per neuron
    (NaN with fewer than two usable reads or a rising distance)."""
    # Var(ln d) ~ (sigma / d)^2: weight each read by d^2.
    weights = np.where(usable, distance, 0.0) ** 2
    logs = np.log(np.where(usable, distance, 1.0))
    t = offsets[:, None]
    w_sum = weights.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t_mean = (weights * t).sum(axis=0) / w_sum
        y_mean = (weights * logs).sum(axis=0) / w_sum
        covariance = (weights * (t - t_mean) * (logs - y_mean)).sum(axis=0)
        spread = (weights * (t - t_mean) ** 2).sum(axis=0)
        slope = covariance / spread
        tau = -1.0 / slope
    enough = (usable.sum(axis=0) >= 2) & np.isfinite(tau) & (tau > 0)
    return np.where(enough, tau, np.nan)
