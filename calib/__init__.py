"""calib: automated calibration of analog neuromorphic chips.

    result = calibrate(SimulatedChip("chip-0"), NeuronTarget(tau_mem=8e-6))
    result.success.mean(); result.achieved["tau_mem"]; result.failures(); print(result.summary())

Layers, lowest first (checked by the import contracts in pyproject.toml):
`calib.core` (plans, targets, failures, results, the routine contract), `calib.algorithms`,
`calib.routines` (one module per circuit, with its plans), `calib.sequences` (the calibration
run, checks, ensure), `calib.frontends` (NIR graphs, model units) and `calib.operations`
(fleets, studies), and on top `calib.cli`, the only user of `reports`.
"""

import calib.routines  # noqa: F401  (registers every plan before a target is made)
from calib.core.failures import Failure, FailureKind
from calib.core.plans import PLANS, Plan, QuantitySpec, register_plan
from calib.core.results import NeuronResult, Provenance
from calib.core.routine import ParameterRange, Routine
from calib.core.targets import NeuronTarget
from calib.frontends.model_units import VoltageMap, map_model_units
from calib.frontends.nir import NirMapping, NirMappingError, targets_from_nir
from calib.sequences.calibrate import CalibrationOptions, calibrate, recalibrate
from calib.sequences.check import CheckReport, check_result
from calib.sequences.ensure import ensure

QUANTITIES = PLANS.quantities()
"""Every target field's spec, by name (a snapshot; `PLANS.quantities()` is live)."""

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
