"""What the store keeps of a result: plain arrays, JSON metadata, and a sealed manifest.

A result reaches the store as `(arrays, attrs)` from its `to_record()`. Before anything is
written the record is checked here: array paths are safe names, arrays hold plain numbers,
attrs are plain JSON, and every array is described by an `ArrayMeta` (dimension names, units,
long name) given in `attrs[ARRAY_META_KEY]`:

    attrs["array_meta"] = {
        "achieved/tau_mem": {"dims": ["neuron"], "units": "s",
                             "long_name": "membrane time constant, achieved"},
        ...
    }

The store takes that entry out of the attrs and keeps it in the manifest (name, shape, dtype,
SHA-256, dims, units and long name of every array). The manifest, the record's attrs and the
checksum of the run's array file form the run document, sealed by a SHA-256 over all of it and
written in one canonical JSON spelling, so a load can tell an untouched run from a damaged one
down to a single byte.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from results_store.errors import CorruptRunError, UnsupportedSchemaError
from results_store.ids import check_chip_id, run_time

SCHEMA_VERSION = 2
"""Layout of one run, written on every run: 1 = one zarr array per record array, manifest
unsealed; 2 = the arrays in one zipped zarr hierarchy, every array with dims and units, the
run document sealed."""
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
ARRAY_META_KEY = "array_meta"
"""Key of `to_record()` attrs holding the per-array metadata (path -> ArrayMeta fields)."""
DIM_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]{0,63}"
_DIM_NAME = re.compile(DIM_NAME_PATTERN)
TEXT_MAX_LENGTH = 200
"""Longest units or long_name accepted."""

KIND_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
_KIND = re.compile(KIND_PATTERN)
ARRAY_NAME_PATTERN = r"[A-Za-z0-9_-]+"
"""One component of an array path ('codes/v_leak' has two); zarr reserves names starting '__'."""
_ARRAY_NAME = re.compile(ARRAY_NAME_PATTERN)
STORABLE_DTYPE_KINDS = {"b": "bool", "i": "signed integer", "u": "unsigned integer", "f": "float"}
"""Arrays hold plain numbers only; strings and objects belong in the JSON attrs."""


@runtime_checkable
class SupportsRecord(Protocol):
    """Anything the store can save: it turns itself into plain arrays and JSON metadata."""

    def to_record(self) -> tuple[Mapping[str, Any], Mapping[str, Any]]: ...


@runtime_checkable
class SupportsFingerprint(Protocol):
    """A target: a stable hash of what was asked (compared with attrs['target_fingerprint'])."""

    def fingerprint(self) -> str: ...


@dataclass(frozen=True)
class ArrayMeta:
    """What an array means: one name per axis, CF-style units ('s', 'CADC LSB', '1' for
    codes and other pure numbers) and a long name a person can read."""

    dims: tuple[str, ...]
    units: str
    long_name: str

    def to_dict(self) -> dict[str, Any]:
        return {"dims": list(self.dims), "units": self.units, "long_name": self.long_name}

    @classmethod
    def parse(cls, path: str, data: object, ndim: int) -> ArrayMeta:
        """From a record's `array_meta` entry for `path`; ValueError naming the field."""
        where = f"attrs[{ARRAY_META_KEY!r}][{path!r}]"
        if isinstance(data, ArrayMeta):
            data = data.to_dict()
        if not isinstance(data, Mapping) or set(data) != {"dims", "units", "long_name"}:
            raise ValueError(
                f"{where} = {data!r} must be a mapping with exactly the keys dims, units and "
                "long_name"
            )
        dims = data["dims"]
        if (
            not isinstance(dims, list | tuple)
            or len(dims) != ndim
            or not all(isinstance(dim, str) and _DIM_NAME.fullmatch(dim) for dim in dims)
            or len(set(dims)) != len(dims)
        ):
            raise ValueError(
                f"{where}['dims'] = {dims!r} must name each of the array's {ndim} axes once, "
                f"with names matching {DIM_NAME_PATTERN!r}"
            )
        for key in ("units", "long_name"):
            text = data[key]
            if (
                not isinstance(text, str)
                or not text.isprintable()
                or not (0 < len(text) <= TEXT_MAX_LENGTH)
            ):
                raise ValueError(
                    f"{where}[{key!r}] = {text!r} must be printable text of 1.."
                    f"{TEXT_MAX_LENGTH} characters"
                )
        return cls(tuple(dims), data["units"], data["long_name"])


