"""Chips behind a service: a gRPC device server, the client-side `RemoteDevice`, leases, and
recorded sessions (`RecordingDevice`, `ReplayDevice`).

Depends only on `device_model`: any object speaking the device protocol can be served.
"""

from device_remote.auth import TOKEN_ENV
from device_remote.client import (
    ChipBusyError,
    DeviceUnreachableError,
    LeaseLostError,
    RemoteDevice,
    ServerRestartedError,
    server_info,
)
from device_remote.recording import RecordingDevice, ReplayDevice, ReplayMismatchError
from device_remote.serve import RemoteFleet, open_device, parse_addresses
from device_remote.server import DeviceServer

__all__ = [
    "TOKEN_ENV",
    "ChipBusyError",
    "DeviceServer",
    "DeviceUnreachableError",
    "LeaseLostError",
    "RecordingDevice",
    "RemoteDevice",
    "RemoteFleet",
    "ReplayDevice",
    "ReplayMismatchError",
    "ServerRestartedError",
    "open_device",
    "parse_addresses",
    "server_info",
]
