"""COBA reversal potentials: calibrated, then judged on the chip's ground truth.

Per case (chip, target) it prints, per reversal potential: the fraction of reachable neurons
whose true effective reversal potential lies within 3 LSB of the target (floor 97 %), the
agreement of the calibration's verdicts with the ground truth (a neuron succeeds on the
quantity exactly when its true value is within tolerance), the RMS of the true residuals, and
the hardware time of the COBA steps. A neuron is reachable when the oracle's best COBA bias
code (the calibrated reference and everything else as calibrated) lies inside the searched
range and gives a true value within tolerance. Then the extra hardware time of the feature
over the default LIF calibration of the same chip, whose cost is printed beside it.

    python bench/coba.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calib import NeuronTarget, calibrate
from calib.core.plans import PLANS
from calib.routines.coba import BIAS_RANGE
from device_model import SimulatedChip
from device_model.oracle import COBA_QUANTITY_CELLS

FLOOR = 0.97
COBA_STEPS = ("coba_reference_exc", "e_coba_exc", "coba_reference_inh", "e_coba_inh")


def judged(chip: SimulatedChip, result, target: NeuronTarget) -> dict[str, dict[str, float]]:
    settings = result.to_settings()
    truth = chip.true_quantities(settings)
    failed = result.failed_quantities()
    figures = {}
    for name, cell in COBA_QUANTITY_CELLS.items():
        goal = target.quantities().get(name)
        if goal is None:
            continue
        tolerance = PLANS.quantities()[name].tolerance_for(goal)
        ideal = chip.ideal_codes(name, goal, settings)
        best = chip.true_quantities({**settings, cell: ideal})[name]
        reachable = (
            (ideal > BIAS_RANGE.low)
            & (ideal < BIAS_RANGE.high)
            & (np.abs(best - goal) <= tolerance)
        )
        within = np.abs(truth[name] - goal) <= tolerance
        succeeded = ~np.isin(np.arange(chip.n_neurons), sorted(failed.get(name, set())))
        residual = (truth[name] - goal)[reachable]
        figures[name] = {
            "reachable": float(reachable.mean()),
            "within": float(within[reachable].mean()),
            "agree": float((succeeded == within).mean()),
            "rms": float(np.sqrt(np.mean(residual**2))),
        }
    return figures


def cost(result, steps: tuple[str, ...]) -> float:
    return sum(result.provenance.steps.get(step, {}).get("hardware_time", 0.0) for step in steps)


def case(label: str, chip_args: dict, target: NeuronTarget, lif_cost: dict) -> bool:
    chip = SimulatedChip(**chip_args)
    started = time.perf_counter()
    result = calibrate(chip, target)
    host = time.perf_counter() - started
    stats = result.provenance.device_stats
    print(f"\n== {label}: {chip_args}")
    print(f"{'quantity':<12}{'reachable':>10}{'within 3':>10}{'verdicts':>10}{'RMS LSB':>9}")
    ok = True
    for name, figure in judged(chip, result, target).items():
        ok &= figure["within"] >= FLOOR
        print(
            f"{name:<12}{100 * figure['reachable']:>9.1f}%{100 * figure['within']:>9.1f}%"
            f"{100 * figure['agree']:>9.1f}%{figure['rms']:>9.2f}"
        )
    extra = stats["hardware_time"] - lif_cost.get(chip_args["chip_id"], np.nan)
    print(
        f"COBA steps {cost(result, COBA_STEPS):.2f} s hardware time; whole calibration "
        f"{stats['runs']:.0f} runs, {stats['hardware_time']:.1f} s (extra over the default LIF "
        f"calibration of this chip: {extra:.1f} s), {host:.1f} s host time"
    )
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first case only")
    quick = parser.parse_args().quick
    rng = np.random.default_rng(7)
    cases = [
        (
            "scalar targets",
            {"chip_id": "bench-coba-0"},
            NeuronTarget(e_coba_exc=170, e_coba_inh=40),
        ),
        (
            "per-neuron targets, harder chip",
            {"chip_id": "bench-coba-1", "mismatch_scale": 1.3, "noise_scale": 1.5},
            NeuronTarget(
                e_coba_exc=rng.uniform(130, 195, 512), e_coba_inh=rng.uniform(-30, 60, 512)
            ),
        ),
        (
            "other working point",
            {"chip_id": "bench-coba-2"},
            NeuronTarget(leak=100, threshold=150, reset=90, e_coba_exc=215, e_coba_inh=0),
        ),
    ]
    if quick:
        cases = cases[:1]
    lif_cost = {}
    print("default LIF calibration (no COBA field set):")
    for _, chip_args, _ in cases:
        chip = SimulatedChip(**chip_args)
        stats = calibrate(chip, NeuronTarget()).provenance.device_stats
        lif_cost[chip_args["chip_id"]] = stats["hardware_time"]
        print(
            f"  {chip_args['chip_id']}: {stats['runs']:.0f} runs, {stats['writes']:.0f} writes, "
            f"{stats['hardware_time']:.2f} s hardware time"
        )
    results = [case(label, chip_args, target, lif_cost) for label, chip_args, target in cases]
    print(
        f"\nfloor {100 * FLOOR:.0f} % within 3 LSB of reachable neurons: "
        f"{'met' if all(results) else 'MISSED'} in {sum(results)} of {len(results)} cases"
    )


if __name__ == "__main__":
    main()