@dataclass(frozen=True)
class ArraySpec:
    """What the manifest declares about one stored array (meta is None in schema 1 runs)."""

    shape: tuple[int, ...]
    dtype: str
    sha256: str | None
    """None in the summaries of the run index; loads check arrays against the run document."""
    meta: ArrayMeta | None = None

    @classmethod
    def of(cls, array: np.ndarray, meta: ArrayMeta | None = None) -> ArraySpec:
        return cls(tuple(int(n) for n in array.shape), array.dtype.name, array_digest(array), meta)

    @property
    def dims(self) -> tuple[str, ...] | None:
        return None if self.meta is None else self.meta.dims

    @property
    def units(self) -> str | None:
        return None if self.meta is None else self.meta.units

    @property
    def long_name(self) -> str | None:
        return None if self.meta is None else self.meta.long_name

    def to_dict(self) -> dict[str, Any]:
        spec = {"shape": list(self.shape), "dtype": self.dtype, "sha256": self.sha256}
        if self.meta is not None:
            spec.update(self.meta.to_dict())
        return spec

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArraySpec:
        shape = tuple(int(n) for n in data["shape"])
        meta = None
        if "dims" in data:
            meta = ArrayMeta(tuple(data["dims"]), str(data["units"]), str(data["long_name"]))
            if len(meta.dims) != len(shape):
                raise ValueError(f"dims {meta.dims} do not match shape {shape}")
        sha256 = data["sha256"]
        return cls(shape, str(data["dtype"]), None if sha256 is None else str(sha256), meta)


@dataclass(frozen=True)
class RunInfo:
    """A stored run's metadata, read without loading its arrays."""

    chip_id: str
    run_id: str
    schema_version: int
    attrs: dict[str, Any]
    """The record's attrs as saved (kind, chip_id, target, provenance ...)."""
    arrays: dict[str, ArraySpec]
    """The manifest: every array of the run (from `history()`, read from the run index,
    without the arrays' checksums: `get` checks arrays against the run document)."""
    seal: str | None = None
    """SHA-256 over the run document (None for schema 1 runs, which have none)."""
    run_file: RunFileSpec | None = None
    """The file holding the run's arrays (schema 2), with its size and checksum."""

    @property
    def kind(self) -> str:
        return self.attrs["kind"]

    @property
    def target_fingerprint(self) -> str | None:
        return self.attrs.get("target_fingerprint")

    @property
    def saved_at(self) -> datetime:
        """UTC time the save started (encoded in the run id)."""
        return run_time(self.run_id)


@dataclass(frozen=True)
class RunFileSpec:
    """The one file holding a schema 2 run's arrays."""

    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunFileSpec:
        if set(data) != {"name", "size", "sha256"} or type(data["size"]) is not int:
            raise ValueError(f"run_file = {data!r} is not a run file entry")
        return cls(str(data["name"]), data["size"], str(data["sha256"]))


@dataclass(frozen=True)
class StoredRecord:
    """A run loaded as plain data: returned for kinds without a registered decoder."""

    run_id: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    meta: dict[str, ArrayMeta] = field(default_factory=dict)
    """Dims, units and long name per array (empty for schema 1 runs)."""

    @property
    def kind(self) -> str:
        return self.attrs["kind"]

    @property
    def chip_id(self) -> str:
        return self.attrs["chip_id"]

    @property
    def saved_at(self) -> datetime:
        return run_time(self.run_id)

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The record again, so a stored run can be saved into another store."""
        attrs = copy.deepcopy(self.attrs)
        if self.meta:
            attrs[ARRAY_META_KEY] = {path: meta.to_dict() for path, meta in self.meta.items()}
        return {path: values.copy() for path, values in self.arrays.items()}, attrs


@dataclass(frozen=True)
class PreparedRecord:
    """A checked record, ready to write: native arrays, plain attrs, and their manifest."""

    chip_id: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
    """The record's attrs without the array metadata (which is in the manifest)."""
    manifest: dict[str, ArraySpec]


def array_digest(array: np.ndarray) -> str:
    """SHA-256 of the array's values in little-endian C order (the same on every platform)."""
    little = array.astype(array.dtype.newbyteorder("<"), copy=False)
    return hashlib.sha256(np.ascontiguousarray(little).tobytes()).hexdigest()


