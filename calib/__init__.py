"""calib: automated calibration of analog neuromorphic chips.

    result = calibrate(SimulatedChip("chip-0"), NeuronTarget(tau_mem=8e-6))
    result.success.mean(); result.achieved["tau_mem"]; result.failures(); print(result.summary())
"""

from calib.calibrate import CalibrationOptions, calibrate, recalibrate
from calib.check import CheckReport, check_result
from calib.ensure import ensure
from calib.model_units import VoltageMap, map_model_units
from calib.nir_targets import NirMapping, NirMappingError, targets_from_nir
from calib.results import NeuronResult, Provenance
from calib.routine import ParameterRange, Routine
from calib.targets import QUANTITIES, NeuronTarget

__all__ = [
    "QUANTITIES",
    "CalibrationOptions",
    "CheckReport",
    "NeuronResult",
    "NeuronTarget",
    "NirMapping",
    "NirMappingError",
    "ParameterRange",
    "Provenance",
    "Routine",
    "VoltageMap",
    "calibrate",
    "check_result",
    "ensure",
    "map_model_units",
    "recalibrate",
    "targets_from_nir",
]
