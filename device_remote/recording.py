"""Recorded device sessions: `RecordingDevice` writes every protocol call and its result to
zarr, `ReplayDevice` plays them back and fails loudly where the calls differ.

Layout of a session (zarr v3, no pickle):

    <path>/                 attrs: format, schema_version, chip_id, n_neurons, device_type,
                            created, segments, calls, complete
    <path>/segments/000000  attrs: calls (a list of JSON call entries); array `data`: the bytes
    <path>/segments/000001  of every array the entries refer to (dtype, shape, byte offset)
    ...

A call entry is {"method", "args" (every argument by name, defaults applied), "result"} or
{"method", "args", "error": {"kind", "type", "message"}}. Calls are buffered and written as a
segment every `flush_every` calls, when the buffer passes `flush_bytes`, and on `close()`; a
segment becomes part of the session only once it is complete (the root's `segments` count is
written last), so a recorder that dies keeps every earlier segment readable.
"""

from __future__ import annotations

import inspect
import math
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import fields, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import ArrayLike
from zarr.codecs import ZstdCodec

from device_model.protocol import (
    Device,
    DeviceError,
    DeviceStats,
    SpikeCounts,
    StimulusArg,
    Trace,
    TransientRunError,
)
from device_model.stimuli import CurrentStep, ResetRelease, SynapticEvents

FORMAT = "analog-calib device session"
SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = (1,)
METHODS = ("stats", "write", "read_settings", "read_cadc", "record_madc", "count_spikes")
DEFAULT_FLUSH_EVERY = 64
DEFAULT_FLUSH_BYTES = 16 * 2**20
SEGMENT_CHUNK_BYTES = 4 * 2**20
COMPRESSION_LEVEL = 1
"""zstd level of the segment data: MADC traces compress 3x at level 1, several times faster
than zarr's default level."""
_DATACLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (ResetRelease, CurrentStep, SynapticEvents, Trace, SpikeCounts, DeviceStats)
}
_ERRORS: dict[str, type[Exception]] = {
    "TransientRunError": TransientRunError,
    "DeviceError": DeviceError,
    "ValueError": ValueError,
    "TypeError": TypeError,
}
_SIGNATURES = {name: inspect.signature(getattr(Device, name)) for name in METHODS[1:]}


class ReplayMismatchError(RuntimeError):
    """A replayed session's calls differ from the recorded ones."""


class SessionFormatError(ValueError):
    """A path that holds no readable recorded session."""


def bind_arguments(method: str, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Every argument of a protocol call by name, defaults applied (TypeError as Python's)."""
    if method == "stats":
        return {}
    bound = _SIGNATURES[method].bind(None, *args, **kwargs)
    bound.apply_defaults()
    return {name: value for name, value in bound.arguments.items() if name != "self"}


# --- values <-> JSON and bytes ----------------------------------------------------------


class _Pool:
    """Bytes of the arrays of a segment; JSON refers to them by dtype, shape and offset."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def add(self, array: np.ndarray) -> list[Any]:
        data = np.asarray(array).tobytes(order="C")
        ref = [array.dtype.str, list(array.shape), self.size]
        self.chunks.append(data)
        self.size += len(data)
        return ref

    def blob(self) -> bytes:
        return b"".join(self.chunks)


def encode_value(value: Any, pool: _Pool) -> Any:
    """`value` as JSON, its arrays (copied now) in `pool`."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufU":
            return {"$repr": repr(value), "$type": "ndarray"}
        return {"$array": pool.add(value)}
    if isinstance(value, np.generic):
        if value.dtype.kind not in "biufU":
            return {"$repr": repr(value), "$type": type(value).__name__}
        return {"$scalar": pool.add(np.asarray(value))}
    if isinstance(value, list | tuple):
        key = "$list" if isinstance(value, list) else "$tuple"
        return {key: [encode_value(item, pool) for item in value]}
    if isinstance(value, Mapping):
        return {"$dict": [[encode_value(k, pool), encode_value(v, pool)] for k, v in value.items()]}
    if is_dataclass(value) and type(value).__name__ in _DATACLASSES:
        return {
            "$object": type(value).__name__,
            "fields": {f.name: encode_value(getattr(value, f.name), pool) for f in fields(value)},
        }
    return {"$repr": repr(value), "$type": type(value).__name__}


class _Opaque:
    """A recorded value that cannot be rebuilt (compared by type and repr only)."""

    def __init__(self, type_name: str, text: str) -> None:
        self.type_name, self.text = type_name, text

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Opaque)
            and other.type_name == self.type_name
            and other.text == self.text
        )

    def __hash__(self) -> int:
        return hash((self.type_name, self.text))

    def __repr__(self) -> str:
        return self.text