def prepare_record(result: object) -> PreparedRecord:
    """Check `result.to_record()` and return what the store will write.

    Raises TypeError if `result` has no `to_record`, ValueError naming the offending field
    otherwise.
    """
    if not isinstance(result, SupportsRecord):
        raise TypeError(
            f"cannot save a {type(result).__name__}: it needs a to_record() method returning "
            "(arrays, attrs)"
        )
    arrays, attrs = result.to_record()
    if not isinstance(attrs, Mapping):
        raise ValueError(f"record attrs must be a mapping, got {type(attrs).__name__}")
    if not isinstance(arrays, Mapping):
        raise ValueError(f"record arrays must be a mapping, got {type(arrays).__name__}")
    attrs = dict(attrs)
    given_meta = attrs.pop(ARRAY_META_KEY, None)
    plain = plain_attrs(attrs)
    check_kind(plain.get("kind"))
    chip_id = check_chip_id(plain.get("chip_id"))
    fingerprint = plain.get("target_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ValueError(f"attrs['target_fingerprint'] = {fingerprint!r} must be a string or None")
    stored = {
        check_array_path(path): storable_array(path, values) for path, values in arrays.items()
    }
    check_no_nesting_conflicts(stored)
    metas = array_metas(given_meta, stored)
    manifest = {path: ArraySpec.of(values, metas[path]) for path, values in stored.items()}
    return PreparedRecord(chip_id, stored, plain, manifest)


def array_metas(given: object, arrays: Mapping[str, np.ndarray]) -> dict[str, ArrayMeta]:
    """The checked ArrayMeta of every array: one entry per array, none for absent arrays, and
    a dimension name has one length across the record (so the run opens as one dataset)."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise ValueError(
            f"attrs[{ARRAY_META_KEY!r}] = {given!r} must map every array path to its dims, "
            "units and long_name"
        )
    missing = sorted(set(arrays) - set(given))
    if missing:
        raise ValueError(
            f"attrs[{ARRAY_META_KEY!r}] has no entry for array {missing[0]!r}: give its dims, "
            "units and long_name"
        )
    unknown = sorted(set(given) - set(arrays))
    if unknown:
        raise ValueError(f"attrs[{ARRAY_META_KEY!r}] names {unknown[0]!r}, which is no array")
    metas = {
        path: ArrayMeta.parse(path, given[path], values.ndim) for path, values in arrays.items()
    }
    lengths: dict[str, tuple[int, str]] = {}
    for path, meta in metas.items():
        for dim, length in zip(meta.dims, arrays[path].shape, strict=True):
            known = lengths.setdefault(dim, (length, path))
            if known[0] != length:
                raise ValueError(
                    f"dimension {dim!r} has length {length} in array {path!r} but "
                    f"{known[0]} in array {known[1]!r}"
                )
    return metas


def check_kind(kind: object) -> str:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"attrs['kind'] = {kind!r} is not allowed: kinds match {KIND_PATTERN!r}")
    return kind


def check_array_path(path: object) -> str:
    """An array path: names matching ARRAY_NAME_PATTERN joined by '/', none starting '__'."""
    names = path.split("/") if isinstance(path, str) else [None]
    if not all(
        isinstance(name, str) and _ARRAY_NAME.fullmatch(name) and not name.startswith("__")
        for name in names
    ):
        raise ValueError(
            f"array path {path!r} is not allowed: paths are names matching "
            f"{ARRAY_NAME_PATTERN!r} (not starting with '__') joined by '/'"
        )
    return path


def storable_array(path: str, values: object) -> np.ndarray:
    """`values` as a native-byte-order array of plain numbers, else ValueError naming `path`."""
    array = np.asarray(values)
    if array.dtype.kind not in STORABLE_DTYPE_KINDS:
        allowed = ", ".join(STORABLE_DTYPE_KINDS.values())
        raise ValueError(
            f"array {path!r} has dtype {array.dtype} which the store does not keep; allowed: "
            f"{allowed} (put strings and other metadata into attrs)"
        )
    return array.astype(array.dtype.newbyteorder("="), copy=False)


def check_no_nesting_conflicts(arrays: Mapping[str, np.ndarray]) -> None:
    """An array path cannot also be the group of another array ('a' and 'a/b')."""
    groups = {path.rsplit("/", 1)[0] for path in arrays if "/" in path}
    prefixes = {
        "/".join(group.split("/")[: i + 1]) for group in groups for i in range(group.count("/") + 1)
    }
    clash = sorted(prefixes & set(arrays))
    if clash:
        raise ValueError(f"array path {clash[0]!r} is both an array and a group of other arrays")


def plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of `attrs` if it is plain JSON, else ValueError naming the offending entry.

    Plain JSON here: dicts with string keys, lists, strings, booleans, None, integers and finite
    floats. Tuples, numpy integers and non-finite floats would not survive a JSON round trip
    unchanged, so they are refused rather than silently altered.
    """
    _check_plain(attrs, "attrs")
    return json.loads(json.dumps(attrs))


def _check_plain(value: object, where: str) -> None:
    if value is None or isinstance(value, str) or type(value) in (bool, int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} = {value!r} is not finite (JSON has no NaN or inf)")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has key {key!r}: JSON keys must be strings")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
        return
    raise ValueError(
        f"{where} = {value!r} is a {type(value).__name__}, not plain JSON (use lists for "
        "sequences, arrays for per-neuron data)"
    )


# -- the run's own metadata document ---------------------------------------------------------


