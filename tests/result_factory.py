"""Realistic synthetic `NeuronResult`s for tests that need a result without calibrating a chip.

Values follow the design's figures: uncalibrated potentials spread about 10 LSB, time
constants lognormal with sigma 0.25, calibrated values within a fraction of the tolerance.
The per-neuron values depend only on `seed`; failures, shifts and times are separate inputs, so
two results built with one seed differ exactly by what a test injects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
from fakes import QUANTITIES

from calib.core.failures import Failure, FailureKind, legacy_failures
from calib.core.results import NeuronResult, Provenance
from calib.core.targets import NeuronTarget
from device_model.protocol import CELLS, N_NEURONS, N_QUADRANTS

DEFAULT_CREATED = datetime(2025, 3, 1, 2, 0, tzinfo=UTC)

CELL_OF_QUANTITY = {
    "leak": "v_leak",
    "reset": "v_reset",
    "threshold": "v_threshold",
    "tau_mem": "i_bias_leak",
    "tau_syn_exc": "i_bias_syn_exc_tau",
    "tau_syn_inh": "i_bias_syn_inh_tau",
    "psp_amplitude_exc": "i_bias_syn_exc_gm",
    "psp_amplitude_inh": "i_bias_syn_inh_gm",
    "refractory_time": "refractory_counter",
}
"""Which cell a synthetic result pretends to have tuned for each quantity."""

POTENTIAL_SPREAD_BEFORE = 10.0
POTENTIAL_SPREAD_AFTER = 0.8
LOGNORMAL_SIGMA_BEFORE = 0.25
RELATIVE_SPREAD_AFTER = 0.025

FAILURE_KINDS = (
    (
        Failure(
            0, "tau_mem", FailureKind.AT_BOUND, cell="i_bias_leak", value=1022.0, bound="upper"
        ),
        1.6,
    ),
    (Failure(0, "leak", FailureKind.AT_BOUND, cell="v_leak", value=0.0, bound="lower"), 1.25),
    (
        Failure(
            0,
            "threshold",
            FailureKind.OUT_OF_TOLERANCE,
            target=125.0,
            tolerance=4.0,
            unit="CADC LSB",
        ),
        1.15,
    ),
    (
        Failure(
            0,
            "tau_syn_exc",
            FailureKind.AT_BOUND,
            cell="i_bias_syn_exc_tau",
            value=0.0,
            bound="lower",
        ),
        0.5,
    ),
    (Failure(0, "neuron", FailureKind.DEAD, note="no response to the current step"), None),
)
"""(failure, factor on the achieved value) cycled through for generated failures."""


def _before(rng: np.random.Generator, name: str, target: float) -> np.ndarray:
    unit = QUANTITIES[name].unit
    if unit == "CADC LSB" and not name.startswith("psp"):
        return target + 6.0 + rng.normal(0.0, POTENTIAL_SPREAD_BEFORE, N_NEURONS)
    if name == "refractory_time":
        return np.full(N_NEURONS, 0.64e-6) * (1 + rng.normal(0.0, 0.002, N_NEURONS))
    sigma = 0.2 if name.startswith("psp") else LOGNORMAL_SIGMA_BEFORE
    return 1.3 * target * rng.lognormal(0.0, sigma, N_NEURONS)


def _after(rng: np.random.Generator, name: str, target: float) -> np.ndarray:
    if QUANTITIES[name].unit == "CADC LSB" and not name.startswith("psp"):
        return target + rng.normal(0.0, POTENTIAL_SPREAD_AFTER, N_NEURONS)
    spread = 0.002 if name == "refractory_time" else RELATIVE_SPREAD_AFTER
    return target * (1 + rng.normal(0.0, spread, N_NEURONS))


def _codes(
    rng: np.random.Generator, before: Mapping[str, np.ndarray], targets: Mapping[str, float]
) -> dict[str, np.ndarray]:
    codes: dict[str, np.ndarray] = {}
    for name, cell in CELL_OF_QUANTITY.items():
        if name not in before:
            continue
        spec = CELLS[cell]
        # Codes correct the neuron's deviation before calibration, as a calibration would.
        deviation = np.log(before[name] / targets[name])
        centre = 0.45 * spec.high
        codes[cell] = np.clip(
            np.rint(centre * (1 - 0.35 * deviation) + rng.normal(0, 2, N_NEURONS)),
            spec.low + 1,
            spec.high - 1,
        ).astype(np.int64)
    codes["refractory_counter"] = np.clip(
        np.rint(62.5 * targets["refractory_time"] / 2e-6 + rng.integers(-1, 2, N_NEURONS)), 0, 255
    ).astype(np.int64)
    codes["cadc_channel_offset"] = np.clip(np.rint(rng.normal(0, 8, N_NEURONS)), -128, 127).astype(
        np.int64
    )
    codes["i_bias_syn_exc_shift"] = np.rint(rng.normal(300, 25, N_NEURONS)).astype(np.int64)
    codes["cadc_ramp_offset"] = np.rint(rng.normal(420, 15, N_QUADRANTS)).astype(np.int64)
    codes["cadc_ramp_slope"] = np.rint(rng.normal(510, 20, N_QUADRANTS)).astype(np.int64)
    codes["membrane_capacitance"] = np.full(N_NEURONS, 63, dtype=np.int64)
    codes["refractory_clock_scale"] = np.full(N_NEURONS, 2, dtype=np.int64)
    codes["leak_divide"] = np.ones(N_NEURONS, dtype=np.int64)
    return codes


def generated_failures(count: int, seed: int) -> dict[int, Failure]:
    """`count` neurons with failures cycled from FAILURE_KINDS (values filled in later)."""
    neurons = np.sort(np.random.default_rng([seed, 7]).choice(N_NEURONS, count, replace=False))
    return {
        int(neuron): replace(FAILURE_KINDS[index % len(FAILURE_KINDS)][0], neuron=int(neuron))
        for index, neuron in enumerate(neurons)
    }


def as_failures(neuron: int, reason: Failure | str) -> list[Failure]:
    """A test's failure: a record, or a text (kept as text, its quantity before the colon)."""
    if isinstance(reason, Failure):
        return [replace(reason, neuron=neuron)]
    return legacy_failures({str(neuron): reason})