def decode_value(value: Any, blob: bytes | memoryview) -> Any:
    if not isinstance(value, dict):
        return value
    if "$float" in value:
        return float(value["$float"])
    if "$array" in value or "$scalar" in value:
        dtype, shape, offset = value.get("$array") or value["$scalar"]
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        array = np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape).copy()
        return array if "$array" in value else array[()]
    if "$list" in value:
        return [decode_value(item, blob) for item in value["$list"]]
    if "$tuple" in value:
        return tuple(decode_value(item, blob) for item in value["$tuple"])
    if "$dict" in value:
        return {decode_value(k, blob): decode_value(v, blob) for k, v in value["$dict"]}
    if "$object" in value:
        cls = _DATACLASSES[value["$object"]]
        return cls(**{name: decode_value(item, blob) for name, item in value["fields"].items()})
    if "$repr" in value:
        return _Opaque(value["$type"], value["$repr"])
    raise SessionFormatError(f"unknown value encoding {sorted(value)}")


def canonical(value: Any) -> Any:
    """`value` as a replay would see it (mappings as dicts, arrays copied)."""
    pool = _Pool()
    encoded = encode_value(value, pool)
    return decode_value(encoded, pool.blob())


def same(a: Any, b: Any) -> bool:
    """Exact equality: same dtypes, shapes and bytes, floats bit for bit. A value that is an
    array on one side is compared as an array (np.asarray) with the other: a code sent as the
    int 70 and received as a 0-d int64 array is the same code; 70.0 is not."""
    if isinstance(a, np.ndarray | np.generic) or isinstance(b, np.ndarray | np.generic):
        try:
            a, b = np.asarray(a), np.asarray(b)
        except (ValueError, TypeError):
            return False
        return (
            a.dtype == b.dtype
            and a.dtype.kind != "O"
            and a.shape == b.shape
            and a.tobytes() == b.tobytes()
        )
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if is_dataclass(a):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    return bool(a == b)


def describe(value: Any) -> str:
    """A short readable form of an argument for error messages."""
    if isinstance(value, np.ndarray):
        text = np.array2string(value.ravel(), threshold=6, edgeitems=3)
        return f"{value.dtype}{list(value.shape)} {text}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        inner = ", ".join(describe(item) for item in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    return repr(value)


def describe_call(method: str, arguments: Mapping[str, Any]) -> str:
    return f"{method}(" + ", ".join(f"{k}={describe(v)}" for k, v in arguments.items()) + ")"


def error_entry(error: BaseException) -> dict[str, str]:
    kind = next((name for name, cls in _ERRORS.items() if isinstance(error, cls)), "other")
    return {"kind": kind, "type": type(error).__name__, "message": str(error)}


def error_from_entry(entry: Mapping[str, str]) -> Exception:
    cls = _ERRORS.get(entry["kind"])
    if cls is None:
        return DeviceError(f"device raised {entry['type']}: {entry['message']}")
    return cls(entry["message"])


# --- recording --------------------------------------------------------------------------


