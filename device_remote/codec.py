"""Conversion between device protocol values and the messages of the wire schema.

Arrays travel as dtype + shape + raw bytes; scalars, stimuli and failures as typed messages.
Nothing is pickled. Decoding checks every field: a malformed message is a `MalformedMessage`
(a ValueError) naming the field and what it must be.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from device_model.protocol import DeviceError, DeviceStats, SpikeCounts, Trace, TransientRunError
from device_model.stimuli import (
    CompartmentConnect,
    CurrentStep,
    MacActivations,
    ResetRelease,
    RowEvents,
    Stimulus,
    SynapticEvents,
)
from device_remote.schema import device_service_pb2 as pb

ALLOWED_KINDS = "biufU"
"""numpy dtype kinds that may travel: bool, signed, unsigned, float, fixed-width unicode."""
MAX_NDIM = 8
MAX_STIMULI = 64
"""Most stimuli in one argument; more is a malformed request."""


class MalformedMessage(ValueError):
    """A message whose fields do not describe a valid value."""


# --- arrays and scalars -----------------------------------------------------------------


def encode_array(value: ArrayLike, field: str) -> pb.NDArray:
    """`value` as an NDArray message; object arrays cannot travel (ValueError naming `field`)."""
    array = np.asarray(value)
    if array.dtype.kind not in ALLOWED_KINDS or array.dtype.fields is not None:
        raise ValueError(
            f"{field}: values of dtype {array.dtype} cannot be sent to a remote device "
            "(numbers, booleans or strings only)"
        )
    container = "list" if isinstance(value, list) else "tuple" if isinstance(value, tuple) else ""
    return pb.NDArray(
        dtype=array.dtype.str,
        shape=array.shape,
        data=array.tobytes(order="C"),
        container=container,
    )


def decode_array(message: pb.NDArray, field: str) -> Any:
    """A writable numpy array from an NDArray message, every field checked (a list or a tuple
    when the caller passed one)."""
    try:
        dtype = np.dtype(message.dtype)
    except TypeError as error:
        raise MalformedMessage(f"{field}: unknown dtype {message.dtype!r}") from error
    if dtype.kind not in ALLOWED_KINDS or dtype.fields is not None:
        raise MalformedMessage(
            f"{field}: dtype {message.dtype!r} is not allowed (kinds {ALLOWED_KINDS!r} only)"
        )
    shape = tuple(message.shape)
    if len(shape) > MAX_NDIM or any(size < 0 for size in shape):
        raise MalformedMessage(
            f"{field}: shape {shape} must have 0..{MAX_NDIM} non-negative dimensions"
        )
    expected = math.prod(shape) * dtype.itemsize
    if len(message.data) != expected:
        raise MalformedMessage(
            f"{field}: {len(message.data)} bytes of data, shape {shape} of {dtype} needs {expected}"
        )
    array = np.frombuffer(message.data, dtype=dtype).reshape(shape).copy()
    if message.container == "list":
        return array.tolist()
    if message.container == "tuple":
        return tuple(array.tolist())
    if message.container:
        raise MalformedMessage(
            f"{field}: container {message.container!r} is not '', 'list' or 'tuple'"
        )
    return array


def encode_scalar(value: Any, field: str) -> pb.Scalar:
    """A scalar argument exactly as given: None, bool, int, float, str or a numpy scalar."""
    if value is None:
        return pb.Scalar(none=True)
    if isinstance(value, bool):
        return pb.Scalar(boolean=value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return pb.Scalar(integer=value)
        return pb.Scalar(big_integer=str(value))
    if isinstance(value, float):
        return pb.Scalar(real=value)
    if isinstance(value, str):
        return pb.Scalar(text=value)
    if isinstance(value, np.generic):
        return pb.Scalar(numpy=encode_array(value, field))
    raise ValueError(
        f"{field}: a value of type {type(value).__name__} cannot be sent to a remote device "
        "(a number, a boolean, a string or None)"
    )


def decode_scalar(message: pb.Scalar, field: str) -> Any:
    kind = message.WhichOneof("value")
    if kind is None:
        raise MalformedMessage(f"{field}: missing scalar value")
    if kind == "none":
        return None
    if kind == "numpy":
        array = decode_array(message.numpy, field)
        if array.ndim != 0:
            raise MalformedMessage(f"{field}: a numpy scalar must have shape (), got {array.shape}")
        return array[()]
    if kind == "big_integer":
        try:
            return int(message.big_integer)
        except ValueError as error:
            raise MalformedMessage(f"{field}: {message.big_integer!r} is not an integer") from error
    return getattr(message, kind)


# --- stimuli ----------------------------------------------------------------------------


def encode_stimulus(item: Stimulus) -> pb.Stimulus:
    if isinstance(item, ResetRelease):
        return pb.Stimulus(reset_release=pb.ResetRelease(release_time=item.release_time))
    if isinstance(item, CurrentStep):
        return pb.Stimulus(
            current_step=pb.CurrentStep(
                amplitude=item.amplitude, off_time=item.off_time, on_time=item.on_time
            )
        )
    if isinstance(item, SynapticEvents):
        return pb.Stimulus(
            synaptic_events=pb.SynapticEvents(
                times=item.times, weight=item.weight, inhibitory=item.inhibitory
            )
        )
    if isinstance(item, MacActivations):
        return pb.Stimulus(
            mac_activations=pb.MacActivations(
                activations=encode_array(item.activations, "stimulus.activations"), sends=item.sends
            )
        )
    if isinstance(item, RowEvents):
        return pb.Stimulus(
            row_events=pb.RowEvents(
                times=encode_array(item.times, "stimulus.times"),
                rows=encode_array(item.rows, "stimulus.rows"),
                addresses=encode_array(item.addresses, "stimulus.addresses"),
            )
        )
    if isinstance(item, CompartmentConnect):
        return pb.Stimulus(compartment_connect=pb.CompartmentConnect(time=item.time))
    raise ValueError(
        "stimulus must be ResetRelease, CurrentStep, SynapticEvents, MacActivations, "
        f"RowEvents or CompartmentConnect, got {type(item).__name__}"
    )


def encode_stimuli(stimulus: Stimulus | Sequence[Stimulus] | None) -> pb.Stimuli:
    """A stimulus argument (None, one stimulus or a sequence), its form kept."""
    if stimulus is None:
        return pb.Stimuli(given=False)
    if isinstance(stimulus, list | tuple):
        return pb.Stimuli(given=True, items=[encode_stimulus(item) for item in stimulus])
    return pb.Stimuli(given=True, single=True, items=[encode_stimulus(stimulus)])


def decode_stimulus(message: pb.Stimulus, field: str) -> Stimulus:
    kind = message.WhichOneof("kind")
    try:
        if kind == "reset_release":
            return ResetRelease(message.reset_release.release_time)
        if kind == "current_step":
            step = message.current_step
            return CurrentStep(step.amplitude, step.off_time, step.on_time)
        if kind == "synaptic_events":
            events = message.synaptic_events
            return SynapticEvents(tuple(events.times), int(events.weight), events.inhibitory)
        if kind == "mac_activations":
            mac = message.mac_activations
            return MacActivations(
                decode_array(mac.activations, f"{field}.activations"), int(mac.sends)
            )
        if kind == "row_events":
            rows = message.row_events
            return RowEvents(
                decode_array(rows.times, f"{field}.times"),
                decode_array(rows.rows, f"{field}.rows"),
                decode_array(rows.addresses, f"{field}.addresses"),
            )
        if kind == "compartment_connect":
            return CompartmentConnect(message.compartment_connect.time)
    except ValueError as error:
        raise MalformedMessage(f"{field}: {error}") from error
    raise MalformedMessage(f"{field}: missing stimulus kind")


def decode_stimuli(message: pb.Stimuli, field: str) -> Stimulus | tuple[Stimulus, ...] | None:
    if not message.given:
        if message.items:
            raise MalformedMessage(f"{field}: stimuli given although 'given' is false")
        return None
    if len(message.items) > MAX_STIMULI:
        raise MalformedMessage(f"{field}: {len(message.items)} stimuli, at most {MAX_STIMULI}")
    items = tuple(
        decode_stimulus(item, f"{field}[{index}]") for index, item in enumerate(message.items)
    )
    if message.single:
        if len(items) != 1:
            raise MalformedMessage(f"{field}: a single stimulus needs exactly one item")
        return items[0]
    return items


# --- settings ---------------------------------------------------------------------------


def encode_settings(settings: Mapping[str, ArrayLike]) -> list[pb.Setting]:
    encoded = []
    for name, value in settings.items():
        if not isinstance(name, str):
            raise ValueError(f"cell names must be strings, got {name!r}")
        encoded.append(pb.Setting(name=name, value=encode_array(value, f"cell {name!r}")))
    return encoded


def decode_settings(messages: Sequence[pb.Setting], field: str) -> dict[str, np.ndarray]:
    settings: dict[str, np.ndarray] = {}
    for message in messages:
        if message.name in settings:
            raise MalformedMessage(f"{field}: cell {message.name!r} given twice")
        settings[message.name] = decode_array(message.value, f"{field} {message.name!r}")
    return settings


# --- results ----------------------------------------------------------------------------


def encode_result(method: str, value: Any) -> pb.Reply:
    """The reply carrying what `method` returned."""
    if method == "write":
        return pb.Reply(none=pb.Empty())
    if method == "stats":
        return pb.Reply(
            stats=pb.StatsResult(
                runs=int(value.runs),
                writes=int(value.writes),
                hardware_time=float(value.hardware_time),
            )
        )
    if method == "read_settings":
        return pb.Reply(settings=pb.Settings(settings=encode_settings(value)))
    if method == "read_cadc":
        return pb.Reply(array=encode_array(value, "read_cadc result"))
    if method == "record_madc":
        return pb.Reply(
            trace=pb.TraceResult(
                neurons=encode_array(value.neurons, "trace neurons"),
                times=encode_array(value.times, "trace times"),
                codes=encode_array(value.codes, "trace codes"),
                valid=encode_array(value.valid, "trace valid"),
            )
        )
    if method == "count_spikes":
        return pb.Reply(
            spike_counts=pb.SpikeCountsResult(
                counts=encode_array(value.counts, "spike counts"),
                overflow=encode_array(value.overflow, "spike overflow"),
            )
        )
    raise ValueError(f"unknown device method {method!r}")


RESULT_KINDS = {
    "write": "none",
    "stats": "stats",
    "read_settings": "settings",
    "read_cadc": "array",
    "record_madc": "trace",
    "count_spikes": "spike_counts",
}


def decode_result(method: str, reply: pb.Reply) -> Any:
    """What `method` returned, from its reply (a failure in the reply is not looked at)."""
    kind = reply.WhichOneof("result")
    if kind != RESULT_KINDS[method]:
        raise MalformedMessage(f"reply to {method}: expected a {RESULT_KINDS[method]}, got {kind}")
    if kind == "none":
        return None
    if kind == "stats":
        return DeviceStats(reply.stats.runs, reply.stats.writes, reply.stats.hardware_time)
    if kind == "settings":
        return decode_settings(reply.settings.settings, "settings")
    if kind == "array":
        return decode_array(reply.array, "read_cadc result")
    if kind == "trace":
        trace = reply.trace
        return Trace(
            neurons=decode_array(trace.neurons, "trace neurons"),
            times=decode_array(trace.times, "trace times"),
            codes=decode_array(trace.codes, "trace codes"),
            valid=decode_array(trace.valid, "trace valid"),
        )
    counts = reply.spike_counts
    return SpikeCounts(
        counts=decode_array(counts.counts, "spike counts"),
        overflow=decode_array(counts.overflow, "spike overflow"),
    )


# --- failures ---------------------------------------------------------------------------

Kind = pb.Failure.Kind


def encode_failure(error: BaseException) -> pb.Failure:
    """The failure a device call raised; its type is kept for the protocol's exceptions."""
    if isinstance(error, TransientRunError):
        kind = Kind.TRANSIENT_RUN_ERROR
    elif isinstance(error, DeviceError):
        kind = Kind.DEVICE_ERROR
    elif isinstance(error, ValueError):
        kind = Kind.VALUE_ERROR
    elif isinstance(error, TypeError):
        kind = Kind.TYPE_ERROR
    else:
        kind = Kind.OTHER
    return pb.Failure(kind=kind, message=str(error), type_name=type(error).__name__)


def failure_exception(failure: pb.Failure) -> Exception:
    """The exception to raise on the client for a failure reply."""
    kinds: dict[int, type[Exception]] = {
        Kind.TRANSIENT_RUN_ERROR: TransientRunError,
        Kind.DEVICE_ERROR: DeviceError,
        Kind.VALUE_ERROR: ValueError,
        Kind.TYPE_ERROR: TypeError,
    }
    if failure.kind in kinds:
        return kinds[failure.kind](failure.message)
    return DeviceError(f"device raised {failure.type_name}: {failure.message}")