def make_result(
    *,
    chip_id: str = "w62f3-chip-07",
    seed: int = 0,
    failures: int | Mapping[int, Failure | str] = 6,
    target: NeuronTarget | None = None,
    achieved_shift: Mapping[str, float] | None = None,
    code_shift: Mapping[str, int] | None = None,
    created: datetime = DEFAULT_CREATED,
    quantities: Sequence[str] | None = None,
) -> NeuronResult:
    """A calibrated chip: every quantity near its target except at the failed neurons.

    `failures`: a count (reasons cycled from FAILURE_KINDS) or neuron -> reason. A reason
    starting with a quantity ('tau_mem: ...') pushes that quantity off target and its cell to a
    range bound; other reasons make every achieved value NaN (a dead neuron).
    `achieved_shift` adds to achieved values (stored units), `code_shift` to codes.
    """
    target = target or NeuronTarget()
    names = list(quantities) if quantities is not None else list(QUANTITIES)
    targets = {name: float(np.median(values)) for name, values in target.quantities().items()}
    rng = np.random.default_rng(seed)
    before = {name: _before(rng, name, targets[name]) for name in QUANTITIES}
    achieved = {name: _after(rng, name, targets[name]) for name in QUANTITIES}
    codes = _codes(rng, before, targets)
    given = generated_failures(failures, seed) if isinstance(failures, int) else failures
    records = [
        failure for neuron, reason in given.items() for failure in as_failures(neuron, reason)
    ]
    factors = {(f.quantity, f.kind): factor for f, factor in FAILURE_KINDS}
    for index, failure in enumerate(records):
        neuron, quantity = failure.neuron, failure.quantity
        if quantity not in QUANTITIES:
            for values in achieved.values():
                values[neuron] = np.nan
            continue
        achieved[quantity][neuron] = targets[quantity] * (
            factors.get((quantity, failure.kind)) or 1.3
        )
        cell = CELL_OF_QUANTITY[quantity]
        if failure.kind is FailureKind.AT_BOUND:
            codes[cell][neuron] = CELLS[cell].high if failure.bound == "upper" else CELLS[cell].low
        if failure.kind is FailureKind.OUT_OF_TOLERANCE:
            records[index] = replace(failure, value=float(achieved[quantity][neuron]))
    for name, shift in (achieved_shift or {}).items():
        achieved[name] = achieved[name] + shift
    for cell, shift in (code_shift or {}).items():
        spec = CELLS[cell]
        codes[cell] = np.clip(codes[cell] + shift, spec.low, spec.high)
    success = np.ones(N_NEURONS, dtype=bool)
    success[[failure.neuron for failure in records]] = False
    provenance = Provenance(
        chip_id=chip_id,
        created=created.isoformat(),
        duration=38.4 + 0.1 * seed,
        versions={"analog-calib": "0.1.0", "numpy": np.__version__},
        device_stats={"runs": 3120.0, "writes": 655.0, "hardware_time": 71.9},
        algorithm="binary_search",
        extra={"device": "SimulatedChip", "mismatch_scale": 1.0},
    )
    return NeuronResult(
        target=target,
        codes=codes,
        achieved={name: achieved[name] for name in names},
        success=success,
        failure_records=records,
        provenance=provenance,
        before={name: before[name] for name in names},
    )


def make_history(
    count: int,
    *,
    drift_per_step: Mapping[str, float] | None = None,
    step: timedelta = timedelta(days=1),
    **kwargs: object,
) -> list[tuple[datetime, NeuronResult]]:
    """`count` nightly results of one chip, achieved values drifting linearly per step."""
    start = kwargs.pop("created", DEFAULT_CREATED)
    history = []
    for index in range(count):
        shift = {name: index * value for name, value in (drift_per_step or {}).items()}
        time = start + index * step
        history.append((time, make_result(created=time, achieved_shift=shift, **kwargs)))
    return history
