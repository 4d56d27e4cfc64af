from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NDArray(_message.Message):
    __slots__ = ("dtype", "shape", "data", "container")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    container: str
    def __init__(self, dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., container: _Optional[str] = ...) -> None: ...

class Scalar(_message.Message):
    __slots__ = ("none", "boolean", "integer", "real", "text", "numpy", "big_integer")
    NONE_FIELD_NUMBER: _ClassVar[int]
    BOOLEAN_FIELD_NUMBER: _ClassVar[int]
    INTEGER_FIELD_NUMBER: _ClassVar[int]
    REAL_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    NUMPY_FIELD_NUMBER: _ClassVar[int]
    BIG_INTEGER_FIELD_NUMBER: _ClassVar[int]
    none: bool
    boolean: bool
    integer: int
    real: float
    text: str
    numpy: NDArray
    big_integer: str
    def __init__(self, none: _Optional[bool] = ..., boolean: _Optional[bool] = ..., integer: _Optional[int] = ..., real: _Optional[float] = ..., text: _Optional[str] = ..., numpy: _Optional[_Union[NDArray, _Mapping]] = ..., big_integer: _Optional[str] = ...) -> None: ...

class ResetRelease(_message.Message):
    __slots__ = ("release_time",)
    RELEASE_TIME_FIELD_NUMBER: _ClassVar[int]
    release_time: float
    def __init__(self, release_time: _Optional[float] = ...) -> None: ...

class CurrentStep(_message.Message):
    __slots__ = ("amplitude", "off_time", "on_time")
    AMPLITUDE_FIELD_NUMBER: _ClassVar[int]
    OFF_TIME_FIELD_NUMBER: _ClassVar[int]
    ON_TIME_FIELD_NUMBER: _ClassVar[int]
    amplitude: float
    off_time: float
    on_time: float
    def __init__(self, amplitude: _Optional[float] = ..., off_time: _Optional[float] = ..., on_time: _Optional[float] = ...) -> None: ...

class SynapticEvents(_message.Message):
    __slots__ = ("times", "weight", "inhibitory")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    INHIBITORY_FIELD_NUMBER: _ClassVar[int]
    times: _containers.RepeatedScalarFieldContainer[float]
    weight: int
    inhibitory: bool
    def __init__(self, times: _Optional[_Iterable[float]] = ..., weight: _Optional[int] = ..., inhibitory: _Optional[bool] = ...) -> None: ...

class MacActivations(_message.Message):
    __slots__ = ("activations", "sends")
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    SENDS_FIELD_NUMBER: _ClassVar[int]
    activations: NDArray
    sends: int
    def __init__(self, activations: _Optional[_Union[NDArray, _Mapping]] = ..., sends: _Optional[int] = ...) -> None: ...

class RowEvents(_message.Message):
    __slots__ = ("times", "rows", "addresses")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    times: NDArray
    rows: NDArray
    addresses: NDArray
    def __init__(self, times: _Optional[_Union[NDArray, _Mapping]] = ..., rows: _Optional[_Union[NDArray, _Mapping]] = ..., addresses: _Optional[_Union[NDArray, _Mapping]] = ...) -> None: ...

class CompartmentConnect(_message.Message):
    __slots__ = ("time",)
    TIME_FIELD_NUMBER: _ClassVar[int]
    time: float
    def __init__(self, time: _Optional[float] = ...) -> None: ...

class Stimulus(_message.Message):
    __slots__ = ("reset_release", "current_step", "synaptic_events", "mac_activations", "row_events", "compartment_connect")
    RESET_RELEASE_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    SYNAPTIC_EVENTS_FIELD_NUMBER: _ClassVar[int]
    MAC_ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    ROW_EVENTS_FIELD_NUMBER: _ClassVar[int]
    COMPARTMENT_CONNECT_FIELD_NUMBER: _ClassVar[int]
    reset_release: ResetRelease
    current_step: CurrentStep
    synaptic_events: SynapticEvents
    mac_activations: MacActivations
    row_events: RowEvents
    compartment_connect: CompartmentConnect
    def __init__(self, reset_release: _Optional[_Union[ResetRelease, _Mapping]] = ..., current_step: _Optional[_Union[CurrentStep, _Mapping]] = ..., synaptic_events: _Optional[_Union[SynapticEvents, _Mapping]] = ..., mac_activations: _Optional[_Union[MacActivations, _Mapping]] = ..., row_events: _Optional[_Union[RowEvents, _Mapping]] = ..., compartment_connect: _Optional[_Union[CompartmentConnect, _Mapping]] = ...) -> None: ...

