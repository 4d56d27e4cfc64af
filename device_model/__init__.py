"""Device protocol and the mismatch-aware simulated chip."""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "SimulatedChip": "device_model.chip",
    "ChipTruth": "device_model.mismatch",
    "Faults": "device_model.mismatch",
    **dict.fromkeys(
        (
            "CELLS",
            "N_NEURONS",
            "CellSpec",
            "Device",
            "DeviceError",
            "DeviceStats",
            "SpikeCounts",
            "Trace",
            "TransientRunError",
        ),
        "device_model.protocol",
    ),
    **dict.fromkeys(("CurrentStep", "ResetRelease", "SynapticEvents"), "device_model.stimuli"),
}
"""Public names and their modules, imported on first use: a light module of the package (the
limits the command line builds its options from) does not load the simulated chip."""


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'device_model' has no attribute {name!r}")
    return getattr(import_module(module), name)


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
