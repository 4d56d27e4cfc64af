"""calib: automated calibration of analog neuromorphic chips."""

from calib.results import NeuronResult, Provenance, RoutineResult
from calib.routine import ParameterRange, Routine
from calib.targets import QUANTITIES, NeuronTarget

__all__ = [
    "QUANTITIES",
    "NeuronResult",
    "NeuronTarget",
    "ParameterRange",
    "Provenance",
    "Routine",
    "RoutineResult",
]