class Stimuli(_message.Message):
    __slots__ = ("given", "single", "items")
    GIVEN_FIELD_NUMBER: _ClassVar[int]
    SINGLE_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    given: bool
    single: bool
    items: _containers.RepeatedCompositeFieldContainer[Stimulus]
    def __init__(self, given: _Optional[bool] = ..., single: _Optional[bool] = ..., items: _Optional[_Iterable[_Union[Stimulus, _Mapping]]] = ...) -> None: ...

class Header(_message.Message):
    __slots__ = ("lease", "instance", "seq")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    lease: str
    instance: str
    seq: int
    def __init__(self, lease: _Optional[str] = ..., instance: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class Setting(_message.Message):
    __slots__ = ("name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: NDArray
    def __init__(self, name: _Optional[str] = ..., value: _Optional[_Union[NDArray, _Mapping]] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ("header",)
    HEADER_FIELD_NUMBER: _ClassVar[int]
    header: Header
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ...) -> None: ...

class WriteRequest(_message.Message):
    __slots__ = ("header", "settings")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ...) -> None: ...

class ReadSettingsRequest(_message.Message):
    __slots__ = ("header", "all", "single", "names")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    SINGLE_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    header: Header
    all: bool
    single: bool
    names: _containers.RepeatedCompositeFieldContainer[Scalar]
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., all: _Optional[bool] = ..., single: _Optional[bool] = ..., names: _Optional[_Iterable[_Union[Scalar, _Mapping]]] = ...) -> None: ...

class ReadCadcRequest(_message.Message):
    __slots__ = ("header", "samples", "stimulus", "read_time")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    STIMULUS_FIELD_NUMBER: _ClassVar[int]
    READ_TIME_FIELD_NUMBER: _ClassVar[int]
    header: Header
    samples: Scalar
    stimulus: Stimuli
    read_time: Scalar
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., samples: _Optional[_Union[Scalar, _Mapping]] = ..., stimulus: _Optional[_Union[Stimuli, _Mapping]] = ..., read_time: _Optional[_Union[Scalar, _Mapping]] = ...) -> None: ...

class RecordMadcRequest(_message.Message):
    __slots__ = ("header", "neurons", "duration", "stimulus")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    NEURONS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STIMULUS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    neurons: NDArray
    duration: Scalar
    stimulus: Stimuli
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., neurons: _Optional[_Union[NDArray, _Mapping]] = ..., duration: _Optional[_Union[Scalar, _Mapping]] = ..., stimulus: _Optional[_Union[Stimuli, _Mapping]] = ...) -> None: ...

class CountSpikesRequest(_message.Message):
    __slots__ = ("header", "duration", "stimulus")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STIMULUS_FIELD_NUMBER: _ClassVar[int]
    header: Header
    duration: Scalar
    stimulus: Stimuli
    def __init__(self, header: _Optional[_Union[Header, _Mapping]] = ..., duration: _Optional[_Union[Scalar, _Mapping]] = ..., stimulus: _Optional[_Union[Stimuli, _Mapping]] = ...) -> None: ...

