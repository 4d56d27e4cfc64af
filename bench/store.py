"""Results store timings: save and load of one chip's result, lookups over many runs.

A result here has the size of a whole neuron calibration: 512 neurons, 20 code arrays,
10 achieved-value arrays and the success mask, with target and provenance metadata.
Goals: save plus load under 100 ms; over 1,000 stored runs of one chip at most 15 files per
run, history() within 0.1 s and latest() within 50 ms. Lookups are timed on a store opened
afresh for each call (nothing cached in the process) and on one store object called again.

    python bench/store.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from results_store import KindRegistry, ResultsStore

N_NEURONS = 512
N_CODE_ARRAYS = 20
N_ACHIEVED_ARRAYS = 10
REPEATS = 30
HISTORY_RUNS = 1000
CHIP = "bench-chip-0"


class Timing(NamedTuple):
    wall: float
    cpu: float


class BenchResult:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        rng = np.random.default_rng(self.seed)
        arrays: dict[str, np.ndarray] = {"success": rng.random(N_NEURONS) > 0.01}
        for index in range(N_CODE_ARRAYS):
            arrays[f"codes/cell_{index:02d}"] = rng.integers(0, 1023, N_NEURONS)
        for index in range(N_ACHIEVED_ARRAYS):
            arrays[f"achieved/quantity_{index:02d}"] = rng.normal(1.0, 0.1, N_NEURONS)
        meta = {
            path: {
                "dims": ["neuron"],
                "units": "1" if path.startswith("codes") else "s",
                "long_name": path,
            }
            for path in arrays
        }
        attrs = {
            "kind": "bench_result",
            "chip_id": CHIP,
            "target": {f"quantity_{index:02d}": 1.0 for index in range(N_ACHIEVED_ARRAYS)},
            "target_fingerprint": f"target-{self.seed % 2}",
            "reasons": {str(n): "code at upper bound 1022" for n in range(5)},
            "provenance": {"chip_id": CHIP, "duration": 12.5, "versions": {"calib": "0.1.0"}},
            "array_meta": meta,
        }
        return arrays, attrs


def timed(action: Callable[[], Any]) -> tuple[Timing, Any]:
    """Wall time and the process's CPU time (all threads), in ms: on a shared machine the
    wall time includes waiting for a core, the CPU time is what the store itself costs."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = action()
    return Timing(1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)), value


def describe(name: str, samples: list[Timing]) -> str:
    def median_and_p90(values: list[float]) -> str:
        ordered = sorted(values)
        p90 = ordered[int(0.9 * (len(ordered) - 1))]
        return f"median {statistics.median(ordered):6.1f} ms  p90 {p90:6.1f} ms"

    return (
        f"{name:<24}wall {median_and_p90([t.wall for t in samples])}   "
        f"cpu {median_and_p90([t.cpu for t in samples])}"
    )


def bench_save_load(root: Path) -> None:
    store = ResultsStore(root / "save_load", create=True, registry=KindRegistry())
    saves, loads, totals = [], [], []
    for seed in range(REPEATS):
        result = BenchResult(seed)
        save, run_id = timed(lambda result=result: store.save(result))
        load, record = timed(lambda run_id=run_id: store.get(CHIP, run_id))
        assert len(record.arrays) == 1 + N_CODE_ARRAYS + N_ACHIEVED_ARRAYS
        saves.append(save)
        loads.append(load)
        totals.append(Timing(save.wall + load.wall, save.cpu + load.cpu))
    print(
        f"one result: {1 + N_CODE_ARRAYS + N_ACHIEVED_ARRAYS} arrays of {N_NEURONS} values, "
        f"{REPEATS} repeats"
    )
    print(describe("save", saves))
    print(describe("load", loads))
    print(describe("save + load (goal 100)", totals))
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def files_per_run(chip_directory: Path, runs: int) -> tuple[float, float]:
    """Files and directories under the chip, per run (chip group and index included)."""
    entries = list(chip_directory.rglob("*"))
    files = sum(entry.is_file() for entry in entries)
    return files / runs, (len(entries) - files) / runs


def bench_lookups(root: Path, runs: int) -> None:
    path = root / "history"
    store = ResultsStore(path, create=True, registry=KindRegistry())
    fill, run_ids = timed(lambda: [store.save(BenchResult(s)) for s in range(runs)])
    print(
        f"\n{runs} runs of one chip stored in {fill.wall / 1e3:.1f} s "
        f"({fill.wall / runs:.1f} ms per save)"
    )
    first, _ = timed(lambda: store.history(CHIP))  # the first lookup after the saves
    print(describe("first history (indexes)", [first]))
    files, folders = files_per_run(path / CHIP, runs)
    size = sum(entry.stat().st_size for entry in (path / CHIP).rglob("*") if entry.is_file())
    print(
        f"files per run {files:.2f} (goal <= 15), folders per run {folders:.2f}, "
        f"{size / runs / 1e3:.1f} kB per run"
    )
    middle = store.info(CHIP, run_ids[runs // 2]).saved_at + timedelta(microseconds=1)

    def fresh() -> ResultsStore:
        return ResultsStore(path, registry=KindRegistry())

    lookups = {
        "history (goal 100)": lambda: store.history(CHIP),
        "history, fresh store": lambda: fresh().history(CHIP),
        "latest (goal 50)": lambda: store.latest(CHIP),
        "latest, fresh store": lambda: fresh().latest(CHIP),
        "latest for a target": lambda: store.latest(CHIP, "target-0"),
        "as_of (middle)": lambda: store.as_of(CHIP, middle),
        "chips": store.chips,
    }
    for name, lookup in lookups.items():
        samples = [timed(lookup)[0] for _ in range(REPEATS // 3)]
        print(describe(name, samples))
    assert len(store.history(CHIP)) == runs
    assert store.latest(CHIP).run_id == run_ids[-1]
    print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=HISTORY_RUNS,
        help=f"runs of one chip for the lookups (default {HISTORY_RUNS})",
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs = {args.runs} must be at least 1")
    with tempfile.TemporaryDirectory() as directory:
        bench_save_load(Path(directory))
        bench_lookups(Path(directory), args.runs)


if __name__ == "__main__":
    main()
