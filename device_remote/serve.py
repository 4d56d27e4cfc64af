"""Serving a chip until the process is told to stop, and opening a device by address."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from device_model import Faults, SimulatedChip
from device_model.protocol import Device
from device_remote.auth import resolve_token
from device_remote.client import RemoteDevice
from device_remote.server import DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_HOST, DeviceServer

READY_PREFIX = "serving chip"
"""The first line a serving process prints: 'serving chip ID at HOST:PORT (instance ...)'."""


def simulated_chip(
    chip_id: str,
    *,
    seed: int | None = None,
    mismatch_scale: float = 1.0,
    noise_scale: float = 1.0,
    drift_hours: float = 0.0,
    faults: bool | Faults | None = None,
) -> SimulatedChip:
    """A SimulatedChip; `faults=True` injects the typical faults."""
    if faults is True:
        faults = Faults.typical()
    return SimulatedChip(
        chip_id,
        seed=seed,
        mismatch_scale=mismatch_scale,
        noise_scale=noise_scale,
        drift_hours=drift_hours,
        faults=faults or None,
    )


def serve_forever(
    device: Device,
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    token: str | None = None,
    heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
    announce: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> None:
    """Serve `device` until SIGTERM or SIGINT (or `stop` is set); announces the address first."""
    stop = stop or threading.Event()
    with DeviceServer(
        device, host, port, token=token, heartbeat_timeout=heartbeat_timeout
    ) as server:
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, lambda *_: stop.set())
        try:
            announce(
                f"{READY_PREFIX} {device.chip_id} at {server.address} "
                f"(instance {server.instance[:8]}, token {'required' if token else 'none'})"
            )
            while not stop.wait(0.5):
                pass
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def open_device(
    address: str | None,
    chip_id: str,
    *,
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    wait: float = 0.0,
    remote_options: Mapping[str, Any] | None = None,
    **sim_options: Any,
) -> Device:
    """The device a command works on: the simulated chip `chip_id` built from `sim_options`
    when `address` is None, else the chip served at `address` (which must be `chip_id`).

    Simulation options describe the served chip, so with an address they must be left out
    (ValueError naming them); `remote_options` go to RemoteDevice.
    """
    if address is None:
        return simulated_chip(chip_id, **sim_options)
    given = sorted(name for name, value in sim_options.items() if value is not None)
    if given:
        raise ValueError(
            f"{', '.join(given)} describe a simulated chip and apply where it is "
            f"served (calib serve), not to the remote device at {address}"
        )
    return RemoteDevice(
        address,
        chip_id,
        token=resolve_token(token, token_file),
        wait=wait,
        **dict(remote_options or {}),
    )


def check_address(address: str, field: str = "address") -> str:
    """`address` if it is HOST:PORT with a port 1..65535 (IPv6 hosts in brackets)."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{field} {address!r} must be HOST:PORT with a port 1..65535")
    return address.strip()


def parse_addresses(spec: str) -> dict[str, str]:
    """'chip-0=127.0.0.1:50051,chip-1=127.0.0.1:50052' as {chip id: address}."""
    addresses: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        chip_id, sep, address = item.partition("=")
        if not sep or not chip_id.strip():
            raise ValueError(f"device spec item {item!r} must be CHIP=HOST:PORT")
        chip_id = chip_id.strip()
        if chip_id in addresses:
            raise ValueError(f"device spec names chip {chip_id!r} twice")
        addresses[chip_id] = check_address(address, f"address of chip {chip_id!r}")
    if not addresses:
        raise ValueError("device spec is empty; expected CHIP=HOST:PORT[,CHIP=HOST:PORT...]")
    return addresses


@dataclass(frozen=True)
class RemoteFleet:
    """A device factory for fleet work: chip id -> RemoteDevice of that chip's server.

    `addresses` maps each chip id to its server's host:port. Picklable, so Dask workers can
    open their chip themselves.
    """

    addresses: Mapping[str, str]
    token_file: str | None = None
    wait: float = 0.0
    remote_options: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, chip_id: str) -> RemoteDevice:
        if chip_id not in self.addresses:
            raise ValueError(
                f"no device server known for chip {chip_id!r}; known: "
                f"{', '.join(sorted(self.addresses))}"
            )
        return RemoteDevice(
            self.addresses[chip_id],
            chip_id,
            token=resolve_token(None, self.token_file),
            wait=self.wait,
            **dict(self.remote_options),
        )