class Failure(_message.Message):
    __slots__ = ("kind", "message", "type_name")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NONE: _ClassVar[Failure.Kind]
        VALUE_ERROR: _ClassVar[Failure.Kind]
        TYPE_ERROR: _ClassVar[Failure.Kind]
        DEVICE_ERROR: _ClassVar[Failure.Kind]
        TRANSIENT_RUN_ERROR: _ClassVar[Failure.Kind]
        OTHER: _ClassVar[Failure.Kind]
    NONE: Failure.Kind
    VALUE_ERROR: Failure.Kind
    TYPE_ERROR: Failure.Kind
    DEVICE_ERROR: Failure.Kind
    TRANSIENT_RUN_ERROR: Failure.Kind
    OTHER: Failure.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    kind: Failure.Kind
    message: str
    type_name: str
    def __init__(self, kind: _Optional[_Union[Failure.Kind, str]] = ..., message: _Optional[str] = ..., type_name: _Optional[str] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Settings(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: _containers.RepeatedCompositeFieldContainer[Setting]
    def __init__(self, settings: _Optional[_Iterable[_Union[Setting, _Mapping]]] = ...) -> None: ...

class TraceResult(_message.Message):
    __slots__ = ("neurons", "times", "codes", "valid")
    NEURONS_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    CODES_FIELD_NUMBER: _ClassVar[int]
    VALID_FIELD_NUMBER: _ClassVar[int]
    neurons: NDArray
    times: NDArray
    codes: NDArray
    valid: NDArray
    def __init__(self, neurons: _Optional[_Union[NDArray, _Mapping]] = ..., times: _Optional[_Union[NDArray, _Mapping]] = ..., codes: _Optional[_Union[NDArray, _Mapping]] = ..., valid: _Optional[_Union[NDArray, _Mapping]] = ...) -> None: ...

class SpikeCountsResult(_message.Message):
    __slots__ = ("counts", "overflow")
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    OVERFLOW_FIELD_NUMBER: _ClassVar[int]
    counts: NDArray
    overflow: NDArray
    def __init__(self, counts: _Optional[_Union[NDArray, _Mapping]] = ..., overflow: _Optional[_Union[NDArray, _Mapping]] = ...) -> None: ...

class StatsResult(_message.Message):
    __slots__ = ("runs", "writes", "hardware_time")
    RUNS_FIELD_NUMBER: _ClassVar[int]
    WRITES_FIELD_NUMBER: _ClassVar[int]
    HARDWARE_TIME_FIELD_NUMBER: _ClassVar[int]
    runs: int
    writes: int
    hardware_time: float
    def __init__(self, runs: _Optional[int] = ..., writes: _Optional[int] = ..., hardware_time: _Optional[float] = ...) -> None: ...

class Reply(_message.Message):
    __slots__ = ("failure", "none", "array", "settings", "trace", "spike_counts", "stats")
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    NONE_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    SPIKE_COUNTS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    failure: Failure
    none: Empty
    array: NDArray
    settings: Settings
    trace: TraceResult
    spike_counts: SpikeCountsResult
    stats: StatsResult
    def __init__(self, failure: _Optional[_Union[Failure, _Mapping]] = ..., none: _Optional[_Union[Empty, _Mapping]] = ..., array: _Optional[_Union[NDArray, _Mapping]] = ..., settings: _Optional[_Union[Settings, _Mapping]] = ..., trace: _Optional[_Union[TraceResult, _Mapping]] = ..., spike_counts: _Optional[_Union[SpikeCountsResult, _Mapping]] = ..., stats: _Optional[_Union[StatsResult, _Mapping]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InfoReply(_message.Message):
    __slots__ = ("chip_id", "n_neurons", "instance", "started", "device_type", "holder", "since", "heartbeat_timeout", "schema_version")
    CHIP_ID_FIELD_NUMBER: _ClassVar[int]
    N_NEURONS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    chip_id: str
    n_neurons: int
    instance: str
    started: str
    device_type: str
    holder: str
    since: str
    heartbeat_timeout: float
    schema_version: int
    def __init__(self, chip_id: _Optional[str] = ..., n_neurons: _Optional[int] = ..., instance: _Optional[str] = ..., started: _Optional[str] = ..., device_type: _Optional[str] = ..., holder: _Optional[str] = ..., since: _Optional[str] = ..., heartbeat_timeout: _Optional[float] = ..., schema_version: _Optional[int] = ...) -> None: ...

class AcquireRequest(_message.Message):
    __slots__ = ("holder", "wait")
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    WAIT_FIELD_NUMBER: _ClassVar[int]
    holder: str
    wait: float
    def __init__(self, holder: _Optional[str] = ..., wait: _Optional[float] = ...) -> None: ...

class Lease(_message.Message):
    __slots__ = ("lease", "instance", "chip_id", "n_neurons", "heartbeat_timeout", "device_type")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    CHIP_ID_FIELD_NUMBER: _ClassVar[int]
    N_NEURONS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    DEVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    lease: str
    instance: str
    chip_id: str
    n_neurons: int
    heartbeat_timeout: float
    device_type: str
    def __init__(self, lease: _Optional[str] = ..., instance: _Optional[str] = ..., chip_id: _Optional[str] = ..., n_neurons: _Optional[int] = ..., heartbeat_timeout: _Optional[float] = ..., device_type: _Optional[str] = ...) -> None: ...

class Busy(_message.Message):
    __slots__ = ("chip_id", "holder", "since")
    CHIP_ID_FIELD_NUMBER: _ClassVar[int]
    HOLDER_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    chip_id: str
    holder: str
    since: str
    def __init__(self, chip_id: _Optional[str] = ..., holder: _Optional[str] = ..., since: _Optional[str] = ...) -> None: ...

class AcquireReply(_message.Message):
    __slots__ = ("lease", "busy")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    lease: Lease
    busy: Busy
    def __init__(self, lease: _Optional[_Union[Lease, _Mapping]] = ..., busy: _Optional[_Union[Busy, _Mapping]] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("lease", "instance")
    LEASE_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    lease: str
    instance: str
    def __init__(self, lease: _Optional[str] = ..., instance: _Optional[str] = ...) -> None: ...

class LeaseReply(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
