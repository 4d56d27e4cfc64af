"""calib: automated calibration of analog neuromorphic chips.

    result = calibrate(SimulatedChip("chip-0"), NeuronTarget(tau_mem=8e-6))
    result.success.mean(); result.achieved["tau_mem"]; result.failures(); print(result.summary())

Layers, lowest first (checked by the import contracts in pyproject.toml):
`calib.core` (plans, targets, failures, results, the routine contract), `calib.algorithms`,
`calib.routines` (one module per circuit, with its plans), `calib.sequences` (the calibration
run, checks, ensure), `calib.frontends` (NIR graphs, model units) and `calib.operations`
(fleets, studies), and on top `calib.cli`, the only user of `reports`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from calib.core.plans import PLANS

PLANS.add_source("calib.routines")  # registers every plan when the registry is first read

_EXPORTS = {
    "Failure": "calib.core.failures",
    "FailureKind": "calib.core.failures",
    "Plan": "calib.core.plans",
    "QuantitySpec": "calib.core.plans",
    "register_plan": "calib.core.plans",
    "NeuronResult": "calib.core.results",
    "Provenance": "calib.core.results",
    "ParameterRange": "calib.core.routine",
    "Routine": "calib.core.routine",
    "NeuronTarget": "calib.core.targets",
    "VoltageMap": "calib.frontends.model_units",
    "map_model_units": "calib.frontends.model_units",
    "NirMapping": "calib.frontends.nir",
    "NirMappingError": "calib.frontends.nir",
    "targets_from_nir": "calib.frontends.nir",
    "CalibrationOptions": "calib.sequences.calibrate",
    "calibrate": "calib.sequences.calibrate",
    "recalibrate": "calib.sequences.calibrate",
    "CheckReport": "calib.sequences.check",
    "check_result": "calib.sequences.check",
    "ensure": "calib.sequences.ensure",
}
"""Public names, imported on first use (so that `import calib` and the command line start at
once; the numerical and fitting libraries load with the first calibration)."""

if TYPE_CHECKING:
    from calib.core.failures import Failure, FailureKind
    from calib.core.plans import Plan, QuantitySpec, register_plan
    from calib.core.results import NeuronResult, Provenance
    from calib.core.routine import ParameterRange, Routine
    from calib.core.targets import NeuronTarget
    from calib.frontends.model_units import VoltageMap, map_model_units
    from calib.frontends.nir import NirMapping, NirMappingError, targets_from_nir
    from calib.sequences.calibrate import CalibrationOptions, calibrate, recalibrate
    from calib.sequences.check import CheckReport, check_result
    from calib.sequences.ensure import ensure

    QUANTITIES: dict[str, QuantitySpec]


def __getattr__(name: str) -> Any:
    if name == "QUANTITIES":
        return PLANS.quantities()  # every target field's spec, by name (a snapshot)
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'calib' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | {"QUANTITIES"})


__all__ = [
    "PLANS",
    "QUANTITIES",
    "CalibrationOptions",
    "CheckReport",
    "Failure",
    "FailureKind",
    "NeuronResult",
    "NeuronTarget",
    "NirMapping",
    "NirMappingError",
    "ParameterRange",
    "Plan",
    "Provenance",
    "QuantitySpec",
    "Routine",
    "VoltageMap",
    "calibrate",
    "check_result",
    "ensure",
    "map_model_units",
    "recalibrate",
    "register_plan",
    "targets_from_nir",
]
