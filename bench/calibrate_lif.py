"""Full LIF calibration of one simulated chip at the default target.

Prints, per quantity: device runs, emulated hardware time, host time, the residual RMS against
the chip's ground truth, the oracle's residual RMS (best code per neuron found from the truth
without noise) and their ratio; then the same for a baseline of plain 10-bit binary search with
single reads, as calix does.

    python bench/calibrate_lif.py [--chip ID]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calib import NeuronTarget, calibrate
from calib.algorithms import BinarySearch
from calib.sequences.calibrate import CalibrationOptions
from device_model import SimulatedChip
from device_model.oracle import QUANTITY_CELLS


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(values[np.isfinite(values)] ** 2)))


DEVICE_CALLS = ("write", "read_settings", "read_cadc", "record_madc", "count_spikes")


def time_device_calls(chip: SimulatedChip) -> dict[str, float]:
    """Wrap the chip's protocol calls so that the host time spent inside them is summed."""
    spent = {"inside": 0.0}
    for name in DEVICE_CALLS:
        call = getattr(chip, name)

        def timed(*args, _call=call, **kwargs):
            started = time.perf_counter()
            try:
                return _call(*args, **kwargs)
            finally:
                spent["inside"] += time.perf_counter() - started

        setattr(chip, name, timed)
    return spent


def report(label: str, chip_id: str, **kwargs) -> None:
    chip = SimulatedChip(chip_id)
    inside = time_device_calls(chip)
    target = NeuronTarget()
    started = time.perf_counter()
    result = calibrate(chip, target, **kwargs)
    host = time.perf_counter() - started
    goals = target.quantities()
    truth = chip.true_quantities()
    ok = result.success
    print(f"\n== {label}: chip {chip_id}, {100 * ok.mean():.1f} % of neurons succeeded")
    print(
        f"{'quantity':<14}{'runs':>7}{'hw s':>8}{'host s':>8}{'resid RMS':>12}"
        f"{'oracle RMS':>12}{'ratio':>7}"
    )
    steps = result.provenance.steps
    for quantity, cell in QUANTITY_CELLS.items():
        cost = steps.get(quantity, {})
        scale = 1e6 if quantity.startswith("tau") else 1.0
        residual = rms((truth[quantity] - goals[quantity])[ok]) * scale
        ideal = chip.ideal_codes(quantity, goals[quantity])
        oracle_truth = chip.true_quantities({cell: ideal})[quantity]
        oracle = rms((oracle_truth - goals[quantity])[ok]) * scale
        print(
            f"{quantity:<14}{cost.get('runs', 0):>7.0f}{cost.get('hardware_time', 0):>8.2f}"
            f"{cost.get('host_time', 0):>8.2f}{residual:>12.4g}{oracle:>12.4g}"
            f"{residual / oracle if oracle else float('nan'):>7.2f}"
        )
    stats = result.provenance.device_stats
    print(
        f"total: {stats['runs']:.0f} runs, {stats['writes']:.0f} writes, "
        f"{stats['hardware_time']:.1f} s emulated hardware time, {host:.1f} s host time "
        "(time constants in us, potentials in CADC LSB)"
    )
    print(
        f"host time inside device calls (the simulated chip) {inside['inside']:.1f} s, "
        f"outside them (calibration code) {host - inside['inside']:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", default="bench-chip-0")
    args = parser.parse_args()
    report("calib defaults (noise-robust search, averaged reads)", args.chip)
    report(
        "baseline: plain binary search, single reads",
        args.chip,
        algorithm=BinarySearch(),
        options=CalibrationOptions(cadc_samples=1),
    )


if __name__ == "__main__":
    main()
