"""Firing-rate targets: how well calibrated rates hold on the chips' ground truth, and what the
step costs.

For each chip (the default one and harder ones, with more mismatch and noise) and each target
(one rate for every neuron, per-neuron rates), prints: the fraction of reachable neurons whose
true rate lies within 5 % of the target (floor 97 %), how many the calibration called
unreachable, the agreement of the per-neuron verdicts with the ground truth, and the device
runs and hardware time of the rate step. Last, the default LIF calibration's cost, which a
rate target must leave as it was.

    python bench/firing_rate.py [--chips N]
"""

from __future__ import annotations

import argparse

import numpy as np

from calib import NeuronTarget, calibrate
from calib.core.failures import FailureKind
from device_model import SimulatedChip

FLOOR = 0.97
TOLERANCE = 0.05
HARD = {"mismatch_scale": 1.3, "noise_scale": 1.5}


def targets(seed: int) -> dict[str, NeuronTarget]:
    rng = np.random.default_rng(seed)
    rates = rng.uniform(10e3, 200e3, 512)
    # a slower membrane for the low rates, whose curve is steep near the leak otherwise
    tau_mem = np.where(rates < 40e3, 40e-6, 10e-6)
    return {
        "50 kHz everywhere": NeuronTarget(leak=120, reset=60, firing_rate=50e3),
        "per-neuron 10..200 kHz": NeuronTarget(
            leak=130, reset=55, tau_mem=tau_mem, firing_rate=rates
        ),
    }


def judge_on_truth(chip: SimulatedChip, target: NeuronTarget, label: str) -> None:
    result = calibrate(chip, target)
    result.apply(chip)
    goal = np.broadcast_to(target.firing_rate, (512,))
    truth = chip.true_quantities()["firing_rate"]
    error = np.abs(truth / goal - 1)
    rate_failures = [f for f in result.failure_records if f.quantity == "firing_rate"]
    unreachable = {f.neuron for f in rate_failures if f.kind == FailureKind.UNREACHABLE}
    reachable = np.array([n not in unreachable for n in range(512)])
    judged_ok = np.ones(512, dtype=bool)
    judged_ok[[f.neuron for f in rate_failures]] = False
    within = np.mean(error[reachable] < TOLERANCE)
    agree = np.mean(judged_ok == (error <= TOLERANCE))
    step = result.provenance.steps.get("firing_rate", {})
    print(
        f"{chip.chip_id:<16}{label:<24}{100 * within:>8.1f} %{len(unreachable):>6}"
        f"{100 * agree:>9.1f} %{step.get('runs', 0):>7.0f}{step.get('hardware_time', 0):>8.2f}"
        f"   {'ok' if within >= FLOOR else 'BELOW FLOOR'}"
    )


def lif_cost(chip_id: str) -> None:
    result = calibrate(SimulatedChip(chip_id), NeuronTarget())
    stats = result.provenance.device_stats
    print(
        f"\ndefault LIF calibration ({chip_id}, no rate): {stats['runs']:.0f} runs, "
        f"{stats['writes']:.0f} writes, {stats['hardware_time']:.2f} s hardware time"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=2, help="chips of each kind")
    args = parser.parse_args()
    print(
        f"{'chip':<16}{'target':<24}{'in 5 %':>10}{'unr.':>6}{'verdicts':>11}"
        f"{'runs':>7}{'hw s':>8}   (in 5 %: of reachable neurons, on the ground truth)"
    )
    for index in range(args.chips):
        for chip_id, kind, seed in (
            (f"rate-bench-{index}", {}, index),
            (f"rate-hard-{index}", HARD, 100 + index),
        ):
            for label, target in targets(seed).items():
                judge_on_truth(SimulatedChip(chip_id, **kind), target, label)
    lif_cost("bench-chip-0")


if __name__ == "__main__":
    main()
