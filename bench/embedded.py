"""Embedded vs host mode of the full LIF calibration, and the fleet figure.

Per mode and chip: device runs (host-started / embedded), emulated hardware time, host CPU time
outside the simulated device (what the host computes; the device's own simulation excluded),
success, and the RMS residual of every quantity on the ground truth (a fresh chip with the
result applied, successful neurons). Then the fleet figure: emulated hardware time per chip when
N chips are calibrated at once. In host mode one host drives every chip, so its round trips and
computation queue up (the fleet takes the sum of the chips' host-bound time, plus each chip's
own CapMem waits and runs); in embedded mode every chip runs its own program, so the fleet takes
as long as its slowest chip. (The model: host fleet time = max(slowest chip's hardware time,
sum over chips of round trips and host CPU time).)

    python bench/embedded.py [--chips 3] [--fleet 1,2,4,8]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from calib import NeuronTarget, calibrate
from device_model import SimulatedChip
from device_model import params as p

QUANTITIES = ("leak", "reset", "threshold", "tau_mem", "tau_syn_exc", "tau_syn_inh")


class TimedDevice:
    """`chip` with the host CPU time spent inside its calls counted (the simulation's own)."""

    def __init__(self, chip: SimulatedChip) -> None:
        self.chip = chip
        self.chip_id = chip.chip_id
        self.n_neurons = chip.n_neurons
        self.inside = 0.0

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return method(*args, **kwargs)
            finally:
                self.inside += time.process_time() - started

        return call

    @property
    def stats(self) -> Any:
        return self.chip.stats

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.chip, name)
        return self._timed(value) if callable(value) else value


def one(chip_id: str, mode: str) -> dict[str, Any]:
    chip = SimulatedChip(chip_id)
    device = TimedDevice(chip)
    target = NeuronTarget()
    started = time.process_time()
    result = calibrate(device, target, mode=mode)
    total = time.process_time() - started
    fresh = SimulatedChip(chip_id)
    result.apply(fresh)
    truth = fresh.true_quantities()
    goals = target.quantities()
    ok = result.success
    residuals = {}
    for quantity in QUANTITIES:
        miss = (truth[quantity] - goals[quantity])[ok]
        residuals[quantity] = float(np.sqrt(np.nanmean(miss**2)))
    stats = chip.stats
    return {
        "runs": stats.runs,
        "host_runs": stats.host_runs,
        "embedded_runs": stats.embedded_runs,
        "writes": stats.writes,
        "hardware": stats.hardware_time,
        "host_cpu": total - device.inside,
        "success": float(ok.mean()),
        "residuals": residuals,
        "mode": result.provenance.extra.get("mode"),
    }


def host_bound_time(row: dict[str, Any]) -> float:
    """Hardware time a chip needs the host for: its round trips (host mode)."""
    return row["host_runs"] * p.RUN_OVERHEAD + row["host_cpu"]


def fleet_time(rows: list[dict[str, Any]], mode: str) -> float:
    """Wall time (emulated) to calibrate the chips of `rows` at once."""
    if mode == "embedded":
        return max(row["hardware"] for row in rows)
    # One host serves every chip: its round trips and computation queue up, while the chips'
    # own waits (CapMem settling, the recorded durations) overlap with the other chips'.
    return max(max(row["hardware"] for row in rows), sum(host_bound_time(row) for row in rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=3)
    parser.add_argument("--fleet", default="1,2,4,8")
    args = parser.parse_args()
    chip_ids = [f"bench-embedded-{i}" for i in range(args.chips)]
    rows: dict[str, list[dict[str, Any]]] = {"host": [], "embedded": []}
    header = (
        f"{'mode':<9}{'chip':<18}{'runs':>6}{'host':>6}{'emb':>6}{'writes':>7}"
        f"{'hw s':>7}{'cpu s':>7}{'ok %':>7}  residual RMS (LSB; tau in ns)"
    )
    print(header)
    for chip_id in chip_ids:
        for mode in ("host", "embedded"):
            row = one(chip_id, mode)
            rows[mode].append(row)
            res = "  ".join(
                f"{q}={row['residuals'][q] * (1e9 if q.startswith('tau') else 1):.3g}"
                for q in QUANTITIES
            )
            print(
                f"{mode:<9}{chip_id:<18}{row['runs']:>6}{row['host_runs']:>6}"
                f"{row['embedded_runs']:>6}{row['writes']:>7}{row['hardware']:>7.2f}"
                f"{row['host_cpu']:>7.2f}{100 * row['success']:>7.1f}  {res}"
            )
    print("\nmean over chips         hw s   cpu s   ok %   residual ratio embedded / host")
    for mode in ("host", "embedded"):
        chosen = rows[mode]
        ratios = (
            "  ".join(
                f"{q}={np.mean([e['residuals'][q] for e in rows['embedded']]) / np.mean([h['residuals'][q] for h in rows['host']]):.2f}"  # noqa: E501
                for q in QUANTITIES
            )
            if mode == "embedded"
            else ""
        )
        print(
            f"{mode:<22}{np.mean([r['hardware'] for r in chosen]):>7.2f}"
            f"{np.mean([r['host_cpu'] for r in chosen]):>8.2f}"
            f"{100 * np.mean([r['success'] for r in chosen]):>7.1f}   {ratios}"
        )
    print("\nfleet: emulated hardware time per chip (s) with N chips calibrated at once")
    print(f"{'N':>4}{'host':>10}{'embedded':>10}")
    for count in (int(n) for n in args.fleet.split(",")):
        picked = {mode: [rows[mode][i % len(rows[mode])] for i in range(count)] for mode in rows}
        print(
            f"{count:>4}{fleet_time(picked['host'], 'host'):>10.2f}"
            f"{fleet_time(picked['embedded'], 'embedded'):>10.2f}"
        )


if __name__ == "__main__":
    main()
