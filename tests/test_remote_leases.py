"""One client holds a chip at a time; a lease ends with its client, a crash included."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time

import pytest

from device_remote import ChipBusyError, LeaseLostError, RemoteDevice, server_info
from tests.remote_helpers import served, stop_process

HEARTBEAT = 0.4
"""Heartbeat timeout of the servers in these tests (seconds)."""


def test_a_second_client_is_told_who_holds_the_chip_and_since_when() -> None:
    with served() as server, RemoteDevice(server.address, holder="alice on rig 1"):
        with pytest.raises(
            ChipBusyError,
            match=r"^chip remote-0 in use by alice on rig 1 since "
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d",
        ):
            RemoteDevice(server.address, holder="bob")


def test_a_waiting_client_gets_the_chip_when_the_holder_releases_it() -> None:
    with served() as server:
        first = RemoteDevice(server.address, holder="first")
        timer = threading.Timer(0.3, first.close)
        timer.start()
        started = time.monotonic()
        try:
            with RemoteDevice(server.address, holder="second", wait=10.0) as second:
                assert second.read_cadc().shape == (1, 512)
        finally:
            timer.cancel()
            first.close()
        assert 0.25 < time.monotonic() - started < 5.0


def test_waiting_ends_with_the_busy_error_after_the_wait() -> None:
    with served() as server, RemoteDevice(server.address, holder="first"):
        started = time.monotonic()
        with pytest.raises(ChipBusyError, match="in use by first"):
            RemoteDevice(server.address, holder="second", wait=0.5)
        assert 0.5 <= time.monotonic() - started < 3.0


def test_heartbeats_keep_an_idle_lease() -> None:
    with served(heartbeat_timeout=HEARTBEAT) as server, RemoteDevice(server.address) as device:
        time.sleep(4 * HEARTBEAT)
        assert device.read_cadc().shape == (1, 512)
        with pytest.raises(ChipBusyError):
            RemoteDevice(server.address)


def test_a_silent_client_loses_its_lease_and_is_told_so() -> None:
    with served(heartbeat_timeout=HEARTBEAT) as server:
        silent = RemoteDevice(server.address, holder="silent")
        silent._keeper.stop()  # a hung client: no more heartbeats
        with RemoteDevice(server.address, holder="next", wait=5.0) as device:
            assert device.read_cadc().shape == (1, 512)
        with pytest.raises(LeaseLostError, match=r"lease .* is not held"):
            silent.read_cadc()
        with pytest.raises(LeaseLostError):
            silent.write({"v_leak": 400})
        silent.close()


CRASHING_CLIENT = """
import sys, time
from device_remote import RemoteDevice
device = RemoteDevice(sys.argv[1], holder="crashing client")
print("held", flush=True)
time.sleep(60)
"""


def test_a_crashed_client_loses_the_lease_after_the_heartbeat_timeout() -> None:
    with served(heartbeat_timeout=HEARTBEAT) as server:
        client = subprocess.Popen(
            [sys.executable, "-c", CRASHING_CLIENT, server.address],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout.readline().strip() == "held"
            with pytest.raises(ChipBusyError, match="in use by crashing client"):
                RemoteDevice(server.address)
            client.kill()
            client.wait(timeout=10)
            started = time.monotonic()
            with RemoteDevice(server.address, wait=10.0) as device:
                assert device.read_cadc().shape == (1, 512)
            assert time.monotonic() - started < HEARTBEAT + 3.0
        finally:
            stop_process(client, kill=True)


def test_many_waiting_clients_do_not_starve_the_holders_heartbeats() -> None:
    with served(heartbeat_timeout=HEARTBEAT) as server, RemoteDevice(server.address) as holder:
        errors: list[BaseException] = []

        def wait_in_vain() -> None:
            try:
                RemoteDevice(server.address, wait=1.5)
            except ChipBusyError as error:
                errors.append(error)

        waiters = [threading.Thread(target=wait_in_vain) for _ in range(12)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(timeout=30)
        assert len(errors) == 12
        assert holder.read_cadc().shape == (1, 512)  # still the holder


def test_server_info_tells_the_holder_without_taking_the_lease() -> None:
    with served() as server:
        assert server_info(server.address)["holder"] is None
        with RemoteDevice(server.address, holder="carol"):
            info = server_info(server.address)
        assert (info["chip_id"], info["holder"], info["schema_version"]) == ("remote-0", "carol", 1)
        assert info["instance"] == server.instance


def test_a_forgotten_remote_device_releases_its_lease_when_collected() -> None:
    with served() as server:
        forgotten = RemoteDevice(server.address, holder="forgetful")
        del forgotten
        gc.collect()
        with RemoteDevice(server.address) as device:
            assert device.chip_id == "remote-0"
