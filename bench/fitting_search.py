"""Fitting search against binary search for the time constants on simulated chips.

Calibrates each chip once per search (the time constants only differ; everything else runs with
the defaults) and prints, per time constant: MADC measurements and device runs spent in its
step (the routine's prelude and the uncalibrated-spread read included), emulated hardware time,
host time, the relative residual RMS against the chip's ground truth over the neurons the
calibration judged successful, and the neurons that failed on that quantity. Then, for each
fitting search, how well the kept curves serve other targets without a sweep (codes predicted
from `NeuronResult.models`, judged on the ground truth).

    python bench/fitting_search.py [--chips chip-a chip-b] [--targets 8 12 15]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from calib import NeuronTarget, calibrate
from calib.algorithms import Algorithm, BinarySearch, FittingSearch, curves_from_params
from calib.core.routine import ParameterRange
from device_model import SimulatedChip
from device_model.oracle import QUANTITY_CELLS

TIME_CONSTANTS = ("tau_mem", "tau_syn_exc", "tau_syn_inh")
RUNS_PER_MEASUREMENT = 256
"""An all-neuron MADC recording: two neurons per run."""

SEARCHES: dict[str, Callable[[], Algorithm]] = {
    "binary (10 steps)": BinarySearch,
    "fitting, even 5-code sweep, correct": lambda: FittingSearch(sweep=5, correct=True),
    "fitting, hint, refine=1": lambda: FittingSearch(refine=1),
    "fitting, hint, refine=2": lambda: FittingSearch(refine=2),
}


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values**2))) if values.size else float("nan")


def compare(chip_id: str, second_targets: list[float]) -> None:
    print(f"\n== chip {chip_id}, default target (tau_mem = tau_syn = 10 us)")
    print(
        f"{'search':<38}{'quantity':<13}{'meas':>5}{'runs':>7}{'hw s':>7}{'host s':>8}"
        f"{'resid RMS':>11}{'failed':>7}"
    )
    kept = {}
    for label, make in SEARCHES.items():
        chip = SimulatedChip(chip_id)
        result = calibrate(
            chip, NeuronTarget(), algorithm={quantity: make() for quantity in TIME_CONSTANTS}
        )
        truth = chip.true_quantities()
        goals = result.target.quantities()
        for quantity in TIME_CONSTANTS:
            cost = result.provenance.steps[quantity]
            relative = (truth[quantity] / goals[quantity] - 1.0)[result.success]
            failed = sum(f"{quantity}:" in reason for reason in result.reasons.values())
            print(
                f"{label:<38}{quantity:<13}{cost['runs'] / RUNS_PER_MEASUREMENT:>5.0f}"
                f"{cost['runs']:>7.0f}{cost['hardware_time']:>7.2f}{cost['host_time']:>8.2f}"
                f"{100 * rms(relative):>10.3f}%{failed:>7d}"
            )
        if result.models:
            kept[label] = (chip, result)
    print(
        "residual RMS: relative, over successful neurons; meas: all-neuron MADC "
        "measurements (256 runs each)"
    )
    for label, (chip, result) in kept.items():
        print(f"\n-- {label}: kept curves, codes for other targets without a sweep")
        print(f"{'quantity':<13}{'target us':>10}{'RMS':>8}{'median':>8}{'p90':>8}")
        for quantity in TIME_CONSTANTS:
            curves = curves_from_params(result.models[quantity], ParameterRange())
            for second in second_targets:
                codes = curves.predict(np.full(chip.n_neurons, second * 1e-6))
                reached = chip.true_quantities({QUANTITY_CELLS[quantity]: codes})[quantity]
                miss = (reached / (second * 1e-6) - 1.0)[result.success]
                print(
                    f"{quantity:<13}{second:>10.1f}{100 * rms(miss):>7.2f}%"
                    f"{100 * np.median(np.abs(miss)):>7.2f}%"
                    f"{100 * np.percentile(np.abs(miss), 90):>7.2f}%"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", nargs="+", default=["chip-a"])
    parser.add_argument(
        "--targets",
        nargs="+",
        type=float,
        default=[8.0, 12.0, 15.0],
        help="second targets (us) served from the kept curves",
    )
    args = parser.parse_args()
    for chip_id in args.chips:
        compare(chip_id, args.targets)


if __name__ == "__main__":
    main()
