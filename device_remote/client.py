"""`RemoteDevice`: the device protocol on the client side of a device server.

Making one acquires the chip's lease (or raises `ChipBusyError`, after waiting up to `wait`
seconds); a background thread keeps the lease alive with heartbeats until `close()`. Calls that
fail in transit (no connection, a deadline passed) are retried with bounded exponential backoff
under the same sequence number, so the server answers a retried call without running it twice;
a device run that failed transiently is retried `transient_retries` times as a new call. What
still fails is raised as the protocol's exceptions: `DeviceUnreachableError` (a
TransientRunError) when the server cannot be reached, `TransientRunError` as the device raised
it, `ServerRestartedError` / `LeaseLostError` (DeviceErrors) when the chip's state can no longer
be trusted; validation errors arrive as the ValueError the device raised.
"""

from __future__ import annotations

import getpass
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import (
    DeviceError,
    DeviceStats,
    SpikeCounts,
    StimulusArg,
    Trace,
    TransientRunError,
    validate_settings,
)
from device_remote import codec
from device_remote.auth import resolve_token
from device_remote.schema import device_service_pb2 as pb
from device_remote.schema import device_service_pb2_grpc as pb_grpc
from device_remote.server import (
    DEFAULT_MAX_REPLY_BYTES,
    ERROR_METADATA,
    REFUSED_LEASE,
    REFUSED_RESTARTED,
    REFUSED_TOKEN,
    TOKEN_METADATA,
)

RETRIED_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
"""Transport failures worth another attempt (the call may not have reached the device)."""
BUSY_POLL = 0.2
"""Seconds between lease requests while waiting for a busy chip the server did not wait for."""


class ChipBusyError(DeviceError):
    """The chip is leased to another client."""

    def __init__(self, chip_id: str, holder: str, since: str) -> None:
        super().__init__(f"chip {chip_id} in use by {holder} since {since}")
        self.chip_id, self.holder, self.since = chip_id, holder, since


class DeviceUnreachableError(TransientRunError):
    """The device server did not answer within the retries (a later call may succeed)."""


class ServerRestartedError(DeviceError):
    """The server restarted since the lease was granted: the chip's written state is lost."""


class LeaseLostError(DeviceError):
    """The lease ended (heartbeat timeout) or was never held: the chip may have changed."""


