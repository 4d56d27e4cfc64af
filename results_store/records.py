"""What the store keeps of a result: plain arrays, JSON metadata, and a manifest binding them.

A result reaches the store as `(arrays, attrs)` from its `to_record()`. Before anything is
written the record is checked here: array paths are safe names, arrays hold plain numbers,
attrs are plain JSON. The manifest (name, shape, dtype and SHA-256 of every array) goes into
the run's metadata, so a load can tell a complete, untouched run from a damaged one.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np

from results_store.errors import CorruptRunError, UnsupportedSchemaError
from results_store.ids import check_chip_id, run_time

SCHEMA_VERSION = 1
"""Layout of one run's metadata, written on every run."""
SUPPORTED_SCHEMA_VERSIONS = (1,)

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
class ArraySpec:
    """What the manifest declares about one stored array."""

    shape: tuple[int, ...]
    dtype: str
    sha256: str

    @classmethod
    def of(cls, array: np.ndarray) -> ArraySpec:
        return cls(tuple(int(n) for n in array.shape), array.dtype.name, array_digest(array))

    def to_dict(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArraySpec:
        return cls(tuple(int(n) for n in data["shape"]), str(data["dtype"]), str(data["sha256"]))


@dataclass(frozen=True)
class RunInfo:
    """A stored run's metadata, read without loading its arrays."""

    chip_id: str
    run_id: str
    schema_version: int
    attrs: dict[str, Any]
    """The record's attrs as saved (kind, chip_id, target, provenance ...)."""
    arrays: dict[str, ArraySpec]
    """The manifest: every array of the run."""

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
class StoredRecord:
    """A run loaded as plain data: returned for kinds without a registered decoder."""

    run_id: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]

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
        return {path: values.copy() for path, values in self.arrays.items()}, copy.deepcopy(
            self.attrs
        )


@dataclass(frozen=True)
class PreparedRecord:
    """A checked record, ready to write: native arrays, plain attrs, and their manifest."""

    chip_id: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]
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
    plain = plain_attrs(dict(attrs))
    check_kind(plain.get("kind"))
    chip_id = check_chip_id(plain.get("chip_id"))
    fingerprint = plain.get("target_fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise ValueError(
            f"attrs['target_fingerprint'] = {fingerprint!r} must be a string or None"
        )
    stored = {check_array_path(path): storable_array(path, values) for path, values in
              arrays.items()}
    check_no_nesting_conflicts(stored)
    manifest = {path: ArraySpec.of(values) for path, values in stored.items()}
    return PreparedRecord(chip_id, stored, plain, manifest)


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
    prefixes = {"/".join(group.split("/")[: i + 1]) for group in groups
                for i in range(group.count("/") + 1)}
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


def run_metadata(run_id: str, record: PreparedRecord) -> dict[str, Any]:
    """The JSON attributes of a run's group; written last, they make the run visible."""
    return {
        "schema_version": SCHEMA_VERSION,
        "complete": True,
        "run_id": run_id,
        "manifest": {path: spec.to_dict() for path, spec in record.manifest.items()},
        "record": record.attrs,
    }


def parse_run_metadata(chip_id: str, run_id: str, meta: Mapping[str, Any]) -> RunInfo:
    """RunInfo from a run group's attributes; a clear error if they are not what we write."""
    where = f"run {run_id!r} of chip {chip_id!r}"
    version = meta.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedSchemaError(
            f"{where} has schema_version {version!r}; this version of results_store reads "
            f"schema versions {', '.join(map(str, SUPPORTED_SCHEMA_VERSIONS))}"
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
        manifest = {check_array_path(path): ArraySpec.from_dict(spec)
                    for path, spec in meta["manifest"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CorruptRunError(f"{where} has damaged metadata: {error!r}") from error
    return RunInfo(chip_id, run_id, int(version), attrs, manifest)


def check_loaded_array(info: RunInfo, path: str, array: np.ndarray) -> None:
    """CorruptRunError naming the run if `array` is not what the manifest declares."""
    spec = info.arrays[path]
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
