"""Helpers of the remote-device tests: loopback servers that always stop, and a call sequence
touching every method of the device protocol."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from device_model import CurrentStep, ResetRelease, SimulatedChip, SynapticEvents
from device_model.protocol import Device, DeviceStats
from device_remote import DeviceServer
from device_remote.recording import canonical, same

START_TIMEOUT = 30.0
"""Seconds a server process may take to print its address."""


@contextmanager
def served(device: Device | None = None, **options: Any) -> Iterator[DeviceServer]:
    """A DeviceServer on 127.0.0.1 and a free port, stopped on leaving the block."""
    server = DeviceServer(device or SimulatedChip("remote-0"), "127.0.0.1", 0, **options)
    try:
        yield server
    finally:
        server.stop(grace=0)


def spawn_server(
    args: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """A server process (`python -m ARGS...`) and the address it announced."""
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or " at " not in line[0]:
        stop_process(process)
        raise RuntimeError(f"server did not start: {line!r} {process.stderr.read()!r}")
    return process, line[0].split(" at ", 1)[1].split()[0]


def stop_process(process: subprocess.Popen[str], kill: bool = False) -> None:
    if process.poll() is None:
        process.kill() if kill else process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


def call_sequence(device: Device) -> list[Any]:
    """Every protocol method with its argument forms; what each call returned."""
    out: list[Any] = [device.stats]
    device.write({"v_leak": 450, "i_bias_leak": np.full(512, 300)})
    device.write({"leak_divide": True, "membrane_capacitance": np.int64(40)})
    out.append(device.read_settings())
    out.append(device.read_settings("v_leak"))
    out.append(device.read_settings(["v_leak", "v_reset"]))
    out.append(device.read_cadc())
    out.append(device.read_cadc(5, CurrentStep(1e-9, 50e-6), read_time=10e-6))
    out.append(
        device.read_cadc(np.int64(3), [ResetRelease(2e-6), SynapticEvents.regular(5e-6, 5e-6, 3)])
    )
    out.append(device.record_madc([0, 1, 2], 20e-6, ResetRelease(1e-6)))
    out.append(device.record_madc(np.arange(4), 10e-6))
    out.append(device.count_spikes(100e-6))
    out.append(device.count_spikes(50e-6, CurrentStep(2e-9, 50e-6)))
    out.append(device.stats)
    return out


def identical(a: Any, b: Any) -> bool:
    """Bit-identical values (arrays: dtype, shape and bytes); DeviceStats by their numbers
    (a chip may count hardware time in a numpy float, the wire in a Python float)."""
    if isinstance(a, DeviceStats) and isinstance(b, DeviceStats):
        return (a.runs, a.writes) == (b.runs, b.writes) and same(
            float(a.hardware_time), float(b.hardware_time)
        )
    return same(canonical(a), canonical(b))


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of `upstream` whose connections the test can cut:
    `cut()` closes every open connection now, `cut_next_reply()` closes a connection instead
    of passing on the next bytes the server sends (the request ran, its answer is lost)."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.lost_replies = 0
        self._arm = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(self.upstream, timeout=5)
            with self._lock:
                self._sockets += [client, server]
            for source, target, replies in ((client, server, False), (server, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, target, replies), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, replies: bool) -> None:
        try:
            while data := source.recv(65536):
                if replies and self._arm.is_set():
                    self._arm.clear()
                    self.lost_replies += 1
                    break
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def cut_next_reply(self) -> None:
        self._arm.set()

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        self.cut()
        self._thread.join(timeout=5)