def canonical_json(value: object) -> bytes:
    """The one spelling the store writes JSON in: sorted keys, no spaces, ASCII only."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal_of(attributes: Mapping[str, Any]) -> str:
    """SHA-256 over a run document's attributes, all but the seal itself."""
    return sha256_hex(
        canonical_json({key: value for key, value in attributes.items() if key != "seal"})
    )


def run_document(run_id: str, record: PreparedRecord, run_file: RunFileSpec) -> bytes:
    """The run group's zarr.json (schema 2): written last, it makes the run visible."""
    attributes: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "run_id": run_id,
        "manifest": {path: spec.to_dict() for path, spec in record.manifest.items()},
        "record": record.attrs,
        "run_file": run_file.to_dict(),
    }
    attributes["seal"] = seal_of(attributes)
    return canonical_json({"attributes": attributes, "node_type": "group", "zarr_format": 3})


def parse_run_document(chip_id: str, run_id: str, document: bytes) -> RunInfo:
    """RunInfo from a run group's zarr.json; CorruptRunError naming the run if it is not what
    the store writes (schema 2: any changed byte), UnsupportedSchemaError for unknown versions."""
    where = f"run {run_id!r} of chip {chip_id!r}"
    try:
        content = json.loads(document)
    except ValueError as error:  # includes UTF-8 decoding errors
        raise CorruptRunError(f"{where} has unreadable metadata: {error}") from error
    if (
        not isinstance(content, dict)
        or content.get("node_type") != "group"
        or not isinstance(content.get("attributes", {}), dict)
    ):
        raise CorruptRunError(f"{where} has metadata that is not a zarr group document")
    meta = content.get("attributes", {})
    version = meta.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS or type(version) is not int:
        raise UnsupportedSchemaError(
            f"{where} has schema_version {version!r}; this version of results_store reads "
            f"schema versions {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
        )
    if version >= 2:
        if (
            set(content) != {"attributes", "node_type", "zarr_format"}
            or content["zarr_format"] != 3
        ):
            raise CorruptRunError(f"{where} has a run document that is not a zarr v3 group")
        if canonical_json(content) != document:
            raise CorruptRunError(
                f"{where} has a run document that was altered: it is not in the spelling the "
                "store writes"
            )
        if meta.get("seal") != seal_of(meta):
            raise CorruptRunError(
                f"{where} has a run document whose seal does not match its content (tampered "
                "or damaged)"
            )
    try:
        if meta["complete"] is not True:
            raise ValueError("it is not marked complete")
        if meta["run_id"] != run_id:
            raise ValueError(f"its metadata names run {meta['run_id']!r}")
        attrs = dict(meta["record"])
        if attrs.get("chip_id") != chip_id:
            raise ValueError(f"its record names chip {attrs.get('chip_id')!r}")
        check_kind(attrs.get("kind"))
        manifest = {
            check_array_path(path): ArraySpec.from_dict(spec)
            for path, spec in meta["manifest"].items()
        }
        run_file = RunFileSpec.from_dict(meta["run_file"]) if version >= 2 else None
        if version >= 2 and any(spec.meta is None for spec in manifest.values()):
            raise ValueError("its manifest lacks the dims and units of an array")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CorruptRunError(f"{where} has damaged metadata: {error!r}") from error
    return RunInfo(chip_id, run_id, version, attrs, manifest, meta.get("seal"), run_file)


def check_loaded_array(info: RunInfo, path: str, array: np.ndarray) -> None:
    """CorruptRunError naming the run if `array` is not what the manifest declares."""
    spec = info.arrays[path]
    if spec.sha256 is None:
        raise ValueError(f"run {info.run_id!r}: arrays are checked against the run document")
    problem = None
    if array.shape != spec.shape:
        problem = f"shape {array.shape}, manifest declares {spec.shape}"
    elif array.dtype.name != spec.dtype:
        problem = f"dtype {array.dtype.name}, manifest declares {spec.dtype}"
    elif array_digest(array) != spec.sha256:
        problem = "contents that differ from the checksum in the manifest"
    if problem is not None:
        raise CorruptRunError(
            f"run {info.run_id!r} of chip {info.chip_id!r}: array {path!r} has {problem}"
        )


def check_array_set(info: RunInfo, found: set[str], where: str) -> None:
    """CorruptRunError if the arrays `found` in storage are not those the manifest declares:
    a missing array is never replaced by a default, an undeclared one never dropped."""
    declared = set(info.arrays)
    missing, undeclared = sorted(declared - found), sorted(found - declared)
    if missing:
        raise CorruptRunError(
            f"run {info.run_id!r} of chip {info.chip_id!r}: array {missing[0]!r} of the "
            f"manifest is missing from {where}"
        )
    if undeclared:
        raise CorruptRunError(
            f"run {info.run_id!r} of chip {info.chip_id!r}: {where} holds array "
            f"{undeclared[0]!r}, which has no entry in the manifest"
        )
