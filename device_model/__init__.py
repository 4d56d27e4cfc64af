"""Device protocol and the mismatch-aware simulated chip."""

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
    "CurrentStep",
    "Device",
    "DeviceError",
    "DeviceStats",
    "ResetRelease",
    "SpikeCounts",
    "SynapticEvents",
    "Trace",
    "TransientRunError",
]
