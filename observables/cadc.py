"""CADC readouts reduced to one value per neuron: the mean or the maximum of many samples."""

from __future__ import annotations

from typing import Any

import numpy as np

from device_model.protocol import CADC_MAX, Device


def read_cadc_samples(device: Device, samples: int, **read_kwargs: Any) -> np.ndarray:
    """`samples` CADC reads of every neuron as floats, shape (samples, n_neurons).

    `read_kwargs` go to `device.read_cadc` (e.g. `stimulus`, `read_time`). ValueError if
    `samples` is not a positive integer or the device answers with the wrong shape.
    """
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ValueError(f"samples must be an integer >= 1, got {samples!r}")
    codes = np.asarray(device.read_cadc(samples=int(samples), **read_kwargs))
    expected = (int(samples), device.n_neurons)
    if codes.shape != expected:
        raise ValueError(
            f"device {device.chip_id!r} returned CADC codes of shape {codes.shape}, "
            f"expected {expected}"
        )
    return codes.astype(float)


def cadc_mean(device: Device, samples: int = 10, **read_kwargs: Any) -> np.ndarray:
    """Mean CADC code per neuron over `samples` reads, shape (n_neurons,).

    Averaging n reads cuts the read noise (about 1 LSB) by sqrt(n).
    """
    return read_cadc_samples(device, samples, **read_kwargs).mean(axis=0)


def cadc_max(device: Device, samples: int = 100, **read_kwargs: Any) -> np.ndarray:
    """Largest CADC code per neuron over `samples` reads, shape (n_neurons,).

    With reads at random moments of a spiking neuron this approaches the highest potential it
    reaches (its threshold); more samples come closer.
    """
    return read_cadc_samples(device, samples, **read_kwargs).max(axis=0)


def cadc_standard_error(
    device: Device, samples: int = 10, **read_kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard error of the mean) per neuron over `samples` reads (samples >= 2)."""
    if isinstance(samples, int | np.integer) and samples < 2:
        raise ValueError(f"samples must be an integer >= 2 for a standard error, got {samples!r}")
    codes = read_cadc_samples(device, samples, **read_kwargs)
    return codes.mean(axis=0), codes.std(axis=0, ddof=1) / np.sqrt(codes.shape[0])


def timed_group_means(
    device: Device,
    samples: int,
    stimulus: Any,
    read_times: np.ndarray,
    groups: np.ndarray,
    start: float = 0.0,
) -> np.ndarray:
    """Mean CADC code per neuron, each neuron read `read_times[groups[neuron]]` after `start`
    into `stimulus` (one timed read of `samples` repetitions per group), shape (n_neurons,)."""
    means = np.full(device.n_neurons, np.nan)
    for group, read_time in enumerate(read_times):
        reading = cadc_mean(device, samples, stimulus=stimulus, read_time=start + float(read_time))
        means = np.where(groups == group, reading, means)
    return means


CLIPPED_MARGIN = 3.0
"""Mean codes within this many LSB of either end of the CADC's range count as clipped."""


def unclipped(*readings: np.ndarray) -> np.ndarray:
    """False for every neuron whose mean reading in any of `readings` lies at an end of the
    CADC's range: its samples were cut off there, so differences of them mean nothing."""
    inside = np.ones(np.shape(readings[0]), dtype=bool)
    for reading in readings:
        inside &= (reading > CLIPPED_MARGIN) & (reading < CADC_MAX - CLIPPED_MARGIN)
    return inside
