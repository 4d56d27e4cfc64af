"""Multi-compartment neurons: tau_icc calibrated across its range, judged on the ground truth.

Part 1, the tau_icc plan on its own (search, verification, judgement) on chips not used in
development, for scalar targets over the whole range 0.1..30 us, both layouts, and per-pair
targets; on typical chips and on harder ones (mismatch x1.3, noise x1.5). Per case it prints:

- reach: connected neurons the oracle can bring within 5 % (best code inside the bias range)
- within: reachable neurons truly within 5 % after the calibration (floor: >= 95 %)
- false fail / false succ: verdicts that disagree with the ground truth (counts)
- runs and hardware time of the step (its search and verification)

Part 2, full calibrations of one chip with and without tau_icc: the feature's extra hardware
time, and the default LIF calibration's cost (the same runs and hardware time as before).

    python bench/compartments.py [--quick] [--workers N]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from calib import PLANS, NeuronTarget, calibrate
from calib.core.retry import retrying
from calib.routines.compartments import layout_pairs
from calib.sequences.session import CalibrationOptions, CalibrationSession
from device_model import SimulatedChip
from device_model.protocol import CAPMEM_MAX, N_NEURONS

FLOOR_WITHIN_OF_REACHABLE = 0.95
TOLERANCE = 0.05
US = 1e-6
TARGETS_US = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)
CHIPS = (("bench-icc-1", 1.0, 1.0), ("bench-icc-2", 1.3, 1.5))
PER_PAIR = "per pair 0.2..25"


def _goal(case: str, layout: str, seed: int) -> np.ndarray:
    if case == PER_PAIR:
        pairs = layout_pairs(layout)
        rng = np.random.default_rng(seed)
        per_pair = np.exp(rng.uniform(np.log(0.2 * US), np.log(25 * US), len(pairs)))
        goal = np.full(N_NEURONS, 1 * US)
        goal[pairs[:, 0]] = per_pair
        goal[pairs[:, 1]] = per_pair
        return goal
    return np.full(N_NEURONS, float(case) * US)


def run_case(chip_id: str, mismatch: float, noise: float, case: str, layout: str) -> dict:
    chip = SimulatedChip(chip_id, mismatch_scale=mismatch, noise_scale=noise)
    goal = _goal(case, layout, seed=len(chip_id) + len(layout))
    target = NeuronTarget(tau_icc=goal, compartments=layout)
    session = CalibrationSession(retrying(chip), target, CalibrationOptions())
    plan = PLANS["tau_icc"]
    assert plan.action is not None and plan.routine is not None and plan.judge is not None
    before = chip.stats
    started = time.perf_counter()
    plan.action(session, plan)
    achieved = {"tau_icc": session.measure(plan.routine(session))}
    failures = plan.judge(session, achieved)
    spent = chip.stats - before
    host = time.perf_counter() - started
    plan.extra["configure_after_verify"](session)
    connected = np.zeros(N_NEURONS, dtype=bool)
    connected[layout_pairs(layout).reshape(-1)] = True
    truth = chip.true_quantities()["tau_icc"]
    within = np.abs(truth / goal - 1) <= TOLERANCE
    ideal = chip.ideal_codes("tau_icc", goal)
    best = chip.true_quantities({"i_bias_icc": ideal})["tau_icc"]
    reachable = (
        connected & (np.abs(best / goal - 1) <= TOLERANCE) & (ideal > 0) & (ideal < CAPMEM_MAX)
    )
    failed = np.zeros(N_NEURONS, dtype=bool)
    failed[[failure.neuron for failure in failures]] = True
    judged = connected & np.isfinite(truth)
    return {
        "chip": f"{chip_id} x{mismatch:g}/{noise:g}",
        "case": case,
        "layout": layout,
        "connected": int(connected.sum()),
        "reach": int(reachable.sum()),
        "within": float(within[reachable].mean()) if reachable.any() else float("nan"),
        "false_fail": int((judged & failed & within).sum()),
        "false_succ": int((judged & ~failed & ~within).sum()),
        "unreachable": sum(failure.kind.value == "unreachable" for failure in failures),
        "runs": spent.runs,
        "hw": spent.hardware_time,
        "host": host,
    }


def full_costs(chip_id: str) -> dict[str, Any]:
    """Hardware time and runs of the default LIF calibration and of the same with tau_icc."""
    out: dict[str, Any] = {}
    for name, target in (
        ("default LIF", NeuronTarget()),
        ("LIF + tau_icc 3 us (right)", NeuronTarget(tau_icc=3 * US, compartments="right")),
    ):
        chip = SimulatedChip(chip_id)
        started = time.perf_counter()
        result = calibrate(chip, target)
        stats = chip.stats
        extra = {
            step: cost["hardware_time"]
            for step, cost in result.provenance.steps.items()
            if step == "tau_icc"  # the plan's own step (its verification is in "verify")
        }
        out[name] = {
            "runs": stats.runs,
            "writes": stats.writes,
            "hw": stats.hardware_time,
            "host": time.perf_counter() - started,
            "success": float(result.success.mean()),
            "step": extra,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one chip, three cases, no part 2")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cases = [*map(str, TARGETS_US), PER_PAIR]
    chips = CHIPS[1:] if args.quick else CHIPS
    if args.quick:
        cases = ["0.1", "3.0", PER_PAIR]
    jobs = [
        (chip_id, mismatch, noise, case, "right" if index % 2 == 0 else "down")
        for chip_id, mismatch, noise in chips
        for index, case in enumerate(cases)
    ]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        rows = list(pool.map(run_case, *zip(*jobs, strict=True)))
    print("== tau_icc plan alone (search + verification), judged on the ground truth")
    header = (
        f"{'chip':22} {'target us':17} {'layout':6} {'conn':>5} {'reach':>5} {'within':>7} "
        f"{'f.fail':>6} {'f.succ':>6} {'unreach':>7} {'runs':>6} {'hw s':>6} {'host s':>6}"
    )
    print(header)
    worst = 1.0
    for row in rows:
        worst = min(worst, row["within"])
        print(
            f"{row['chip']:22} {row['case']:17} {row['layout']:6} {row['connected']:5d} "
            f"{row['reach']:5d} {100 * row['within']:6.1f}% {row['false_fail']:6d} "
            f"{row['false_succ']:6d} {row['unreachable']:7d} {row['runs']:6d} "
            f"{row['hw']:6.2f} {row['host']:6.1f}"
        )
    verdict = "ok" if worst >= FLOOR_WITHIN_OF_REACHABLE else "BELOW THE FLOOR"
    print(
        f"floor: within 5 % for >= {100 * FLOOR_WITHIN_OF_REACHABLE:.0f} % of reachable "
        f"connections; worst case {100 * worst:.1f} % ({verdict})"
    )
    if args.quick:
        return
    print()
    print("== full calibrations of chip bench-icc-cost")
    costs = full_costs("bench-icc-cost")
    for name, cost in costs.items():
        print(
            f"{name:28} {cost['runs']:6d} runs {cost['writes']:4d} writes "
            f"{cost['hw']:6.2f} s hardware {cost['host']:6.1f} s host, "
            f"{100 * cost['success']:.1f} % of neurons succeeded"
        )
    lif, icc = costs.values()
    print(
        f"extra hardware time of tau_icc: {icc['hw'] - lif['hw']:.2f} s "
        f"({icc['runs'] - lif['runs']} runs; the tau_icc step itself "
        f"{icc['step'].get('tau_icc', float('nan')):.2f} s, the rest is its verification)"
    )


if __name__ == "__main__":
    main()
