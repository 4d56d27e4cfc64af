"""MAC mode: output error against the exact product, uncalibrated, calibrated and with the
oracle's settings; cost of the calibration; host time of one full-size MAC run.

    python3 bench/mac.py [--chip ID] [--vectors N] [--samples S]

Error: RMS of (chip output - g * exact product) over all neurons and vectors, after one global
gain g fitted by least squares, relative to the RMS of g * exact product. Random signed weights
(128 inputs x 512 columns, -63..63) and activations (0..31).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from calib.mac import calibrate_mac, exact_product, multiply
from calib.mac.sequence import CALIBRATED_CELLS
from device_model import SimulatedChip
from device_model.stimuli import MacActivations


class TimedChip(SimulatedChip):
    """Counts host time spent inside device calls."""

    inside = 0.0

    def __getattribute__(self, name: str):
        attribute = super().__getattribute__(name)
        if name in ("write", "read_cadc", "record_madc", "count_spikes", "read_settings"):

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return attribute(*args, **kwargs)
                finally:
                    TimedChip.inside += time.perf_counter() - start

            return timed
        return attribute


def relative_error(outputs: np.ndarray, exact: np.ndarray) -> float:
    gain = float(np.sum(outputs * exact) / np.sum(exact * exact))
    return float(
        np.sqrt(np.mean((outputs - gain * exact) ** 2)) / np.sqrt(np.mean((gain * exact) ** 2))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chip", default="bench-mac-0")
    parser.add_argument("--vectors", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    chip = TimedChip(args.chip)
    start = time.perf_counter()
    result = calibrate_mac(chip)
    host_total = time.perf_counter() - start
    steps = result.provenance["steps"]
    inside_calibration = TimedChip.inside
    stats = result.provenance["device_stats"]
    print(
        f"calibration: {stats['runs']} runs, {stats['writes']} writes, hardware time "
        f"{stats['hardware_time']:.2f} s (floor <= 15 s)"
    )
    calib_host = sum(step["host_time"] for step in steps.values())
    print(
        f"  host time of the calibration steps {calib_host:.2f} s; with verification "
        f"{host_total:.2f} s, of which inside device calls {inside_calibration:.2f} s, "
        f"outside {host_total - inside_calibration:.2f} s (floor <= 3 s)"
    )
    print(
        f"  neurons calibrated {result.neuron_success.mean():.3f}, drivers "
        f"{result.driver_success.mean():.3f}"
    )

    rng = np.random.default_rng(args.seed)
    weights = rng.integers(-63, 64, (128, 512))
    activations = rng.integers(0, 32, (args.vectors, 128))
    exact = exact_product(weights, activations)

    calibrated = result.to_settings()
    uncalibrated = dict(calibrated)
    for cell in CALIBRATED_CELLS:
        codes = calibrated[cell]
        uncalibrated[cell] = np.full(codes.shape, int(np.rint(np.median(codes))))
    # The same, but with the calibrated baseline: no neuron clipped at the CADC's range.
    uncalibrated_gains = {**uncalibrated, "v_reset": calibrated["v_reset"]}
    oracle = dict(calibrated)
    oracle["driver_hagen_offset"] = chip.ideal_driver_offsets()
    oracle["stp_i_ramp"] = chip.ideal_ramp_codes()
    target_gain = float(np.median(chip.true_mac_gains(oracle)["mac_gain_exc"]))
    for kind in ("exc", "inh"):
        oracle[f"i_bias_syn_{kind}_gm"] = chip.ideal_codes(f"mac_gain_{kind}", target_gain, oracle)

    errors = {}
    for name, settings in (
        ("uncalibrated", uncalibrated),
        ("uncal. gains", uncalibrated_gains),
        ("calibrated", calibrated),
        ("oracle", oracle),
    ):
        chip.write(settings)
        chip.write(settings)
        outputs = multiply(chip, weights, activations, samples=args.samples)
        errors[name] = relative_error(outputs, exact)
        print(
            f"{name:>13}: relative RMS error {errors[name]:.4f} "
            f"({args.vectors} vectors, {args.samples} integrations each)"
        )
    print(
        f"calibrated / oracle = {errors['calibrated'] / errors['oracle']:.2f} (floor <= 1.3); "
        f"uncalibrated / calibrated = {errors['uncalibrated'] / errors['calibrated']:.2f} "
        "(floor >= 3)"
    )
    print(
        f"uncalibrated gains and offsets only / calibrated = "
        f"{errors['uncal. gains'] / errors['calibrated']:.2f}"
    )

    full = MacActivations(rng.integers(0, 32, 256))
    chip.write({"synapse_weight": rng.integers(0, 64, (256, 512))})
    times = []
    for _ in range(20):
        begin = time.perf_counter()
        chip.read_cadc(1, stimulus=full)
        times.append(time.perf_counter() - begin)
    print(
        f"one MAC run, 256 rows x 512 columns: host time median {1e3 * np.median(times):.1f} "
        f"ms (floor well under 50 ms)"
    )


if __name__ == "__main__":
    main()
