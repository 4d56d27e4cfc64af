"""Bayesian search: host seconds per batched step and trials to tolerance, per sampler.

Runs `BayesianSearch` on a synthetic two-parameter, two-observable quantity (per-unit mismatched
gains, read noise) for 512 units, and prints per sampler and tolerance: the fraction of units
within tolerance, trials to tolerance (median and 90th percentile of the units that reached it),
and host seconds per batched step (mean over the run, wall clock and this process's CPU time,
which is steadier on a busy machine; and CPU seconds of the first model-based steps, when every
study is still asking). The device is a
fake with no host cost, so the step time is the algorithm's (optuna ask/tell for every unit).

    python bench/bayesian.py [--units 512] [--budget 100] [--samplers tpe,random,gp,cmaes]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# The script's own folder leaves the import path: bench scripts named like packages (e.g. a
# device_model benchmark) would shadow them. The shared test fakes come in instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent / "tests")

from fakes import FakeDevice, TwoParameterRoutine  # noqa: E402

from calib.algorithms.bayesian import SAMPLERS, BayesianSearch, check_sampler  # noqa: E402

NOISE = 1e-3
"""Read noise of the synthetic observables (they span about 0..1.3)."""


class TimedBayesianSearch(BayesianSearch):
    """Records the host time of every batched step (tell all units, ask all units)."""

    def start(self, *args, **kwargs):
        self.step_seconds: list[float] = []
        self.step_cpu_seconds: list[float] = []
        began = time.perf_counter()
        codes = super().start(*args, **kwargs)
        self.start_seconds = time.perf_counter() - began
        return codes

    def update(self, measured):
        began, began_cpu = time.perf_counter(), time.process_time()
        codes = super().update(measured)
        self.step_seconds.append(time.perf_counter() - began)
        self.step_cpu_seconds.append(time.process_time() - began_cpu)
        return codes


def bench(sampler: str, tolerance: float, units: int, budget: int) -> str:
    routine = TwoParameterRoutine(n_units=units, seed=0, noise=NOISE)
    target = routine.truth(np.random.default_rng(3).integers(300, 700, (units, 2)))
    search = TimedBayesianSearch(budget=budget, sampler=sampler, tolerance=tolerance, seed=0)
    outcome = search.run(routine, FakeDevice(units), target)
    reached = search.objective <= 1.0
    trials = search.trials_used[reached]
    median, p90 = (np.median(trials), np.percentile(trials, 90)) if trials.size else (0, 0)
    steps, cpu = np.array(search.step_seconds), np.array(search.step_cpu_seconds)
    # The slowest phase: every study still asking, past the random start-up trials.
    full = cpu[search.n_startup_trials : search.n_startup_trials + 5]
    return (
        f"{sampler:<8}{tolerance:>6.2f}{outcome.steps:>7d}{100 * reached.mean():>9.1f}"
        f"{median:>9.0f}{p90:>7.0f}{steps.mean():>10.3f}{cpu.mean():>9.3f}"
        f"{full.mean() if full.size else float('nan'):>10.3f}{search.start_seconds:>9.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=512)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--tolerances", default="0.05,0.02")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    args = parser.parse_args()
    print(f"{args.units} units, two parameters and two observables, budget {args.budget} trials")
    print("within%: units within tolerance; med.tri/p90: trials those units needed; s/step: host")
    print("seconds per batched step (wall, and CPU of this process); full: CPU s/step while every")
    print("study still runs the model-based sampler; setup: creating the studies")
    print(
        f"{'sampler':<8}{'tol':>6}{'steps':>7}{'within%':>9}{'med.tri':>9}{'p90':>7}"
        f"{'s/step':>10}{'cpu s':>9}{'full cpu':>10}{'setup s':>9}"
    )
    for sampler in args.samplers.split(","):
        try:
            check_sampler(sampler)
        except ImportError as missing:
            print(f"{sampler:<8} skipped: {missing}")
            continue
        for tolerance in (float(t) for t in args.tolerances.split(",")):
            print(bench(sampler, tolerance, args.units, args.budget), flush=True)


if __name__ == "__main__":
    main()