class _SessionWriter:
    """Buffers call entries and writes them as complete segments."""

    def __init__(
        self, path: str | os.PathLike[str], device: Device, flush_every: int, flush_bytes: int
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"recording path {str(self.path)!r} already exists")
        self.root = zarr.open_group(str(self.path), mode="w-")
        self.root.attrs.update(
            {
                "format": FORMAT,
                "schema_version": SCHEMA_VERSION,
                "chip_id": device.chip_id,
                "n_neurons": int(device.n_neurons),
                "device_type": type(device).__name__,
                "created": datetime.now(UTC).isoformat(),
                "segments": 0,
                "calls": 0,
                "complete": False,
            }
        )
        self.flush_every, self.flush_bytes = flush_every, flush_bytes
        self.entries: list[dict[str, Any]] = []
        self.pool = _Pool()
        self.segments = 0
        self.calls = 0
        self.closed = False

    def add(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        self.calls += 1
        if len(self.entries) >= self.flush_every or self.pool.size >= self.flush_bytes:
            self.flush()

    def flush(self) -> None:
        if not self.entries:
            return
        blob = np.frombuffer(self.pool.blob(), dtype=np.uint8)
        # A segment left over by a failed flush was never counted in the root: replace it.
        group = self.root.create_group(f"segments/{self.segments:06d}", overwrite=True)
        data = group.create_array(
            "data",
            shape=blob.shape,
            dtype=np.uint8,
            chunks=(max(min(blob.size, SEGMENT_CHUNK_BYTES), 1),),
            compressors=ZstdCodec(level=COMPRESSION_LEVEL),
        )
        if blob.size:
            data[:] = blob
        group.attrs["calls"] = self.entries
        self.segments += 1
        self.root.attrs.update({"segments": self.segments, "calls": self.calls})
        self.entries, self.pool = [], _Pool()

    def close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.root.attrs["complete"] = True
        self.closed = True


class RecordingDevice:
    """`device`, with every protocol call and its result (or error) recorded at `path`.

    Use it as a context manager or call `close()`: calls are written in segments of
    `flush_every`, and the session is marked complete on close.
    """

    def __init__(
        self,
        device: Device,
        path: str | os.PathLike[str],
        *,
        flush_every: int = DEFAULT_FLUSH_EVERY,
        flush_bytes: int = DEFAULT_FLUSH_BYTES,
    ) -> None:
        if (
            isinstance(flush_every, bool)
            or not isinstance(flush_every, int)
            or not (1 <= flush_every <= 100_000)
        ):
            raise ValueError(
                f"flush_every = {flush_every!r} is outside the allowed range 1..100000"
            )
        self.device = device
        self.chip_id: str = device.chip_id
        self.n_neurons: int = device.n_neurons
        self._writer = _SessionWriter(path, device, flush_every, flush_bytes)
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, self._writer.close)

    @property
    def path(self) -> Path:
        return self._writer.path

    @property
    def calls(self) -> int:
        return self._writer.calls

    def _record(self, method: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:  # calls and their entries in one order, whichever thread calls
            return self._record_locked(method, *args, **kwargs)

    def _record_locked(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._writer.closed:
            raise DeviceError(f"recording at {str(self.path)!r} is closed")
        arguments = bind_arguments(method, args, kwargs)
        pool = self._writer.pool
        entry: dict[str, Any] = {
            "method": method,
            "args": {k: encode_value(v, pool) for k, v in arguments.items()},
        }
        try:
            if method == "stats":
                result = self.device.stats
            else:
                result = getattr(self.device, method)(*args, **kwargs)
        except Exception as error:
            entry["error"] = error_entry(error)
            self._writer.add(entry)
            raise
        entry["result"] = encode_value(result, self._writer.pool)
        self._writer.add(entry)
        return result

    @property
    def stats(self) -> DeviceStats:
        return self._record("stats")

    def write(self, settings: Mapping[str, ArrayLike]) -> None:
        return self._record("write", settings)

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return self._record("read_settings", names)

    def read_cadc(
        self, samples: int = 1, stimulus: StimulusArg = None, read_time: float | None = None
    ) -> np.ndarray:
        return self._record("read_cadc", samples, stimulus, read_time)

    def record_madc(
        self, neurons: Sequence[int], duration: float, stimulus: StimulusArg = None
    ) -> Trace:
        return self._record("record_madc", neurons, duration, stimulus)

    def count_spikes(self, duration: float, stimulus: StimulusArg = None) -> SpikeCounts:
        return self._record("count_spikes", duration, stimulus)

    def flush(self) -> None:
        """Write the buffered calls now."""
        self._writer.flush()

    def close(self) -> None:
        """Write the remaining calls and mark the session complete."""
        self._finalizer()

    def __enter__(self) -> RecordingDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- replay -----------------------------------------------------------------------------


def read_session(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict], list[bytes]]:
    """(root attrs, call entries with their segment index, segment blobs) of a session."""
    try:
        root = zarr.open_group(str(path), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as error:
        raise SessionFormatError(f"no recorded session at {str(path)!r}") from error
    attrs = dict(root.attrs)
    if attrs.get("format") != FORMAT:
        raise SessionFormatError(f"{str(path)!r} is not a recorded device session")
    version = attrs.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise SessionFormatError(
            f"recorded session {str(path)!r} has schema_version {version!r}; this version "
            f"reads {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
        )
    entries: list[dict] = []
    blobs: list[bytes] = []
    for index in range(int(attrs["segments"])):
        group = root[f"segments/{index:06d}"]
        blobs.append(np.asarray(group["data"][:], dtype=np.uint8).tobytes())
        for entry in group.attrs["calls"]:
            entries.append({**entry, "segment": index})
    return attrs, entries, blobs


class ReplayDevice:
    """The device protocol played back from a session recorded at `path`.

    Each call must match the next recorded one exactly (method and every argument); it then
    returns the recorded result or raises the recorded error. A differing call, a call past
    the end, and (with `assert_finished()` or on leaving a `with` block) calls left over
    raise ReplayMismatchError naming the call index, the expected and the actual call.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        attrs, self._entries, self._blobs = read_session(path)
        self.chip_id: str = attrs["chip_id"]
        self.n_neurons: int = int(attrs["n_neurons"])
        self.device_type: str = attrs.get("device_type", "")
        self.complete: bool = bool(attrs.get("complete"))
        self._next = 0
        self._failed: ReplayMismatchError | None = None

    @property
    def remaining(self) -> int:
        """Recorded calls not yet replayed."""
        return len(self._entries) - self._next

    def _expected(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        blob = self._blobs[entry["segment"]]
        return {k: decode_value(v, blob) for k, v in entry["args"].items()}

    def _fail(self, message: str) -> ReplayMismatchError:
        self._failed = ReplayMismatchError(f"replay of {str(self.path)!r}: {message}")
        return self._failed

    def _replay(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self._failed is not None:
            raise ReplayMismatchError(str(self._failed))
        actual = {k: canonical(v) for k, v in bind_arguments(method, args, kwargs).items()}
        index = self._next
        if index >= len(self._entries):
            state = "complete" if self.complete else "incomplete"
            raise self._fail(
                f"call {index} is {describe_call(method, actual)}, but the "
                f"({state}) recording ends after {len(self._entries)} calls"
            )
        entry = self._entries[index]
        expected = self._expected(entry)
        if (
            entry["method"] != method
            or list(expected) != list(actual)
            or not all(same(expected[key], actual[key]) for key in expected)
        ):
            differing = [
                key for key in expected if key in actual and not same(expected[key], actual[key])
            ]
            detail = (
                f" (argument {', '.join(map(repr, differing))} differs)"
                if entry["method"] == method and differing
                else ""
            )
            raise self._fail(
                f"call {index} differs{detail}: expected "
                f"{describe_call(entry['method'], expected)}, got "
                f"{describe_call(method, actual)}"
            )
        self._next += 1
        if "error" in entry:
            raise error_from_entry(entry["error"])
        return decode_value(entry["result"], self._blobs[entry["segment"]])

    def assert_finished(self) -> None:
        """Raise ReplayMismatchError when recorded calls were not made."""
        if self._failed is None and self.remaining:
            entry = self._entries[self._next]
            raise self._fail(
                f"{self.remaining} of {len(self._entries)} recorded calls were not made; "
                f"call {self._next} expected: "
                f"{describe_call(entry['method'], self._expected(entry))}"
            )

    @property
    def stats(self) -> DeviceStats:
        return self._replay("stats")

    def write(self, settings: Mapping[str, ArrayLike]) -> None:
        return self._replay("write", settings)

    def read_settings(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        return self._replay("read_settings", names)

    def read_cadc(
        self, samples: int = 1, stimulus: StimulusArg = None, read_time: float | None = None
    ) -> np.ndarray:
        return self._replay("read_cadc", samples, stimulus, read_time)

    def record_madc(
        self, neurons: Sequence[int], duration: float, stimulus: StimulusArg = None
    ) -> Trace:
        return self._replay("record_madc", neurons, duration, stimulus)

    def count_spikes(self, duration: float, stimulus: StimulusArg = None) -> SpikeCounts:
        return self._replay("count_spikes", duration, stimulus)

    def __enter__(self) -> ReplayDevice:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            self.assert_finished()

    def __repr__(self) -> str:
        return (
            f"ReplayDevice({str(self.path)!r}, chip_id={self.chip_id!r}, "
            f"calls={len(self._entries)})"
        )
