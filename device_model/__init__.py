"""Device protocol and the mismatch-aware simulated chip."""

from device_model.chip import SimulatedChip
from device_model.mismatch import ChipTruth, Faults
from device_model.protocol import (
    CELLS,
    N_NEURONS,
    CellSpec,
    Device,
    DeviceError,
    DeviceStats,
    SpikeCounts,
    Trace,
    TransientRunError,
)
from device_model.stimuli import CurrentStep, ResetRelease, SynapticEvents

__all__ = [
    "CELLS",
    "N_NEURONS",
    "CellSpec",
    "ChipTruth",
    "CurrentStep",
    "Device",
    "DeviceError",
    "DeviceStats",
    "Faults",
    "ResetRelease",
    "SimulatedChip",
    "SpikeCounts",
    "SynapticEvents",
    "Trace",
    "TransientRunError",
]