def default_holder() -> str:
    """Who this client is, as other clients see it: user@host pid N."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def _positive(name: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{name} = {value!r} is outside the allowed range {low:g}..{high:g}")
    return float(value)


class _LeaseKeeper:
    """Sends heartbeats from a daemon thread; notes when the server says the lease is gone."""

    def __init__(
        self,
        stub: pb_grpc.DeviceServiceStub,
        request: pb.LeaseRequest,
        interval: float,
        metadata: tuple[tuple[str, str], ...],
    ) -> None:
        self.lost: DeviceError | None = None
        self._stub, self._request, self._interval = stub, request, interval
        self._metadata = metadata
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="device-lease-heartbeat", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._stub.Heartbeat(self._request, timeout=self._interval, metadata=self._metadata)
            except grpc.RpcError as error:
                refused = _refusal(error)
                if refused is not None:
                    self.lost = refused
                    return
                # a lost connection: the next device call retries and reports it

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval + 1.0)


def _refusal(error: grpc.RpcError) -> DeviceError | None:
    """The DeviceError for a call the server refused for good, None for transport trouble."""
    trailing = dict(error.trailing_metadata() or ())  # type: ignore[attr-defined]
    reason = trailing.get(ERROR_METADATA)
    details = error.details()  # type: ignore[attr-defined]
    if reason == REFUSED_RESTARTED:
        return ServerRestartedError(details)
    if reason == REFUSED_LEASE:
        return LeaseLostError(details)
    if reason == REFUSED_TOKEN:
        return DeviceError(details)
    return None


class RemoteDevice:
    """A chip served by a device server at `address` (host:port), held under a lease.

    `chip_id`, when given, must be the served chip's id. `wait` seconds are spent waiting for
    a chip another client holds (0: fail at once with ChipBusyError). `call_timeout` bounds
    one attempt of a call, `retries` the further attempts after a transport failure (backoff
    from `backoff` doubling up to `max_backoff` s); `transient_retries` repeats a device run
    that failed transiently. The token comes from `token`, `token_file` or
    $CALIB_DEVICE_TOKEN.
    """

    def __init__(
        self,
        address: str,
        chip_id: str | None = None,
        *,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        holder: str | None = None,
        wait: float = 0.0,
        call_timeout: float = 60.0,
        connect_timeout: float = 5.0,
        retries: int = 5,
        backoff: float = 0.05,
        max_backoff: float = 1.0,
        transient_retries: int = 2,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if not isinstance(address, str) or ":" not in address:
            raise ValueError(f"address must be host:port, got {address!r}")
        self.address = address
        self.wait = _positive("wait", wait, 0.0, 86400.0)
        self.call_timeout = _positive("call_timeout", call_timeout, 0.01, 86400.0)
        self.connect_timeout = _positive("connect_timeout", connect_timeout, 0.01, 3600.0)
        self.backoff = _positive("backoff", backoff, 0.0, 60.0)
        self.max_backoff = _positive("max_backoff", max_backoff, 0.0, 600.0)
        for name, value in (("retries", retries), ("transient_retries", transient_retries)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
                raise ValueError(f"{name} = {value!r} is outside the allowed range 0..100")
        self.retries, self.transient_retries = retries, transient_retries
        self.holder = holder or default_holder()
        token = resolve_token(token, token_file)
        self._metadata: tuple[tuple[str, str], ...] = ((TOKEN_METADATA, token),) if token else ()
        self._channel = grpc.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", max_reply_bytes),
                ("grpc.max_send_message_length", -1),
                ("grpc.initial_reconnect_backoff_ms", 50),
                ("grpc.min_reconnect_backoff_ms", 50),
                ("grpc.max_reconnect_backoff_ms", 500),
            ],
        )
        self._stub = pb_grpc.DeviceServiceStub(self._channel)
        self._seq = 0
        self._call_lock = threading.Lock()
        self._broken: DeviceError | None = None
        self._keeper: _LeaseKeeper | None = None
        try:
            lease = self._acquire()
        except BaseException:
            self._channel.close()
            raise
        if chip_id is not None and lease.chip_id != chip_id:
            self._release(lease)
            self._channel.close()
            raise ValueError(
                f"the server at {address} serves chip {lease.chip_id!r}, not {chip_id!r}"
            )
        self.chip_id: str = lease.chip_id
        self.n_neurons: int = int(lease.n_neurons)
        self.device_type = lease.device_type
        self.lease, self.instance = lease.lease, lease.instance
        self.heartbeat_timeout = lease.heartbeat_timeout
        self._keeper = _LeaseKeeper(
            self._stub,
            pb.LeaseRequest(lease=lease.lease, instance=lease.instance),
            lease.heartbeat_timeout / 4,
            self._metadata,
        )
        self._finalizer = weakref.finalize(
            self, _close, self._keeper, self._stub, self._channel, lease, self._metadata
        )

    # --- lease ----------------------------------------------------------------------------

    def _acquire(self) -> pb.Lease:
        deadline = time.monotonic() + self.wait
        connect_deadline = time.monotonic() + self.connect_timeout
        delay = self.backoff
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            try:
                reply = self._stub.Acquire(
                    pb.AcquireRequest(holder=self.holder, wait=left),
                    timeout=left + self.call_timeout,
                    metadata=self._metadata,
                )
            except grpc.RpcError as error:
                refused = _refusal(error)
                if refused is not None:
                    raise refused from None
                if error.code() in RETRIED_CODES and time.monotonic() < connect_deadline:
                    time.sleep(delay)
                    delay = min(2 * delay or 0.01, self.max_backoff)
                    continue
                raise DeviceUnreachableError(
                    f"device server at {self.address} did not grant a lease: "
                    f"{error.code().name}: {error.details()}"
                ) from None
            if reply.WhichOneof("outcome") == "lease":
                return reply.lease
            left = deadline - time.monotonic()
            if left <= 0:
                raise ChipBusyError(reply.busy.chip_id, reply.busy.holder, reply.busy.since)
            time.sleep(min(BUSY_POLL, left))  # the server answered before the wait was over

    def _release(self, lease: pb.Lease) -> None:
        try:
            self._stub.Release(
                pb.LeaseRequest(lease=lease.lease, instance=lease.instance),
                timeout=1.0,
                metadata=self._metadata,
            )
        except grpc.RpcError:
            pass  # the lease ends by its heartbeat timeout anyway

    def close(self) -> None:
        """Release the lease and close the connection (the device is unusable afterwards)."""
        if self._broken is None:
            self._broken = DeviceError(f"remote device {self.chip_id} at {self.address} is closed")
        self._finalizer()

    def __enter__(self) -> RemoteDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- calls ----------------------------------------------------------------------------

    def _send(self, method: str, rpc: Callable[..., pb.Reply], request: Any) -> pb.Reply:
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return rpc(request, timeout=self.call_timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                refused = _refusal(error)
                if refused is not None:
                    self._broken = refused
                    raise refused from None
                code = error.code()
                if code in RETRIED_CODES and attempt < self.retries:
                    time.sleep(delay)
                    delay = min(2 * delay or 0.01, self.max_backoff)
                    continue
                where = f"chip {self.chip_id} at {self.address}: {method}"
                if code in RETRIED_CODES:
                    raise DeviceUnreachableError(
                        f"{where} failed {self.retries + 1} times: {code.name}: {error.details()}"
                    ) from None
                raise DeviceError(f"{where} refused: {code.name}: {error.details()}") from None
        raise AssertionError("unreachable")

    def _invoke(self, method: str, rpc: Callable[..., pb.Reply], request: Any) -> Any:
        with self._call_lock:  # one call at a time: sequence numbers must not interleave
            return self._invoke_locked(method, rpc, request)

    def _invoke_locked(self, method: str, rpc: Callable[..., pb.Reply], request: Any) -> Any:
        for attempt in range(self.transient_retries + 1):
            if self._broken is not None:
                raise type(self._broken)(str(self._broken))
            if self._keeper is not None and self._keeper.lost is not None:
                self._broken = self._keeper.lost
                raise type(self._broken)(str(self._broken))
            self._seq += 1
            request.header.CopyFrom(
                pb.Header(lease=self.lease, instance=self.instance, seq=self._seq)
            )
            reply = self._send(method, rpc, request)
            if reply.failure.kind == pb.Failure.Kind.NONE:
                return codec.decode_result(method, reply)
            error = codec.failure_exception(reply.failure)
            if not isinstance(error, TransientRunError) or attempt == self.transient_retries:
                raise error
            time.sleep(min(self.backoff * 2**attempt, self.max_backoff))
        raise AssertionError("unreachable")

    @property
    def stats(self) -> DeviceStats:
        """The device's counters (one call to the server)."""
        return self._invoke("stats", self._stub.Stats, pb.StatsRequest())

    def write(self, settings: Mapping[str, ArrayLike]) -> None:
        try:
            encoded = codec.encode_settings(settings)
        except ValueError:
            validate_settings(settings)  # the protocol's own message for what cannot travel
            raise
        self._invoke("write", self._stub.Write, pb.WriteRequest(settings=encoded))

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        if names is None:
            request = pb.ReadSettingsRequest(all=True)
        elif isinstance(names, str):
            request = pb.ReadSettingsRequest(
                single=True, names=[codec.encode_scalar(names, "names")]
            )
        else:
            request = pb.ReadSettingsRequest(
                names=[codec.encode_scalar(name, "names") for name in list(names)]
            )
        return self._invoke("read_settings", self._stub.ReadSettings, request)

    def read_cadc(
        self, samples: int = 1, stimulus: StimulusArg = None, read_time: float | None = None
    ) -> np.ndarray:
        request = pb.ReadCadcRequest(
            samples=codec.encode_scalar(samples, "samples"),
            stimulus=codec.encode_stimuli(stimulus),
            read_time=codec.encode_scalar(read_time, "read_time"),
        )
        return self._invoke("read_cadc", self._stub.ReadCadc, request)

    def record_madc(
        self, neurons: Sequence[int], duration: float, stimulus: StimulusArg = None
    ) -> Trace:
        request = pb.RecordMadcRequest(
            neurons=codec.encode_array(neurons, "neurons"),
            duration=codec.encode_scalar(duration, "duration"),
            stimulus=codec.encode_stimuli(stimulus),
        )
        return self._invoke("record_madc", self._stub.RecordMadc, request)

    def count_spikes(self, duration: float, stimulus: StimulusArg = None) -> SpikeCounts:
        request = pb.CountSpikesRequest(
            duration=codec.encode_scalar(duration, "duration"),
            stimulus=codec.encode_stimuli(stimulus),
        )
        return self._invoke("count_spikes", self._stub.CountSpikes, request)

    def __repr__(self) -> str:
        return f"RemoteDevice({self.address!r}, chip_id={self.chip_id!r})"


