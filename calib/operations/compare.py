"""Comparison of two calibrations of one chip: what drifted, which neurons fell out or came back.

The comparison is a plain, JSON-able dict so that fleet code can store it or ship it between
processes; `FleetRow.from_comparison` turns it into a row of the fleet report.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from calib.core.plans import PLANS, ordered_quantities
from calib.core.results import NeuronResult


def _median_or_none(values: np.ndarray) -> float | None:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if values.size else None


def _quantity_shift(
    name: str, previous: NeuronResult, current: NeuronResult, compared: np.ndarray
) -> dict[str, Any]:
    before = np.asarray(previous.achieved[name], dtype=float)
    after = np.asarray(current.achieved[name], dtype=float)
    shift = (after - before)[compared]
    shift = shift[np.isfinite(shift)]
    failed_before = previous.failed_quantities().get(name, set())
    failed_now = current.failed_quantities().get(name, set())
    target_shift = None
    spec = PLANS.quantities().get(name)
    goals_now, goals_before = current.goals(), previous.goals()
    if name in goals_now and name in goals_before:
        target_shift = float(np.median(goals_now[name] - goals_before[name]))
    return {
        "unit": spec.unit if spec is not None else "",
        "median_shift": float(np.median(shift)) if shift.size else None,
        "median_abs_shift": float(np.median(np.abs(shift))) if shift.size else None,
        "previous_median": _median_or_none(before[compared]),
        "current_median": _median_or_none(after[compared]),
        "target_shift": target_shift,
        "neurons_compared": int(shift.size),
        "newly_failed": sorted(failed_now - failed_before),
        "recovered": sorted(failed_before - failed_now),
    }


def _code_shift(previous: np.ndarray, current: np.ndarray, compared: np.ndarray) -> dict[str, Any]:
    previous = np.asarray(previous, dtype=float).ravel()
    current = np.asarray(current, dtype=float).ravel()
    # Per-quadrant cells have no per-neuron success: compare all of their entries.
    mask = compared if previous.size == compared.size else np.ones(previous.size, dtype=bool)
    shift = (current - previous)[mask]
    return {
        "median_shift": float(np.median(shift)) if shift.size else None,
        "median_abs_shift": float(np.median(np.abs(shift))) if shift.size else None,
        "changed": int(np.count_nonzero(shift)),
        "compared": int(shift.size),
    }


def compare_results(previous: NeuronResult, current: NeuronResult) -> dict[str, Any]:
    """How `current` differs from `previous` (two results of the same chip).

    Shifts are `current - previous`, per neuron, over the neurons that succeeded in both, and
    summarised by their median (stored units: seconds, CADC LSB, codes). Returns::

        {"chip_id", "previous_created", "current_created",
         "success_previous", "success_current",     # fractions
         "newly_failed": [neuron ids], "recovered": [neuron ids],
         "target_changed": bool,
         "quantities": {name: {"unit", "median_shift", "median_abs_shift", "previous_median",
                               "current_median", "target_shift", "neurons_compared",
                               "newly_failed", "recovered"}},   # failures naming the quantity
         "codes": {cell: {"median_shift", "median_abs_shift", "changed", "compared"}}}

    A shift is None when no neuron can be compared.
    """
    if previous.chip_id != current.chip_id:
        raise ValueError(
            f"current.chip_id = {current.chip_id!r} differs from previous.chip_id = "
            f"{previous.chip_id!r}: compare results of one chip"
        )
    previous_ok = np.asarray(previous.success, dtype=bool)
    current_ok = np.asarray(current.success, dtype=bool)
    if previous_ok.shape != current_ok.shape:
        raise ValueError(
            f"current has {current_ok.size} neurons, previous has {previous_ok.size}: "
            "compare results of one chip"
        )
    compared = previous_ok & current_ok
    names = ordered_quantities(set(previous.achieved) & set(current.achieved))
    cells = sorted(set(previous.codes) & set(current.codes))
    return {
        "chip_id": current.chip_id,
        "previous_created": previous.provenance.created,
        "current_created": current.provenance.created,
        "success_previous": float(previous_ok.mean()),
        "success_current": float(current_ok.mean()),
        "newly_failed": np.flatnonzero(previous_ok & ~current_ok).tolist(),
        "recovered": np.flatnonzero(~previous_ok & current_ok).tolist(),
        "target_changed": previous.target != current.target,
        "quantities": {name: _quantity_shift(name, previous, current, compared) for name in names},
        "codes": {
            cell: _code_shift(previous.codes[cell], current.codes[cell], compared)
            for cell in cells
            if np.asarray(previous.codes[cell]).shape == np.asarray(current.codes[cell]).shape
        },
    }
