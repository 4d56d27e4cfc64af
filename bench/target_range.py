"""LIF calibration across the whole target box, judged on the simulated chips' ground truth.

Every cell is one target calibrated on one chip. The result is applied to a fresh instance of
the same chip and judged on its noise-free quantities (`true_quantities`); the oracle
(`ideal_codes`, every switch setting tried) says which neurons can reach the target at all and
the best residual there is. Per cell it prints:

- reported: neurons the calibration reported successful
- truly: neurons within tolerance on every ground-truth quantity (leak, reset, threshold,
  tau_mem, tau_syn_exc, tau_syn_inh, refractory_time, and both PSP amplitudes: read
  noise-free the way their routine reads them, against the target or the chip median the
  calibration matched)
- reach: neurons the oracle can bring within tolerance on every quantity
- rep/reach: reported successes among the reachable neurons, as a fraction of them
- false fail: reported failed although truly within tolerance (fraction of all neurons)
- false succ: reported successful although truly outside tolerance (a count)
- runs, hardware time and host time of the calibration
- per quantity, the residual RMS on the truth (reported-successful reachable neurons; LSB for
  potentials, percent for time constants) and the oracle's over the same neurons

then the floors (issue 12) a cell violates; a residual floor that the oracle's best codes miss
as well (the codes' steps alone exceed it) shows the oracle's figure beside it. `--quick` runs
three cells on one harder chip.

    python bench/target_range.py [--quick] [--workers N] [--chips N] [--only NAME]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from calib import PLANS, NeuronResult, NeuronTarget, calibrate
from calib.routines.synaptic_input import SynapticGain
from device_model import SimulatedChip
from device_model.oracle import QUANTITY_CELLS
from device_model.protocol import N_NEURONS

JUDGED = ("leak", "reset", "threshold", "tau_mem", "tau_syn_exc", "tau_syn_inh", "refractory_time")
"""Quantities with a ground truth."""
POTENTIALS = ("leak", "reset", "threshold")
TIME_CONSTANTS = ("tau_mem", "tau_syn_exc", "tau_syn_inh")
SWITCHES: dict[str, list[dict[str, int]]] = {
    "tau_mem": [{"leak_divide": d, "leak_multiply": m} for d, m in ((1, 0), (0, 0), (0, 1))],
    "tau_syn_exc": [{"syn_exc_high_resistance": h} for h in (0, 1)],
    "tau_syn_inh": [{"syn_inh_high_resistance": h} for h in (0, 1)],
}
"""Switch settings the oracle tries per time constant (the best one per neuron counts)."""

FLOOR_SUCCESS_OF_REACHABLE = 0.98
FLOOR_FALSE_FAILURES = 0.005
FLOOR_POTENTIAL_RMS = 0.3
FLOOR_TIME_CONSTANT_RMS = 0.01

US = 1e-6


# -- the target set ---------------------------------------------------------------------------


def _heterogeneous_issue(rng: np.random.Generator) -> dict[str, Any]:
    """The per-neuron ranges an experiment asked for in issue 12."""
    return {
        "leak": rng.uniform(70, 110, N_NEURONS),
        "threshold": rng.uniform(130, 170, N_NEURONS),
        "tau_mem": rng.uniform(3, 30, N_NEURONS) * US,
        "tau_syn_exc": rng.uniform(2, 15, N_NEURONS) * US,
    }


def _heterogeneous_box(rng: np.random.Generator) -> dict[str, Any]:
    """Per-neuron targets drawn across the whole allowed box (times log-uniform), consistent:
    reset below threshold, leak not above threshold."""

    def log_uniform(low: float, high: float) -> np.ndarray:
        return np.exp(rng.uniform(np.log(low), np.log(high), N_NEURONS))

    leak = rng.uniform(50, 160, N_NEURONS)
    threshold = rng.uniform(np.maximum(leak, 60), 220)
    reset = rng.uniform(50, np.minimum(threshold - 5, 160))
    return {
        "leak": leak,
        "reset": reset,
        "threshold": threshold,
        "tau_mem": log_uniform(0.5 * US, 60 * US),
        "tau_syn_exc": log_uniform(0.3 * US, 30 * US),
        "tau_syn_inh": log_uniform(0.3 * US, 30 * US),
        "refractory_time": log_uniform(40e-9, 32 * US),
    }


TargetMaker = Callable[[np.random.Generator], dict[str, Any]]
TARGETS: dict[str, TargetMaker] = {
    "defaults": lambda rng: {},
    "low potentials": lambda rng: {"leak": 50, "reset": 50, "threshold": 56},
    "high potentials": lambda rng: {"leak": 160, "reset": 155, "threshold": 220},
    "threshold sweep": lambda rng: {
        "leak": 55,
        "reset": 50,
        "threshold": np.linspace(60, 220, N_NEURONS),
    },
    "fastest": lambda rng: {
        "tau_mem": 0.5 * US,
        "tau_syn_exc": 0.3 * US,
        "tau_syn_inh": 0.3 * US,
        "refractory_time": 40e-9,
        "threshold": 90,
    },
    "fast": lambda rng: {
        "tau_mem": 2 * US,
        "tau_syn_exc": 1 * US,
        "tau_syn_inh": 1.5 * US,
        "threshold": 90,
        "refractory_time": 0.5 * US,
    },
    "middle": lambda rng: {
        "leak": 105,
        "reset": 100,
        "threshold": 135,
        "tau_mem": 5.5 * US,
        "tau_syn_exc": 3 * US,
        "tau_syn_inh": 3 * US,
        "refractory_time": 1.1 * US,
    },
    "tau_syn only": lambda rng: {"tau_mem": 5 * US, "tau_syn_exc": 3 * US, "tau_syn_inh": 6 * US},
    "fast membrane, slow synapses": lambda rng: {
        "tau_mem": 1 * US,
        "tau_syn_exc": 20 * US,
        "tau_syn_inh": 25 * US,
    },
    "slow membrane, fast synapses": lambda rng: {
        "tau_mem": 50 * US,
        "tau_syn_exc": 0.5 * US,
        "tau_syn_inh": 0.4 * US,
    },
    "slow": lambda rng: {
        "tau_mem": 40 * US,
        "tau_syn_exc": 20 * US,
        "tau_syn_inh": 20 * US,
        "threshold": 200,
    },
    "slowest": lambda rng: {
        "tau_mem": 60 * US,
        "tau_syn_exc": 30 * US,
        "tau_syn_inh": 30 * US,
        "refractory_time": 32 * US,
        "threshold": 210,
        "leak": 120,
        "reset": 110,
    },
    "heterogeneous (issue)": _heterogeneous_issue,
    "heterogeneous (box)": _heterogeneous_box,
}
"""Named targets; per-neuron draws are seeded by the chip, so every chip gets its own."""

CHIPS: list[tuple[str, float, float]] = [
    ("range-chip-0", 1.0, 1.0),
    ("range-chip-1", 1.3, 1.0),
    ("range-chip-2", 1.0, 1.5),
    ("range-chip-3", 1.3, 1.5),
]
"""(chip id, mismatch_scale, noise_scale)."""

QUICK_TARGETS = ("fast", "slow", "heterogeneous (issue)")
QUICK_CHIP = ("range-chip-quick", 1.25, 1.5)


def make_target(name: str, chip_id: str) -> NeuronTarget:
    seed = np.frombuffer(f"{chip_id}/{name}".encode(), dtype=np.uint8).sum()
    return NeuronTarget(**TARGETS[name](np.random.default_rng(int(seed))))


# -- judging one cell -------------------------------------------------------------------------


@dataclass
class Cell:
    chip: str
    target: str
    reported: np.ndarray
    truly: np.ndarray
    reachable: np.ndarray
    residual: dict[str, float]
    oracle: dict[str, float]
    runs: float
    hardware_time: float
    host_time: float
    reasons: dict[int, str]
    false_success_reasons: dict[int, str]

    @property
    def success_of_reachable(self) -> float:
        reach = self.reachable
        return float(self.reported[reach].mean()) if reach.any() else float("nan")

    @property
    def false_failures(self) -> float:
        return float((~self.reported & self.truly).mean())

    @property
    def false_successes(self) -> int:
        return int((self.reported & ~self.truly).sum())

    def violations(self) -> list[str]:
        out = []
        if not self.success_of_reachable >= FLOOR_SUCCESS_OF_REACHABLE:
            out.append(f"success {100 * self.success_of_reachable:.1f} % of reachable")
        if self.false_failures > FLOOR_FALSE_FAILURES:
            out.append(f"false failures {100 * self.false_failures:.1f} %")
        if self.false_successes:
            out.append(f"{self.false_successes} false successes")
        for name, value in self.residual.items():
            floor = FLOOR_POTENTIAL_RMS if name in POTENTIALS else FLOOR_TIME_CONSTANT_RMS
            if not value <= floor:
                # The oracle's best codes above the floor: the codes' steps alone exceed it.
                oracle = self.oracle.get(name, float("nan"))
                beyond = f" (oracle {_show(name, oracle)})" if oracle > floor else ""
                out.append(f"{name} RMS {_show(name, value)}{beyond}")
        return out


def _show(name: str, value: float) -> str:
    return f"{100 * value:.2f} %" if name in TIME_CONSTANTS else f"{value:.2f}"


def _within(name: str, values: np.ndarray, goal: np.ndarray) -> np.ndarray:
    tolerance = PLANS.quantities()[name].tolerance_for(goal)
    return np.isfinite(values) & (np.abs(values - goal) <= tolerance)


def _error(name: str, values: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """Residual: LSB for potentials, relative for times."""
    return (values - goal) / goal if name in TIME_CONSTANTS else values - goal


def oracle(
    chip: SimulatedChip, codes: dict[str, np.ndarray], goals: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per quantity: the best truth-value error per neuron (every other cell at `codes`, every
    switch setting tried) and whether it is within tolerance."""
    errors, reach = {}, {}
    for name, cell in QUANTITY_CELLS.items():
        best = np.full(N_NEURONS, np.inf)
        for switches in SWITCHES.get(name, [{}]):
            context = {**codes, **{k: np.full(N_NEURONS, v) for k, v in switches.items()}}
            ideal = chip.ideal_codes(name, goals[name], context)
            value = chip.true_quantities({**context, cell: ideal})[name]
            error = _error(name, value, goals[name])
            better = np.isfinite(error) & (np.abs(error) < np.abs(best))
            best = np.where(better, error, best)
        errors[name] = best
        tolerance = PLANS.quantities()[name].tolerance_for(goals[name])
        scale = np.abs(goals[name]) if name in TIME_CONSTANTS else 1.0
        reach[name] = np.isfinite(best) & (np.abs(best) * scale <= tolerance)
    return errors, reach


