"""Nightly fleet throughput on this machine: chips per minute with 1 and 2 Dask workers.

Each configuration calibrates the same chips from scratch (a fresh store, so every chip gets a
whole calibration) on a LocalCluster of single-threaded worker processes (BLAS limited to one
thread). The workers are started and warmed up (imports) before the clock starts: cluster start
is a once-a-night cost, printed apart. Goal: parallel efficiency (rate with 2 workers / twice
the rate with 1) of at least 80 %.

Then the drift detection: every calibrated chip is checked as if it had aged by each of a set
of ages (SimulatedChip drift_hours), and the fraction of chips whose check calls it stale is
printed per age, with the median fraction of neurons out of tolerance.

    python bench/fleet.py [--chips 6] [--prefix bench-fleet]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from calib.core.results import NeuronResult
from calib.operations.fleet import ChipOutcome, dask_client, run_nightly
from calib.sequences.check import check_result
from device_model import SimulatedChip
from results_store import ResultsStore

AGES = (0, 25, 50, 100, 200, 500, 1000, 3000)
"""Hours of ageing at which the checks are tried."""


def _warm_up() -> str:
    import calib.operations.fleet  # noqa: F401  (the imports a task would otherwise pay for)

    return "ready"


def throughput(chip_ids: list[str], workers: int, root: Path) -> tuple[float, float, list[float]]:
    """(cluster start seconds, wall seconds for the chips, per-chip host seconds)."""
    started = time.perf_counter()
    with dask_client(workers=workers) as client:
        client.run(_warm_up)
        ready = time.perf_counter()
        outcomes: list[ChipOutcome] = run_nightly(
            chip_ids, root / f"store-{workers}", client=client
        )
        wall = time.perf_counter() - ready
    failed = [outcome for outcome in outcomes if outcome.status != "calibrated"]
    if failed:
        raise SystemExit(f"chips did not calibrate: {[(o.chip_id, o.detail) for o in failed]}")
    return ready - started, wall, [outcome.host_seconds for outcome in outcomes]


def drift_detection(store: ResultsStore, chip_ids: list[str]) -> None:
    print(f"\ndrift detection over {len(chip_ids)} chips (check_result on the aged chip):")
    print(f"{'age [h]':>8}{'stale chips':>14}{'median out of tol.':>20}{'stale quantities':>40}")
    results = [store.latest(chip_id) for chip_id in chip_ids]
    for hours in AGES:
        stale_chips, fractions, names = 0, [], set()
        for result in results:
            assert isinstance(result, NeuronResult)
            report = check_result(SimulatedChip(result.chip_id, drift_hours=hours), result)
            stale_chips += not report.holds
            names |= set(report.stale)
            fractions.append(max(check.out_of_tolerance for check in report.quantities.values()))
        print(
            f"{hours:>8}{stale_chips:>9} of {len(results)}"
            f"{100 * statistics.median(fractions):>19.1f}%"
            f"{', '.join(sorted(names)) or '-':>40}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=6, help="chips per configuration")
    parser.add_argument("--prefix", default="bench-fleet", help="chip id prefix")
    args = parser.parse_args()
    chip_ids = [f"{args.prefix}-{index}" for index in range(args.chips)]
    print(
        f"{args.chips} chips, {os.cpu_count()} CPUs, load average before {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rates = {}
        print(f"{'workers':>8}{'start s':>9}{'wall s':>9}{'host s/chip':>13}{'chips/min':>11}")
        for workers in (1, 2):
            start, wall, host = throughput(chip_ids, workers, root)
            rates[workers] = 60 * len(chip_ids) / wall
            print(
                f"{workers:>8}{start:>9.1f}{wall:>9.1f}{np.mean(host):>13.2f}"
                f"{rates[workers]:>11.2f}"
            )
        efficiency = rates[2] / (2 * rates[1])
        print(
            f"parallel efficiency 1 -> 2 workers: {100 * efficiency:.0f} % (goal >= 80 %); "
            f"load average after {os.getloadavg()[0]:.2f}"
        )
        drift_detection(ResultsStore(root / "store-1"), chip_ids)


if __name__ == "__main__":
    main()
