"""Lost connections and server restarts: retried with bounded backoff, then raised as the
protocol's errors; a restarted server is detected, never silently continued on."""

from __future__ import annotations

import random
import threading
import time

import grpc
import pytest

from calib import calibrate
from calib.algorithms.base import RoutineFailed
from calib.operations.fleet import maintain_chip
from device_model import DeviceError, SimulatedChip, TransientRunError
from device_remote import (
    DeviceServer,
    DeviceUnreachableError,
    RemoteDevice,
    ServerRestartedError,
)
from device_remote.schema import device_service_pb2 as pb
from device_remote.schema import device_service_pb2_grpc as pb_grpc
from device_remote.serve import RemoteFleet
from results_store import ResultsStore
from tests.remote_helpers import CuttableProxy, served, spawn_server, stop_process

FAST = {"retries": 3, "backoff": 0.02, "max_backoff": 0.1, "call_timeout": 5.0}


def test_a_stopped_server_is_reported_as_unreachable_within_the_retries() -> None:
    with served() as server:
        device = RemoteDevice(server.address, **FAST)
    started = time.monotonic()
    with pytest.raises(DeviceUnreachableError, match="failed 4 times: UNAVAILABLE"):
        device.read_cadc()
    assert time.monotonic() - started < 3.0
    assert issubclass(DeviceUnreachableError, TransientRunError)
    device.close()


def test_a_restarted_server_is_detected_and_the_next_client_works() -> None:
    with served(SimulatedChip("remote-0")) as server:
        port = server.port
        device = RemoteDevice(server.address, **FAST)
        device.write({"v_leak": 300})
    with DeviceServer(SimulatedChip("remote-0"), "127.0.0.1", port) as restarted:
        with pytest.raises(ServerRestartedError, match="the device server restarted"):
            device.read_settings("v_leak")
        with pytest.raises(ServerRestartedError):  # and stays failed
            device.read_cadc()
        device.close()
        with RemoteDevice(restarted.address) as fresh:
            assert fresh.read_settings("v_leak")["v_leak"][0] == 400  # the default again


def test_a_dropped_connection_is_retried_on_the_same_server() -> None:
    chip = SimulatedChip("remote-0")
    with served(chip) as server:
        proxy = CuttableProxy(server.address)
        try:
            with RemoteDevice(proxy.address, **FAST) as device:
                device.write({"v_leak": 300})
                proxy.cut()
                assert device.read_settings("v_leak")["v_leak"][0] == 300  # reconnected
                runs = chip.stats.runs
                proxy.cut_next_reply()
                assert device.read_cadc(4).shape == (4, 512)
                assert proxy.lost_replies == 1
                assert chip.stats.runs == runs + 1  # the retry got the first answer
        finally:
            proxy.close()


def test_a_retried_call_is_answered_without_running_twice() -> None:
    chip = SimulatedChip("remote-0")
    with served(chip) as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DeviceServiceStub(channel)
        lease = stub.Acquire(pb.AcquireRequest(holder="test")).lease
        header = pb.Header(lease=lease.lease, instance=lease.instance, seq=1)
        request = pb.ReadCadcRequest(
            header=header,
            samples=pb.Scalar(integer=4),
            stimulus=pb.Stimuli(),
            read_time=pb.Scalar(none=True),
        )
        first, again = stub.ReadCadc(request), stub.ReadCadc(request)
        assert first == again
        assert chip.stats.runs == 1
        stale = pb.StatsRequest(header=pb.Header(lease=lease.lease, instance=lease.instance))
        with pytest.raises(grpc.RpcError) as error:
            stub.Stats(stale)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "header.seq 0 is not after the last call 1" in error.value.details()


def test_a_fleet_chip_whose_server_is_dead_fails_alone(tmp_path) -> None:
    with served() as server:
        dead = server.address
    fleet = RemoteFleet({"remote-0": dead}, remote_options={"connect_timeout": 0.3, **FAST})
    started = time.monotonic()
    ResultsStore(tmp_path / "store", create=True)
    outcome = maintain_chip("remote-0", str(tmp_path / "store"), device_factory=fleet)
    assert outcome.status == "failed"
    assert "DeviceUnreachableError" in outcome.detail
    assert time.monotonic() - started < 10.0
    with pytest.raises(ValueError, match="no device server known for chip 'other'"):
        fleet("other")


@pytest.mark.slow
def test_killing_the_server_mid_calibration_fails_it_cleanly(tmp_path) -> None:
    store = ResultsStore(tmp_path / "store", create=True)
    process, address = spawn_server(["device_remote", "--chip", "kill-0"])
    port = address.rsplit(":", 1)[1]
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            with RemoteDevice(address, call_timeout=10.0, retries=4, backoff=0.05) as device:
                calibrate(device, store=store)
            outcome.append(None)
        except BaseException as error:  # the test inspects it
            outcome.append(error)

    thread = threading.Thread(target=run, daemon=True)
    try:
        thread.start()
        time.sleep(random.uniform(0.5, 2.0))
        stop_process(process, kill=True)
        process, _ = spawn_server(["device_remote", "--chip", "kill-0", "--port", port])
        thread.join(timeout=60)
        assert not thread.is_alive(), "the calibration hung after the server was killed"
        error = outcome[0]
        assert isinstance(error, DeviceError | RoutineFailed), repr(error)
        assert "restarted" in str(error) or "failed" in str(error)
        assert store.chips() == []  # nothing stored
        with RemoteDevice(address, wait=5.0) as device:  # the next client works
            device.write({"v_leak": 420})
            assert device.read_settings("v_leak")["v_leak"][0] == 420
    finally:
        stop_process(process, kill=True)