PSP_AMPLITUDES = ("psp_amplitude_exc", "psp_amplitude_inh")


def _true_amplitude(chip: SimulatedChip, routine: SynapticGain, settings: dict) -> np.ndarray:
    rest = chip.true_potentials(settings)
    peak = np.full(N_NEURONS, np.nan)
    for group, read_time in enumerate(routine.read_times):
        reading = chip.true_potentials(settings, routine.stimulus, float(read_time))
        peak = np.where(routine.groups == group, reading, peak)
    return np.abs(peak - rest)


def psp_truth(
    chip: SimulatedChip, result: NeuronResult, goals: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per PSP amplitude: (true value, goal, reachable). The true value is the noise-free
    reading of the routine's own train at its own read times, less the resting potential; the
    goal is the target's, or the chip median the calibration matched (kept in the result's
    models); reachable: the goal lies within tolerance of what the gm bias's range spans. A
    neuron whose goal is NaN (its share of an unset amplitude below what a reading resolves:
    left at the bias, not judged) counts as within and reachable."""
    out = {}
    for name in PSP_AMPLITUDES:
        goal = goals.get(name, result.models.get(name, {}).get("target"))
        if goal is None:
            continue
        kind = name.rsplit("_", 1)[1]
        routine = SynapticGain(goal, kind == "inh", goals["tau_mem"], goals[f"tau_syn_{kind}"])
        settings = routine.measurement_settings(chip)

        goal = np.broadcast_to(np.asarray(goal, float), (N_NEURONS,))
        tolerance = PLANS.quantities()[name].tolerance_for(goal)
        cell = routine.parameter
        lowest = _true_amplitude(chip, routine, {**settings, cell: np.zeros(N_NEURONS, int)})
        highest = _true_amplitude(chip, routine, {**settings, cell: np.full(N_NEURONS, 1022)})
        unjudged = np.isnan(goal)
        reach = unjudged | (
            (goal >= np.fmin(lowest, highest) - tolerance)
            & (goal <= np.fmax(lowest, highest) + tolerance)
        )
        out[name] = (_true_amplitude(chip, routine, settings), goal, reach)
    return out


def run_cell(chip_spec: tuple[str, float, float], target_name: str) -> Cell:
    chip_id, mismatch, noise = chip_spec
    target = make_target(target_name, chip_id)
    chip = SimulatedChip(chip_id, mismatch_scale=mismatch, noise_scale=noise)
    started = time.perf_counter()
    result = calibrate(chip, target)
    host = time.perf_counter() - started
    fresh = SimulatedChip(chip_id, mismatch_scale=mismatch, noise_scale=noise)
    result.apply(fresh)
    truth = fresh.true_quantities()
    goals = target.quantities()
    truly = np.all([_within(name, truth[name], goals[name]) for name in JUDGED], axis=0)
    psps = psp_truth(fresh, result, goals)
    misses: dict[int, str] = {}
    for name, (value, goal, _) in psps.items():
        within = _within(name, value, goal) | np.isnan(goal)
        for neuron in np.flatnonzero(result.success & ~within)[:5]:
            misses[int(neuron)] = f"{name} truly {value[neuron]:.3g}, goal {goal[neuron]:.3g}"
        truly &= within
    for name in JUDGED:
        within = _within(name, truth[name], goals[name])
        for neuron in np.flatnonzero(result.success & ~within)[:5]:
            value, goal = truth[name][neuron], goals[name][neuron]
            misses[int(neuron)] = f"{name} truly {value:.4g}, goal {goal:.4g}"
    errors, reach = oracle(fresh, result.codes, goals)
    refractory_ok = _within("refractory_time", truth["refractory_time"], goals["refractory_time"])
    reachable = np.all(list(reach.values()), axis=0) & refractory_ok
    for _, _, psp_reach in psps.values():
        reachable &= psp_reach
    chosen = reachable & result.success
    residual, best = {}, {}
    for name in QUANTITY_CELLS:
        error = _error(name, truth[name], goals[name])[chosen]
        residual[name] = float(np.sqrt(np.mean(error**2))) if error.size else float("nan")
        ideal = errors[name][chosen]
        best[name] = float(np.sqrt(np.mean(ideal**2))) if ideal.size else float("nan")
    stats = result.provenance.device_stats
    return Cell(
        chip_id,
        target_name,
        result.success,
        truly,
        reachable,
        residual,
        best,
        stats["runs"],
        stats["hardware_time"],
        host,
        result.reasons,
        misses,
    )


# -- printing ---------------------------------------------------------------------------------

HEADER = (
    f"{'chip':<18}{'target':<30}{'reported':>9}{'truly':>7}{'reach':>7}"
    f"{'rep/reach':>10}{'false fail':>11}{'false succ':>11}{'runs':>7}{'hw s':>7}"
    f"{'host s':>7}"
)


def print_cell(cell: Cell, reasons: int = 3) -> None:
    print(
        f"{cell.chip:<18}{cell.target:<30}{100 * cell.reported.mean():>8.1f}%"
        f"{100 * cell.truly.mean():>6.1f}%{100 * cell.reachable.mean():>6.1f}%"
        f"{100 * cell.success_of_reachable:>9.1f}%{100 * cell.false_failures:>10.1f}%"
        f"{cell.false_successes:>11d}{cell.runs:>7.0f}{cell.hardware_time:>7.1f}"
        f"{cell.host_time:>7.1f}"
    )
    parts = [
        f"{name} {_show(name, cell.residual[name])} ({_show(name, cell.oracle[name])})"
        for name in QUANTITY_CELLS
    ]
    print("    residual RMS (oracle): " + ", ".join(parts))
    violations = cell.violations()
    if violations:
        print("    BELOW FLOOR: " + "; ".join(violations))
        wrong = [n for n in np.flatnonzero(~cell.reported & cell.truly)][:reasons]
        for neuron in wrong:
            print(f"      false failure {neuron}: {cell.reasons.get(int(neuron), '')}")
        missed = [n for n in np.flatnonzero(~cell.reported & cell.reachable & ~cell.truly)]
        for neuron in missed[:reasons]:
            print(f"      reachable, failed {neuron}: {cell.reasons.get(int(neuron), '')}")
        for neuron, why in list(cell.false_success_reasons.items())[:reasons]:
            print(f"      false success {neuron}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="three cells on one harder chip")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chips", type=int, default=len(CHIPS), help="first N chips")
    parser.add_argument("--only", action="append", help="target name (repeatable)")
    parser.add_argument("--reasons", type=int, default=3, help="failure reasons shown per cell")
    args = parser.parse_args()
    if args.quick:
        jobs = [(QUICK_CHIP, name) for name in QUICK_TARGETS]
    else:
        names = args.only or list(TARGETS)
        unknown = set(names) - set(TARGETS)
        if unknown:
            parser.error(f"unknown targets {sorted(unknown)}; known: {', '.join(TARGETS)}")
        jobs = [(chip, name) for name in names for chip in CHIPS[: args.chips]]
    started = time.perf_counter()
    print(HEADER)
    cells, errors = [], 0
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_cell, chip, name) for chip, name in jobs]
        for (chip, name), future in zip(jobs, futures, strict=True):
            try:
                cell = future.result()
            except Exception as error:  # a crashed cell is a finding, not the end of the run
                errors += 1
                print(f"{chip[0]:<18}{name:<30} ERROR {type(error).__name__}: {error}")
                continue
            cells.append(cell)
            print_cell(cell, args.reasons)
    below = [cell for cell in cells if cell.violations()]
    print(
        f"\n{len(cells)} cells, {len(below)} below a floor, {errors} crashed; "
        f"{time.perf_counter() - started:.0f} s wall time"
    )


if __name__ == "__main__":
    main()
