"""Firing-rate targets, the reset holdoff and the MADC threshold method: how well they hold on
the chips' ground truth, and what each costs.

Firing rate: for each chip (default ones and harder ones, with more mismatch and noise) and
each target (one rate for every neuron, per-neuron rates), the fraction of reachable neurons
whose true rate lies within 5 % of the target (floor 97 %), how many the calibration called
unreachable, the agreement of the per-neuron verdicts with the ground truth, and the device
runs and hardware time of the rate step.
Holdoff: per-neuron targets 0..4 µs, the fraction within the 0.1 µs tolerance on the ground
truth, verdict agreement (over the neurons it could measure), and the step's cost.
MADC threshold: the default target calibrated with the MADC method, its residual on the ground
truth, the cross-check against the CADC and the extra hardware time over the CADC method.
Last, the default LIF calibration's cost, which none of these may change.

    python bench/firing_rate.py [--chips N] [--skip-madc]
"""

from __future__ import annotations

import argparse

import numpy as np

from calib import NeuronTarget, calibrate
from calib.core.failures import FailureKind
from calib.sequences.calibrate import CalibrationOptions
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


def holdoff_on_truth(chip: SimulatedChip, seed: int) -> None:
    goal = np.random.default_rng(seed).uniform(0.0, 4e-6, 512)
    result = calibrate(chip, NeuronTarget(holdoff_time=goal, refractory_time=4.5e-6))
    result.apply(chip)
    error = np.abs(chip.true_quantities()["holdoff_time"] - goal)
    failures = [f for f in result.failure_records if f.quantity == "holdoff_time"]
    unmeasured = {f.neuron for f in failures if f.kind == FailureKind.MEASUREMENT_FAILED}
    judged_ok = np.ones(512, dtype=bool)
    judged_ok[[f.neuron for f in failures]] = False
    measured = np.array([n not in unmeasured for n in range(512)])
    agree = np.mean((judged_ok == (error <= 0.1e-6))[measured])
    step = result.provenance.steps.get("holdoff_time", {})
    print(
        f"{chip.chip_id:<16}{'holdoff 0..4 µs':<24}{100 * np.mean(error <= 0.1e-6):>8.1f} %"
        f"{len(unmeasured):>6}{100 * agree:>9.1f} %{step.get('runs', 0):>7.0f}"
        f"{step.get('hardware_time', 0):>8.2f}   (unr. column: not measured)"
    )


def madc_threshold(chip_id: str, cadc_time: float) -> None:
    chip = SimulatedChip(chip_id)
    result = calibrate(chip, NeuronTarget(), options=CalibrationOptions(threshold_method="madc"))
    result.apply(chip)
    error = chip.true_quantities()["threshold"] - 125.0
    cross = result.models["threshold"]["madc_minus_cadc"]
    step = result.provenance.steps.get("threshold", {})
    print(
        f"\nMADC threshold ({chip_id}): {100 * np.nanmean(np.abs(error) <= 4):.1f} % within "
        f"4 LSB on the ground truth (median |error| {np.nanmedian(np.abs(error)):.2f} LSB); "
        f"cross-check MADC - CADC median {np.nanmedian(cross):.2f} LSB, 90 % within "
        f"{np.nanpercentile(np.abs(cross), 90):.2f} LSB; threshold step "
        f"{step.get('runs', 0):.0f} runs, {step.get('hardware_time', 0):.2f} s hardware time "
        f"({step.get('hardware_time', 0) - cadc_time:+.2f} s over the CADC method)"
    )


def lif_cost(chip_id: str) -> float:
    result = calibrate(SimulatedChip(chip_id), NeuronTarget())
    stats = result.provenance.device_stats
    print(
        f"\ndefault LIF calibration ({chip_id}, none of these fields): {stats['runs']:.0f} "
        f"runs, {stats['writes']:.0f} writes, {stats['hardware_time']:.2f} s hardware time"
    )
    return float(result.provenance.steps.get("threshold", {}).get("hardware_time", 0.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=int, default=2, help="chips of each kind")
    parser.add_argument("--skip-madc", action="store_true", help="leave out the MADC method")
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
    for index in range(args.chips):
        holdoff_on_truth(SimulatedChip(f"holdoff-bench-{index}"), index)
        holdoff_on_truth(SimulatedChip(f"holdoff-hard-{index}", **HARD), 100 + index)
    cadc_threshold_time = lif_cost("bench-chip-0")
    if not args.skip_madc:
        madc_threshold("bench-chip-0", cadc_threshold_time)


if __name__ == "__main__":
    main()
