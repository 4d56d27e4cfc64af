"""Shared checks of a routine's coarse reading against its precise one and the chip's truth."""

from __future__ import annotations

import numpy as np

from device_model import SimulatedChip


def assert_coarse_reading_holds(
    routine, chip: SimulatedChip, quantity: str, time_ratio: float = 0.3
) -> None:
    """`routine.measure_coarse` reads every healthy neuron, unbiased (median within 0.3 %),
    within 1.5 % (median), for less than `time_ratio` of the hardware time of
    `routine.measure`, which reads them too."""
    truth = chip.true_quantities()[quantity]
    routine.prelude(chip)
    try:
        before = chip.stats
        coarse = routine.measure_coarse(chip)
        middle = chip.stats
        precise = routine.measure(chip)
        after = chip.stats
    finally:
        routine.postlude(chip)
    healthy = ~chip.truth.outlier & ~chip.truth.dead
    relative = coarse[healthy] / truth[healthy] - 1
    assert np.mean(np.isfinite(relative)) >= 0.98
    assert abs(np.nanmedian(relative)) <= 0.003
    assert np.nanmedian(np.abs(relative)) <= 0.015
    assert np.isfinite(precise[healthy]).mean() >= 0.98
    coarse_time = middle.hardware_time - before.hardware_time
    assert coarse_time < time_ratio * (after.hardware_time - middle.hardware_time)


def assert_subset_recorded_alone(
    routine, chip: SimulatedChip, neurons: np.ndarray, quantity: str, rtol: float
) -> None:
    """`routine.measure_neurons` records only `neurons` (two per MADC run), NaN for the others,
    and reads them within `rtol` of the truth."""
    routine.prelude(chip)
    try:
        before = chip.stats.runs
        subset = routine.measure_neurons(chip, neurons)
        runs = chip.stats.runs - before
    finally:
        routine.postlude(chip)
    assert runs == -(-len(neurons) // 2)
    assert np.isnan(np.delete(subset, neurons)).all()
    truth = chip.true_quantities()[quantity][neurons]
    np.testing.assert_allclose(subset[neurons], truth, rtol=rtol)
