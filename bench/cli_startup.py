"""Start-up time of the command line: `calib --help`, `calib --version`, `calib COMMAND --help`.

Each command line runs in a fresh interpreter (the console script's entry point), REPEATS
times; printed are the median and the best wall time, the median CPU time of the child, and
which heavy libraries the bare `import calib.cli` pulls in. Goal: every line <= 0.5 s wall.

    python bench/cli_startup.py
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time

REPEATS = 7
GOAL_SECONDS = 0.5
HEAVY = (
    "numpy",
    "scipy",
    "lmfit",
    "optuna",
    "matplotlib",
    "zarr",
    "xarray",
    "pandas",
    "dask",
    "distributed",
)
COMMANDS = (
    "calibrate",
    "targets",
    "show",
    "history",
    "export",
    "check",
    "report",
    "chips",
    "nightly",
    "study",
)
ENTRY = "from calib.cli import main; main()"


def run_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one `calib ARGS` in a new interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "100"},
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bare_start() -> float:
    """Wall seconds of an interpreter that does nothing (the floor under every figure)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def heavy_imports() -> list[str]:
    code = f"import sys, calib.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    output = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return output.split()


def main() -> None:
    lines = [["--help"], ["--version"], *([command, "--help"] for command in COMMANDS)]
    python = statistics.median(bare_start() for _ in range(REPEATS))
    print(
        f"calib start-up, {REPEATS} runs each (goal <= {GOAL_SECONDS} s wall); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    print(f"bare interpreter start: {python:.3f} s wall")
    print(f"{'command line':<28}{'median wall':>12}{'best wall':>11}{'median cpu':>12}  goal")
    worst = 0.0
    for args in lines:
        times = [run_once(args) for _ in range(REPEATS)]
        walls = [wall for wall, _ in times]
        median = statistics.median(walls)
        worst = max(worst, median)
        print(
            f"{'calib ' + ' '.join(args):<28}{median:>11.3f}s{min(walls):>10.3f}s"
            f"{statistics.median(cpu for _, cpu in times):>11.3f}s  "
            f"{'ok' if median <= GOAL_SECONDS else 'over'}"
        )
    heavy = heavy_imports()
    print(f"heavy modules after 'import calib.cli': {', '.join(heavy) if heavy else 'none'}")
    print(
        f"slowest median: {worst:.3f} s ({'within' if worst <= GOAL_SECONDS else 'over'} "
        f"the goal of {GOAL_SECONDS} s)"
    )


if __name__ == "__main__":
    main()
