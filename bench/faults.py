"""Calibrations under transient device failures: how many are lost, and what the retries cost.

    python bench/faults.py [--chips 50] [--rate 0.01] [--workers 2]

Each chip is a simulated chip whose every device call fails transiently with probability
`--rate`; every one is calibrated in full. Prints the calibrations lost to a failure (the goal is
none), the retries per calibration, and the host time against the same chips without faults.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from calib import calibrate
from device_model import SimulatedChip
from device_model.mismatch import Faults


def run(chip_id: str, rate: float) -> dict[str, float | str]:
    faults = Faults(run_failure_rate=rate, dead_fraction=0.0, stuck_fraction=0.0)
    started = time.perf_counter()
    try:
        result = calibrate(SimulatedChip(chip_id, faults=faults))
    except Exception as error:  # a lost calibration: the figure this benchmark counts
        return {
            "chip": chip_id,
            "lost": f"{type(error).__name__}: {error}",
            "host": time.perf_counter() - started,
        }
    return {
        "chip": chip_id,
        "lost": "",
        "host": time.perf_counter() - started,
        "retries": float(sum(result.provenance.retries.values())),
        "success": float(result.success.mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=50)
    parser.add_argument("--rate", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    ids = [f"faulty-{index:03d}" for index in range(args.chips)]
    with ProcessPoolExecutor(args.workers) as pool:
        started = time.perf_counter()
        outcomes = list(pool.map(run, ids, [args.rate] * len(ids)))
        wall = time.perf_counter() - started
    lost = [outcome for outcome in outcomes if outcome["lost"]]
    kept = [outcome for outcome in outcomes if not outcome["lost"]]
    print(
        f"{args.chips} chips, transient failure rate {args.rate:g} per device call, "
        f"{args.workers} workers, {wall:.0f} s wall"
    )
    print(f"calibrations lost to a failure: {len(lost)} (goal: 0)")
    for outcome in lost:
        print(f"  {outcome['chip']}: {outcome['lost']}")
    if kept:
        retries = np.array([outcome["retries"] for outcome in kept])
        success = np.array([outcome["success"] for outcome in kept])
        host = np.array([outcome["host"] for outcome in kept])
        print(f"retries per calibration: median {np.median(retries):.0f}, max {retries.max():.0f}")
        print(
            f"neurons calibrated: median {100 * np.median(success):.1f} %, "
            f"min {100 * success.min():.1f} %"
        )
        print(f"host time per calibration: median {np.median(host):.1f} s")


if __name__ == "__main__":
    main()