def _close(
    keeper: _LeaseKeeper,
    stub: pb_grpc.DeviceServiceStub,
    channel: grpc.Channel,
    lease: pb.Lease,
    metadata: tuple[tuple[str, str], ...],
) -> None:
    keeper.stop()
    try:
        stub.Release(
            pb.LeaseRequest(lease=lease.lease, instance=lease.instance),
            timeout=1.0,
            metadata=metadata,
        )
    except grpc.RpcError:
        pass  # the lease ends by its heartbeat timeout anyway
    channel.close()


def server_info(
    address: str,
    *,
    token: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """What the server at `address` serves and who holds it, without taking a lease."""
    metadata = ((TOKEN_METADATA, token),) if (token := resolve_token(token, token_file)) else ()
    with grpc.insecure_channel(address) as channel:
        try:
            info = pb_grpc.DeviceServiceStub(channel).Info(
                pb.InfoRequest(), timeout=timeout, metadata=metadata
            )
        except grpc.RpcError as error:
            refused = _refusal(error)
            if refused is not None:
                raise refused from None
            raise DeviceUnreachableError(
                f"device server at {address}: {error.code().name}: {error.details()}"
            ) from None
    return {
        "chip_id": info.chip_id,
        "n_neurons": info.n_neurons,
        "instance": info.instance,
        "started": info.started,
        "device_type": info.device_type,
        "holder": info.holder or None,
        "since": info.since or None,
        "heartbeat_timeout": info.heartbeat_timeout,
        "schema_version": info.schema_version,
    }
