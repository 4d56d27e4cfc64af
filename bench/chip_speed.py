"""SimulatedChip host cost: seconds per readout, and host time against emulated hardware time.

Prints the median host seconds of: a CADC read of all 512 neurons (one sample, and 200
samples), a timed CADC read after a synaptic event train, an MADC recording (2 neurons,
100 us; and all 512 neurons after a reset release), a spike-count run (LIF under constant
input, LIF with an event train, AdEx), a write, and the ratio of host time to emulated
hardware time for a calibration-like sequence (writes, CADC reads, MADC decays).
Timings are medians of wall-clock time; on a shared machine they vary by a factor of ~2.

    python bench/chip_speed.py [--repeats 20]

(Not named after the package it measures: a script in bench/ named device_model.py would
shadow the package for every other script there.)
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np

from device_model import ResetRelease, SimulatedChip, SynapticEvents

CADC = {"cadc_ramp_offset": 70, "cadc_ramp_slope": 500}
LIF = {
    **CADC,
    "v_leak": 700,
    "v_threshold": 300,
    "v_reset": 500,
    "i_bias_leak": 540,
    "leak_divide": 1,
}
TRAIN = SynapticEvents.regular(2e-6, 1e-6, 5)


def host_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median host time of `action` over `repeats` calls (after one warm-up call)."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def calibration_like(chip: SimulatedChip, rng: np.random.Generator) -> tuple[float, float]:
    """(host s, emulated hardware s) of a sequence shaped like a potential + tau calibration:
    binary searches of 10 steps with averaged CADC reads, then MADC decays of every neuron."""
    before = chip.stats
    start = time.perf_counter()
    chip.write({**CADC, "threshold_enable": 0})
    for cell in ("v_leak", "v_reset"):
        for _ in range(10):
            chip.write({cell: rng.integers(500, 700, 512)})
            chip.read_cadc(200)
    chip.write({"i_bias_leak": 540, "leak_divide": 1, "v_reset": 450})
    for _ in range(5):
        chip.write({"i_bias_leak": rng.integers(400, 700, 512)})
        chip.record_madc(np.arange(512), 60e-6, ResetRelease(10e-6))
    host = time.perf_counter() - start
    return host, (chip.stats - before).hardware_time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    repeats = args.repeats

    chip = SimulatedChip("bench-chip")
    chip.write({**LIF, "threshold_enable": 0})
    rows: list[tuple[str, float]] = []
    rows.append(
        ("CADC read, 512 neurons, 1 sample", host_seconds(lambda: chip.read_cadc(1), repeats))
    )
    rows.append(
        ("CADC read, 512 neurons, 200 samples", host_seconds(lambda: chip.read_cadc(200), repeats))
    )
    chip.write({"syn_exc_enable": 1, "i_bias_syn_exc_shift": 500})
    rows.append(
        (
            "CADC read at 14 us after a 5-event train",
            host_seconds(lambda: chip.read_cadc(20, TRAIN, read_time=14e-6), repeats),
        )
    )
    rows.append(
        (
            "MADC, 2 neurons, 100 us, reset release",
            host_seconds(lambda: chip.record_madc([0, 1], 100e-6, ResetRelease(10e-6)), repeats),
        )
    )
    rows.append(
        (
            "MADC, 2 neurons, 100 us, event train",
            host_seconds(lambda: chip.record_madc([0, 1], 100e-6, TRAIN), repeats),
        )
    )
    rows.append(
        (
            "MADC, 512 neurons (256 runs), 60 us",
            host_seconds(
                lambda: chip.record_madc(np.arange(512), 60e-6, ResetRelease(10e-6)),
                max(repeats // 4, 3),
            ),
        )
    )
    chip.write({"threshold_enable": 1, "syn_exc_enable": 0})
    rows.append(
        (
            "spike count, LIF, 512 neurons, 100 us",
            host_seconds(lambda: chip.count_spikes(100e-6), repeats),
        )
    )
    chip.write({"syn_exc_enable": 1})
    rows.append(
        (
            "spike count, LIF + event train, 100 us",
            host_seconds(lambda: chip.count_spikes(100e-6, TRAIN), max(repeats // 4, 3)),
        )
    )
    chip.write(
        {
            "syn_exc_enable": 0,
            "adaptation_enable": 1,
            "i_bias_adapt_b": 300,
            "i_bias_adapt_tau": 200,
        }
    )
    rows.append(
        (
            "spike count, AdEx, 512 neurons, 100 us",
            host_seconds(lambda: chip.count_spikes(100e-6), max(repeats // 4, 3)),
        )
    )
    rows.append(
        (
            "MADC, 2 AdEx neurons, 100 us",
            host_seconds(lambda: chip.record_madc([0, 1], 100e-6), max(repeats // 4, 3)),
        )
    )
    codes = np.random.default_rng(0).integers(0, 1023, 512)
    rows.append(
        (
            "write of one analog cell (512 codes)",
            host_seconds(lambda: chip.write({"v_leak": codes}), repeats),
        )
    )
    rows.append(
        (
            "oracle: ideal_codes('leak', 80)",
            host_seconds(lambda: chip.ideal_codes("leak", 80.0), max(repeats // 4, 3)),
        )
    )

    width = max(len(name) for name, _ in rows)
    print(f"{'operation':<{width}}  host time")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds * 1e3:9.3f} ms")
    host, hardware = calibration_like(SimulatedChip("bench-sequence"), np.random.default_rng(1))
    print(
        f"\ncalibration-like sequence: host {host:.3f} s, emulated hardware {hardware:.3f} s, "
        f"ratio {host / hardware:.3f}"
    )


if __name__ == "__main__":
    main()
