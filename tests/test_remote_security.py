"""Loopback by default, a shared token beyond it, and requests that are too big or malformed
refused without harm to the server."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from device_model import DeviceError, SimulatedChip
from device_remote import TOKEN_ENV, DeviceServer, RemoteDevice
from device_remote.auth import check_token, is_loopback, resolve_token
from device_remote.schema import device_service_pb2 as pb
from device_remote.schema import device_service_pb2_grpc as pb_grpc
from tests.remote_helpers import served

TOKEN = "a-shared-secret-of-some-length"


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "192.168.0.7"])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_server_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(ValueError, match=r"'0\.0\.0\.0' is not a loopback address: .* token"):
        DeviceServer(SimulatedChip("remote-0"), "0.0.0.0", 0)
    assert check_token(TOKEN, "0.0.0.0") == TOKEN


def test_a_short_token_is_refused() -> None:
    with pytest.raises(ValueError, match="token must be at least 16 characters, got 5"):
        DeviceServer(SimulatedChip("remote-0"), token="short")


def test_a_client_without_the_token_is_refused() -> None:
    with served(token=TOKEN) as server:
        with pytest.raises(DeviceError, match="missing or wrong token"):
            RemoteDevice(server.address)
        with pytest.raises(DeviceError, match="missing or wrong token"):
            RemoteDevice(server.address, token="not-the-right-token-at-all")
        with RemoteDevice(server.address, token=TOKEN) as device:
            assert device.read_cadc().shape == (1, 512)


def test_the_token_comes_from_a_file_or_the_environment(tmp_path, monkeypatch) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    assert resolve_token(token_file=path) == TOKEN
    monkeypatch.setenv(TOKEN_ENV, " from-the-environment-variable ")
    assert resolve_token() == "from-the-environment-variable"
    with served(token=TOKEN) as server, RemoteDevice(server.address, token_file=path) as device:
        assert device.chip_id == "remote-0"
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(ValueError, match="is empty"):
        resolve_token(token_file=tmp_path / "empty")


def test_an_oversized_request_is_refused_and_the_server_goes_on() -> None:
    with served(max_request_bytes=16 * 1024) as server, RemoteDevice(server.address) as device:
        big = {
            name: np.zeros(512, dtype=np.int64)
            for name in ("v_leak", "v_reset", "v_threshold", "v_exp", "i_bias_leak")
        }
        with pytest.raises(DeviceError, match="RESOURCE_EXHAUSTED"):
            device.write(big)
        device.write({"v_leak": 500})
        assert device.read_settings("v_leak")["v_leak"][0] == 500


def _lease(stub: pb_grpc.DeviceServiceStub) -> pb.Header:
    lease = stub.Acquire(pb.AcquireRequest(holder="test")).lease
    return pb.Header(lease=lease.lease, instance=lease.instance, seq=1)


def test_undecodable_bytes_are_refused_and_the_server_goes_on() -> None:
    with served() as server, grpc.insecure_channel(server.address) as channel:
        raw = channel.unary_unary("/analog_calib.device.v1.DeviceService/Write")
        with pytest.raises(grpc.RpcError) as error:
            raw(b"\xff\xff\xff\xff garbage", timeout=5)
        assert error.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
        stub = pb_grpc.DeviceServiceStub(channel)
        assert stub.Info(pb.InfoRequest(), timeout=5).chip_id == "remote-0"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (pb.NDArray(dtype="|O", shape=[1], data=b"\0" * 8), "dtype '|O' is not allowed"),
        (pb.NDArray(dtype="nonsense", shape=[1], data=b"\0"), "unknown dtype 'nonsense'"),
        (pb.NDArray(dtype="<i8", shape=[512], data=b"\0" * 8), "8 bytes of data, shape (512,)"),
        (pb.NDArray(dtype="<i8", shape=[-1], data=b""), "non-negative dimensions"),
        (pb.NDArray(dtype="<i8", shape=[], data=b"\0" * 8, container="set"), "container 'set'"),
    ],
)
def test_malformed_arrays_are_refused_naming_the_field(array: pb.NDArray, message: str) -> None:
    with served() as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DeviceServiceStub(channel)
        request = pb.WriteRequest(
            header=_lease(stub), settings=[pb.Setting(name="v_leak", value=array)]
        )
        with pytest.raises(grpc.RpcError) as error:
            stub.Write(request, timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "settings 'v_leak'" in error.value.details()
        assert message in error.value.details()


def test_a_request_with_a_missing_scalar_is_refused() -> None:
    with served() as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DeviceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.CountSpikes(pb.CountSpikesRequest(header=_lease(stub)), timeout=5)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "duration: missing scalar value" in error.value.details()


def test_calls_without_a_lease_are_refused() -> None:
    with served() as server, grpc.insecure_channel(server.address) as channel:
        stub = pb_grpc.DeviceServiceStub(channel)
        info = stub.Info(pb.InfoRequest(), timeout=5)
        header = pb.Header(lease="made-up", instance=info.instance, seq=1)
        with pytest.raises(grpc.RpcError) as error:
            stub.Stats(pb.StatsRequest(header=header), timeout=5)
        assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "is not held (unknown to this server)" in error.value.details()
