"""The device server: one Device behind the device protocol over gRPC, with leases.

One client holds the chip at a time (a lease). The lease ends when its client releases it, or
when the client has been silent for `heartbeat_timeout` seconds (a crashed client included).
Every device call names its lease, the server instance and a sequence number; a call retried
after a lost connection gets the first answer instead of running twice, and a call meant for
an earlier server instance (the server restarted, the chip's state is gone) is refused.

The server binds to loopback by default; binding elsewhere needs a shared token, which every
request must then carry. Requests above `max_request_bytes` are refused by gRPC; malformed
ones get INVALID_ARGUMENT naming the field. Neither stops the server.
"""

from __future__ import annotations

import hmac
import math
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc

from device_model.protocol import Device
from device_remote import codec
from device_remote.auth import check_token
from device_remote.codec import MalformedMessage
from device_remote.schema import device_service_pb2 as pb
from device_remote.schema import device_service_pb2_grpc as pb_grpc

SCHEMA_VERSION = 1
DEFAULT_HOST = "127.0.0.1"
DEFAULT_HEARTBEAT_TIMEOUT = 10.0
"""Seconds without a heartbeat or call after which a lease ends."""
MAX_ACQUIRE_WAIT = 10.0
"""Longest a single Acquire request waits for a busy chip; clients ask again for longer."""
MAX_WAITERS = 8
"""Acquire requests allowed to wait at once; they must not take every worker thread (the
holder's heartbeats need one)."""
DEFAULT_MAX_REQUEST_BYTES = 4 * 2**20
DEFAULT_MAX_REPLY_BYTES = 256 * 2**20
MAX_HOLDER_LENGTH = 200
ENDED_LEASES_KEPT = 256
TOKEN_METADATA = "x-device-token"
ERROR_METADATA = "x-device-error"
"""Trailing metadata key telling why a call was refused: see the REFUSED_* values."""
REFUSED_RESTARTED = "server-restarted"
REFUSED_LEASE = "lease-lost"
REFUSED_TOKEN = "token"
WORKER_THREADS = 2 * MAX_WAITERS + 4
MAX_CONCURRENT_RPCS = 4 * WORKER_THREADS
"""Requests beyond this many at once are refused (RESOURCE_EXHAUSTED) instead of queued."""


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Refused(Exception):
    """A request refused with a gRPC status (and a reason in the trailing metadata)."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass
class _Lease:
    lease: str
    holder: str
    since: str
    last_seen: float
    last_seq: int = 0
    last_reply: pb.Reply | None = None


class LeaseTable:
    """Who holds the chip; leases end on release or after `heartbeat_timeout` of silence."""

    def __init__(self, chip_id: str, heartbeat_timeout: float) -> None:
        self.chip_id = chip_id
        self.heartbeat_timeout = heartbeat_timeout
        self._current: _Lease | None = None
        self._ended: OrderedDict[str, str] = OrderedDict()
        self._changed = threading.Condition()
        self._waiters = 0

    def _end(self, reason: str) -> None:
        assert self._current is not None
        self._ended[self._current.lease] = reason
        while len(self._ended) > ENDED_LEASES_KEPT:
            self._ended.popitem(last=False)
        self._current = None
        self._changed.notify_all()

    def _expire(self) -> None:
        current = self._current
        if current is not None and time.monotonic() - current.last_seen > self.heartbeat_timeout:
            self._end(
                f"expired after {self.heartbeat_timeout:g} s without a heartbeat from "
                f"{current.holder}"
            )

    def holder(self) -> tuple[str, str]:
        with self._changed:
            self._expire()
            current = self._current
            return ("", "") if current is None else (current.holder, current.since)

    def acquire(self, holder: str, wait: float) -> _Lease | tuple[str, str]:
        """A new lease, or (holder, since) of the lease in the way after `wait` seconds (at
        once when MAX_WAITERS requests already wait: the client asks again)."""
        deadline = time.monotonic() + min(max(wait, 0.0), MAX_ACQUIRE_WAIT)
        with self._changed:
            if self._waiters >= MAX_WAITERS:
                deadline = 0.0
            self._waiters += 1
            try:
                while True:
                    self._expire()
                    current = self._current
                    if current is None:
                        self._current = _Lease(
                            uuid.uuid4().hex, holder, now_iso(), time.monotonic()
                        )
                        return self._current
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return current.holder, current.since
                    expires_in = current.last_seen + self.heartbeat_timeout - time.monotonic()
                    self._changed.wait(max(min(left, expires_in + 0.01), 0.001))
            finally:
                self._waiters -= 1

    def touch(self, lease: str) -> _Lease:
        """The held lease `lease`, its silence timer restarted; Refused when it is not held."""
        with self._changed:
            self._expire()
            current = self._current
            if current is None or current.lease != lease:
                reason = self._ended.get(lease, "unknown to this server")
                raise Refused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"chip {self.chip_id}: lease {lease[:8]} is not held ({reason}); the chip "
                    "may have been changed since",
                    REFUSED_LEASE,
                )
            current.last_seen = time.monotonic()
            return current

    def release(self, lease: str) -> None:
        with self._changed:
            if self._current is not None and self._current.lease == lease:
                self._end("released")


def _abort(context: grpc.ServicerContext, refused: Refused) -> None:
    if refused.reason:
        context.set_trailing_metadata(((ERROR_METADATA, refused.reason),))
    context.abort(refused.code, str(refused))


class DeviceServicer(pb_grpc.DeviceServiceServicer):
    """The gRPC service for one device."""

    def __init__(
        self, device: Device, token: str | None, heartbeat_timeout: float, instance: str
    ) -> None:
        self.device = device
        self.token = token
        self.instance = instance
        self.started = now_iso()
        self.leases = LeaseTable(device.chip_id, heartbeat_timeout)
        self._device_lock = threading.Lock()

    # --- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _guard(self, context: grpc.ServicerContext) -> Iterator[None]:
        """Token check, and every exception turned into a status (the server never dies)."""
        try:
            if self.token is not None:
                given = dict(context.invocation_metadata()).get(TOKEN_METADATA, "")
                if not hmac.compare_digest(str(given).encode(), self.token.encode()):
                    raise Refused(
                        grpc.StatusCode.UNAUTHENTICATED,
                        f"chip {self.device.chip_id}: missing or wrong token",
                        REFUSED_TOKEN,
                    )
            yield
        except Refused as refused:
            _abort(context, refused)
        except MalformedMessage as error:
            _abort(
                context, Refused(grpc.StatusCode.INVALID_ARGUMENT, f"malformed request: {error}")
            )
        except Exception as error:  # a fault of the server itself: reported, not fatal
            _abort(
                context,
                Refused(
                    grpc.StatusCode.INTERNAL,
                    f"device server error: {type(error).__name__}: {error}",
                ),
            )

    def _check_instance(self, instance: str) -> None:
        if instance != self.instance:
            raise Refused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"chip {self.device.chip_id}: the device server restarted (lease from instance "
                f"{instance[:8] or '?'}, this is instance {self.instance[:8]}, started "
                f"{self.started}); the chip's state is lost",
                REFUSED_RESTARTED,
            )

    def _call(
        self,
        header: pb.Header,
        method: str,
        decode: Callable[[], tuple[tuple, dict]],
        context: grpc.ServicerContext,
    ) -> pb.Reply:
        with self._guard(context):
            self._check_instance(header.instance)
            self.leases.touch(header.lease)
            args, kwargs = decode()
            with self._device_lock:
                lease = self.leases.touch(header.lease)
                if header.seq == lease.last_seq and lease.last_reply is not None:
                    return lease.last_reply
                if header.seq <= lease.last_seq:
                    raise MalformedMessage(
                        f"header.seq {header.seq} is not after the last call {lease.last_seq}"
                    )
                reply = self._run(method, args, kwargs)
                lease.last_seq, lease.last_reply = header.seq, reply
                lease.last_seen = time.monotonic()
                return reply
        raise AssertionError("unreachable")  # _guard aborted

    def _run(self, method: str, args: tuple, kwargs: dict[str, Any]) -> pb.Reply:
        try:
            if method == "stats":
                value = self.device.stats
            else:
                value = getattr(self.device, method)(*args, **kwargs)
            return codec.encode_result(method, value)
        except Exception as error:  # every device failure goes back to the caller
            return pb.Reply(failure=codec.encode_failure(error))

    # --- leases ---------------------------------------------------------------------------

    def Info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoReply:
        with self._guard(context):
            holder, since = self.leases.holder()
            return pb.InfoReply(
                chip_id=self.device.chip_id,
                n_neurons=self.device.n_neurons,
                instance=self.instance,
                started=self.started,
                device_type=type(self.device).__name__,
                holder=holder,
                since=since,
                heartbeat_timeout=self.leases.heartbeat_timeout,
                schema_version=SCHEMA_VERSION,
            )
        raise AssertionError("unreachable")

    def Acquire(self, request: pb.AcquireRequest, context: grpc.ServicerContext) -> pb.AcquireReply:
        with self._guard(context):
            holder = request.holder
            if not holder or len(holder) > MAX_HOLDER_LENGTH or not holder.isprintable():
                raise MalformedMessage(
                    f"holder must be 1..{MAX_HOLDER_LENGTH} printable characters"
                )
            if not math.isfinite(request.wait) or request.wait < 0:
                raise MalformedMessage(f"wait = {request.wait!r} s must be finite and >= 0")
            outcome = self.leases.acquire(holder, request.wait)
            if isinstance(outcome, tuple):
                return pb.AcquireReply(
                    busy=pb.Busy(chip_id=self.device.chip_id, holder=outcome[0], since=outcome[1])
                )
            return pb.AcquireReply(
                lease=pb.Lease(
                    lease=outcome.lease,
                    instance=self.instance,
                    chip_id=self.device.chip_id,
                    n_neurons=self.device.n_neurons,
                    heartbeat_timeout=self.leases.heartbeat_timeout,
                    device_type=type(self.device).__name__,
                )
            )
        raise AssertionError("unreachable")

    def Heartbeat(self, request: pb.LeaseRequest, context: grpc.ServicerContext) -> pb.LeaseReply:
        with self._guard(context):
            self._check_instance(request.instance)
            self.leases.touch(request.lease)
            return pb.LeaseReply()
        raise AssertionError("unreachable")

    def Release(self, request: pb.LeaseRequest, context: grpc.ServicerContext) -> pb.LeaseReply:
        with self._guard(context):
            if request.instance == self.instance:
                self.leases.release(request.lease)
            return pb.LeaseReply()
        raise AssertionError("unreachable")

    # --- the device protocol --------------------------------------------------------------

    def Stats(self, request: pb.StatsRequest, context: grpc.ServicerContext) -> pb.Reply:
        return self._call(request.header, "stats", lambda: ((), {}), context)

    def Write(self, request: pb.WriteRequest, context: grpc.ServicerContext) -> pb.Reply:
        return self._call(
            request.header,
            "write",
            lambda: ((codec.decode_settings(request.settings, "settings"),), {}),
            context,
        )

    def ReadSettings(
        self, request: pb.ReadSettingsRequest, context: grpc.ServicerContext
    ) -> pb.Reply:
        def decode() -> tuple[tuple, dict]:
            if request.all:
                return (None,), {}
            names = [codec.decode_scalar(name, "names") for name in request.names]
            if request.single:
                if len(names) != 1:
                    raise MalformedMessage("names: a single name needs exactly one item")
                return (names[0],), {}
            return (names,), {}

        return self._call(request.header, "read_settings", decode, context)

    def ReadCadc(self, request: pb.ReadCadcRequest, context: grpc.ServicerContext) -> pb.Reply:
        return self._call(
            request.header,
            "read_cadc",
            lambda: (
                (),
                {
                    "samples": codec.decode_scalar(request.samples, "samples"),
                    "stimulus": codec.decode_stimuli(request.stimulus, "stimulus"),
                    "read_time": codec.decode_scalar(request.read_time, "read_time"),
                },
            ),
            context,
        )

    def RecordMadc(self, request: pb.RecordMadcRequest, context: grpc.ServicerContext) -> pb.Reply:
        return self._call(
            request.header,
            "record_madc",
            lambda: (
                (
                    codec.decode_array(request.neurons, "neurons"),
                    codec.decode_scalar(request.duration, "duration"),
                    codec.decode_stimuli(request.stimulus, "stimulus"),
                ),
                {},
            ),
            context,
        )

    def CountSpikes(
        self, request: pb.CountSpikesRequest, context: grpc.ServicerContext
    ) -> pb.Reply:
        return self._call(
            request.header,
            "count_spikes",
            lambda: (
                (
                    codec.decode_scalar(request.duration, "duration"),
                    codec.decode_stimuli(request.stimulus, "stimulus"),
                ),
                {},
            ),
            context,
        )


def format_address(host: str, port: int) -> str:
    """host:port, IPv6 addresses in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class DeviceServer:
    """A running gRPC server holding `device`; stop it with `stop()` or use it as a context.

    `port` 0 picks a free port (see `.port` and `.address`). `token` is required for a
    non-loopback `host`.
    """

    def __init__(
        self,
        device: Device,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        token: str | None = None,
        heartbeat_timeout: float = DEFAULT_HEARTBEAT_TIMEOUT,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port = {port!r} is outside the allowed range 0..65535")
        if not (isinstance(heartbeat_timeout, int | float) and 0.05 <= heartbeat_timeout <= 3600):
            raise ValueError(
                f"heartbeat_timeout = {heartbeat_timeout!r} s is outside the allowed range "
                "0.05..3600 s"
            )
        for name, value in (
            ("max_request_bytes", max_request_bytes),
            ("max_reply_bytes", max_reply_bytes),
        ):
            if not isinstance(value, int) or not 1024 <= value <= 2**31 - 1:
                raise ValueError(f"{name} = {value!r} is outside the allowed range 1024..2**31-1")
        self.token = check_token(token, host)
        self.host = host
        self.instance = uuid.uuid4().hex
        self.servicer = DeviceServicer(device, self.token, float(heartbeat_timeout), self.instance)
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=WORKER_THREADS),
            maximum_concurrent_rpcs=MAX_CONCURRENT_RPCS,
            options=[
                ("grpc.max_receive_message_length", max_request_bytes),
                ("grpc.max_send_message_length", max_reply_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        pb_grpc.add_DeviceServiceServicer_to_server(self.servicer, self._server)
        try:
            self.port = self._server.add_insecure_port(format_address(host, port))
        except RuntimeError as error:
            raise OSError(f"cannot listen on {format_address(host, port)}: {error}") from error
        if self.port == 0:
            raise OSError(f"cannot listen on {format_address(host, port)}")
        self._server.start()

    @property
    def address(self) -> str:
        return format_address(self.host, self.port)

    @property
    def device(self) -> Device:
        return self.servicer.device

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or `timeout` passes); True when it stopped."""
        return self._server.wait_for_termination(timeout)

    def stop(self, grace: float | None = 1.0) -> None:
        self._server.stop(grace).wait()

    def __enter__(self) -> DeviceServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
