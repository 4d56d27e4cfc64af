"""The results store: calibration results of many chips in one zarr v3 hierarchy.

Layout (every node a zarr v3 group or array)::

    <root>/                 attrs {"results_store": {"layout": 1}}
      <chip_id>/            one group per chip, attrs {"chip_id": ...}
        <run_id>/           one group per saved result; attrs: schema_version, complete,
                            run_id, manifest (name, shape, dtype, sha256 of every array)
                            and record (the result's own JSON metadata)
          codes/v_leak      arrays, named by the paths of the record
          achieved/tau_mem
          ...

A save encodes the whole run in memory, writes its arrays, and writes the run group's
metadata document last. Readers list only runs whose document exists, so a writer killed
mid-save leaves an invisible partial directory and every earlier run untouched. On a local
directory each file is written under a temporary name and renamed into place, so the
document is never seen half-written; object stores replace keys atomically. The store is
append-only: nothing here modifies or deletes a run.

Opening: `ResultsStore(path)` opens an existing store and raises StoreNotFoundError if there
is none; `ResultsStore(path, create=True)` opens it or makes a new one.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from zarr.abc.store import Store, SupportsGetSync
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.core.sync import sync
from zarr.errors import ContainsGroupError
from zarr.storage import FsspecStore, LocalStore, MemoryStore

from results_store.errors import (
    CorruptRunError,
    DecodeError,
    RunNotFoundError,
    StoreError,
    StoreNotFoundError,
)
from results_store.export import DEFAULT_DIMS, run_to_json, run_to_xarray
from results_store.ids import (
    check_chip_id,
    check_run_id,
    is_chip_id,
    is_run_id,
    new_run_id,
    run_time,
)
from results_store.records import (
    PreparedRecord,
    RunInfo,
    StoredRecord,
    SupportsFingerprint,
    check_kind,
    check_loaded_array,
    parse_run_metadata,
    prepare_record,
    run_metadata,
)
from results_store.registry import DEFAULT_REGISTRY, KindRegistry

if TYPE_CHECKING:
    import xarray

ROOT_MARKER = "results_store"
"""Root attribute that tells a results store from any other zarr hierarchy."""
LAYOUT_VERSION = 1
METADATA_DOCUMENT = "zarr.json"
READ_BATCH = 32
"""Runs whose metadata `latest` and `as_of` read at once, newest first."""
UNREADABLE_ARRAY_ERRORS = (FileNotFoundError, KeyError, ValueError, TypeError, RuntimeError)
"""What zarr and its codecs raise for a missing node or damaged bytes."""

T = TypeVar("T")
Location = str | os.PathLike[str] | Store
TargetLike = str | SupportsFingerprint


class ResultsStore:
    """Per-chip calibration results on zarr v3: save, get, latest, history, as-of, export.

    `location` is a local directory, an fsspec URL zarr supports (e.g. 's3://bucket/calib'),
    or a zarr Store. Without `create=True` the store must already exist. `registry` maps
    record kinds to decoders (default: the registry of `register_kind`).
    """

    def __init__(
        self,
        location: Location,
        *,
        create: bool = False,
        read_only: bool = False,
        registry: KindRegistry | None = None,
    ) -> None:
        if create and read_only:
            raise ValueError("create=True and read_only=True exclude each other")
        self._store, self._location = _zarr_store(location, create=create, read_only=read_only)
        self._registry = DEFAULT_REGISTRY if registry is None else registry
        self._open_root(create=create)

    def __repr__(self) -> str:
        return f"ResultsStore({self._location!r})"

    @property
    def location(self) -> str:
        return self._location

    @property
    def read_only(self) -> bool:
        return self._store.read_only

    # -- writing ------------------------------------------------------------------------------

    def save(self, result: object) -> str:
        """Store `result` (anything with `to_record() -> (arrays, attrs)`); return its run id.

        The run becomes visible to readers only once all of it is written.
        """
        if self.read_only:
            raise StoreError(f"{self!r} is open read-only; cannot save")
        record = prepare_record(result)
        run_id = new_run_id()
        self._write_run(record, run_id)
        return run_id

    # -- reading ------------------------------------------------------------------------------

    def chips(self) -> list[str]:
        """Ids of the chips with at least one complete run, sorted."""
        names = self._list_dir("")
        return [chip for chip in sorted(filter(is_chip_id, names))
                if self._newest(chip, _accept_any) is not None]

    def history(self, chip_id: str) -> list[RunInfo]:
        """Every complete run of `chip_id`, oldest first, without loading arrays."""
        infos = self._read_infos(check_chip_id(chip_id), self._run_ids(chip_id))
        for info in infos:
            if isinstance(info, StoreError):
                raise info
        return [info for info in infos if info is not None]

    def info(self, chip_id: str, run_id: str) -> RunInfo:
        """Metadata of one run (RunNotFoundError if it is absent or incomplete)."""
        check_chip_id(chip_id)
        check_run_id(run_id)
        (info,) = self._read_infos(chip_id, [run_id])
        if isinstance(info, StoreError):
            raise info
        if info is None:
            raise RunNotFoundError(f"chip {chip_id!r} has no complete run {run_id!r} in {self!r}")
        return info

    def get(self, chip_id: str, run_id: str, *, decode: bool = True) -> Any:
        """One run: decoded by its kind's registered decoder, else (or with decode=False) a
        StoredRecord. Raises RunNotFoundError, CorruptRunError or UnsupportedSchemaError."""
        return self._load(self.info(chip_id, run_id), decode=decode)

    def latest(
        self,
        chip_id: str,
        target: TargetLike | None = None,
        *,
        kind: str | None = None,
        decode: bool = True,
    ) -> Any | None:
        """The newest run of `chip_id` (for `target` and of `kind`, when given), else None.

        `target` is an object with `fingerprint()` or a fingerprint string; runs made for
        another target never match.
        """
        info = self._newest(check_chip_id(chip_id), _matcher(target, kind))
        return None if info is None else self._load(info, decode=decode)

    def as_of(
        self,
        chip_id: str,
        time: datetime,
        target: TargetLike | None = None,
        *,
        kind: str | None = None,
        decode: bool = True,
    ) -> Any | None:
        """What `latest` returned at `time` (timezone-aware): the newest matching run saved at
        or before it, else None."""
        if not isinstance(time, datetime) or time.tzinfo is None:
            raise ValueError(
                f"time = {time!r} must be a timezone-aware datetime (e.g. with tzinfo=UTC)"
            )
        info = self._newest(check_chip_id(chip_id), _matcher(target, kind), until=time)
        return None if info is None else self._load(info, decode=decode)

    # -- export -------------------------------------------------------------------------------

    def export_json(
        self, chip_id: str, run_id: str, path: str | os.PathLike[str] | None = None
    ) -> str:
        """The run as JSON text (arrays as lists, attrs as saved); also written to `path`."""
        text = run_to_json(self.get(chip_id, run_id, decode=False))
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_xarray(
        self, chip_id: str, run_id: str, dims: dict[int, str] | None = None
    ) -> xarray.Dataset:
        """The run as an xarray Dataset; axes named from their length by `dims`
        (default: 512 -> 'neuron', 4 -> 'quadrant')."""
        record = self.get(chip_id, run_id, decode=False)
        return run_to_xarray(record, DEFAULT_DIMS if dims is None else dims)

    # -- internals ----------------------------------------------------------------------------

    def _open_root(self, *, create: bool) -> None:
        attrs = self._root_attributes()
        if attrs is None and create:
            others = [name for name in self._list_dir("") if not _is_root_document(name)]
            if not others:
                try:
                    zarr.create_group(
                        self._store, attributes={ROOT_MARKER: {"layout": LAYOUT_VERSION}}
                    )
                except ContainsGroupError:
                    pass  # another process created the store at the same moment
            # Written by us or by a concurrent creator (whose first runs may be `others`).
            attrs = self._root_attributes()
            if attrs is None:
                raise StoreError(
                    f"{self._location!r} holds other data ({sorted(others)[:3]}) and is not a "
                    "results store; refusing to write into it"
                )
        if attrs is None:
            raise StoreNotFoundError(
                f"no results store at {self._location!r} (open with create=True to make one)"
            )
        marker = attrs.get(ROOT_MARKER)
        if not isinstance(marker, dict) or marker.get("layout") != LAYOUT_VERSION:
            raise StoreError(
                f"{self._location!r} is a zarr hierarchy but not a results store of layout "
                f"{LAYOUT_VERSION} (root attribute {ROOT_MARKER!r} = {marker!r})"
            )

    def _write_run(self, record: PreparedRecord, run_id: str) -> None:
        chip_document = f"{record.chip_id}/{METADATA_DOCUMENT}"
        run_path = f"{record.chip_id}/{run_id}"
        run_document = f"{run_path}/{METADATA_DOCUMENT}"
        staged = sync(_stage_run(record, run_id))
        # Concurrent first saves of one chip write the same chip document; the first one stays.
        sync(self._store.set_if_not_exists(chip_document, staged[chip_document]))
        self._set_many({key: value for key, value in staged.items()
                        if key.startswith(f"{run_path}/") and key != run_document})
        # The commit: until this document exists, readers do not see the run.
        sync(self._store.set_if_not_exists(run_document, staged[run_document]))

    def _set_many(self, values: dict[str, Buffer]) -> None:
        # Concurrently: on a local disk the kernel work of many small files overlaps.
        sync(_gather(self._store.set(key, value) for key, value in values.items()))

    def _get_many(self, keys: list[str]) -> list[Buffer | None]:
        # Small local reads cost less in this thread than handed to worker threads.
        if isinstance(self._store, SupportsGetSync):
            return [self._store.get_sync(key) for key in keys]
        prototype = default_buffer_prototype()
        return sync(_gather(self._store.get(key, prototype) for key in keys))

    def _list_dir(self, prefix: str) -> list[str]:
        async def names() -> list[str]:
            try:
                return [name async for name in self._store.list_dir(prefix)]
            except FileNotFoundError:
                return []

        return sync(names())

    def _run_ids(self, chip_id: str) -> list[str]:
        """Names under the chip that look like runs (complete or not), oldest first."""
        return sorted(filter(is_run_id, self._list_dir(chip_id)))

    def _root_attributes(self) -> dict[str, Any] | None:
        (document,) = self._get_many([METADATA_DOCUMENT])
        return None if document is None else _group_attributes(METADATA_DOCUMENT, document)

    def _read_infos(self, chip_id: str, run_ids: list[str]) -> list[RunInfo | StoreError | None]:
        """Per run: its metadata; None if it is not committed (a save in progress, or one that
        died); the error if it is damaged."""
        keys = [f"{chip_id}/{run_id}/{METADATA_DOCUMENT}" for run_id in run_ids]
        infos: list[RunInfo | StoreError | None] = []
        for run_id, key, document in zip(run_ids, keys, self._get_many(keys), strict=True):
            if document is None:
                infos.append(None)
                continue
            try:
                infos.append(parse_run_metadata(chip_id, run_id, _group_attributes(key, document)))
            except ValueError as error:  # includes JSON and UTF-8 decoding errors
                infos.append(CorruptRunError(
                    f"run {run_id!r} of chip {chip_id!r} has unreadable metadata: {error}"
                ))
            except StoreError as error:
                infos.append(error)
        return infos

    def _newest(
        self,
        chip_id: str,
        accept: Callable[[RunInfo], bool],
        until: datetime | None = None,
    ) -> RunInfo | None:
        """The newest complete run that `accept`s. A damaged run met before one is found
        raises: an older result must not silently stand in for a newer, unreadable one."""
        run_ids = self._run_ids(chip_id)
        if until is not None:
            run_ids = [run_id for run_id in run_ids if run_time(run_id) <= until]
        for end in range(len(run_ids), 0, -READ_BATCH):
            batch = run_ids[max(0, end - READ_BATCH):end]
            for info in reversed(self._read_infos(chip_id, batch)):
                if isinstance(info, StoreError):
                    raise info
                if info is not None and accept(info):
                    return info
        return None

    def _load(self, info: RunInfo, *, decode: bool) -> Any:
        record = StoredRecord(info.run_id, sync(self._load_arrays(info)), info.attrs)
        if not decode:
            return record
        decoder = self._registry.decoder(info.kind)
        if decoder is None:
            return record
        try:
            return decoder(record.arrays, record.attrs)
        except Exception as error:
            raise DecodeError(
                f"run {info.run_id!r} of chip {info.chip_id!r}: the decoder registered for kind "
                f"{info.kind!r} failed: {error}"
            ) from error

    async def _load_arrays(self, info: RunInfo) -> dict[str, np.ndarray]:
        run_path = f"{info.chip_id}/{info.run_id}"

        async def load(path: str) -> tuple[str, np.ndarray]:
            try:
                node = await zarr_async.open_array(
                    store=self._store, path=f"{run_path}/{path}", mode="r", zarr_format=3
                )
                values = np.asarray(await node.getitem(Ellipsis))
            except UNREADABLE_ARRAY_ERRORS as error:
                raise CorruptRunError(
                    f"run {info.run_id!r} of chip {info.chip_id!r}: array {path!r} cannot be "
                    f"read: {error!r}"
                ) from error
            check_loaded_array(info, path, values)
            return path, values

        # Every read finishes before the first error is raised: none is left pending.
        loaded = await asyncio.gather(*(load(path) for path in info.arrays), return_exceptions=True)
        for outcome in loaded:
            if isinstance(outcome, BaseException):
                raise outcome
        return dict(loaded)


async def _stage_run(record: PreparedRecord, run_id: str) -> dict[str, Buffer]:
    """Every key of the chip group and the run, encoded by zarr into memory."""
    staging = MemoryStore()
    await zarr_async.open_group(
        store=staging, path=record.chip_id, mode="w-", attributes={"chip_id": record.chip_id},
        zarr_format=3,
    )
    group = await zarr_async.open_group(
        store=staging, path=f"{record.chip_id}/{run_id}", mode="w-",
        attributes=run_metadata(run_id, record), zarr_format=3,
    )

    async def stage_array(path: str, values: np.ndarray) -> None:
        array = await group.create_array(
            path,
            shape=values.shape,
            dtype=values.dtype,
            # One chunk file beside the array's metadata ('c.0'), not in a 'c/' directory:
            # per-neuron arrays are one chunk, and each directory costs a write of its own.
            chunk_key_encoding={"name": "default", "separator": "."},
            config={"write_empty_chunks": True},
        )
        await array.setitem(Ellipsis, values)

    await asyncio.gather(*(stage_array(path, values) for path, values in record.arrays.items()))
    prototype = default_buffer_prototype()
    keys = [key async for key in staging.list_prefix(f"{record.chip_id}/")]
    return {key: value for key in keys if (value := await staging.get(key, prototype)) is not None}


async def _gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """asyncio.gather as a coroutine, so that it runs on zarr's event loop."""
    return list(await asyncio.gather(*awaitables))


def _group_attributes(key: str, document: Buffer) -> dict[str, Any]:
    """A group's attributes from its metadata document (ValueError if it is not one)."""
    content = json.loads(document.to_bytes())
    if not isinstance(content, dict) or content.get("node_type") != "group":
        raise ValueError(f"{key} is not the metadata of a zarr group")
    attributes = content.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ValueError(f"{key} has attributes that are not a JSON object")
    return attributes


def _is_root_document(name: str) -> bool:
    """The root metadata document, or a local writer's temporary file for it."""
    return name == METADATA_DOCUMENT or (name.startswith("zarr.") and name.endswith(".partial"))


def _accept_any(info: RunInfo) -> bool:
    return True


def _matcher(target: TargetLike | None, kind: str | None) -> Callable[[RunInfo], bool]:
    fingerprint = _fingerprint(target)
    if kind is not None:
        check_kind(kind)

    def accept(info: RunInfo) -> bool:
        return (fingerprint is None or info.target_fingerprint == fingerprint) and (
            kind is None or info.kind == kind
        )

    return accept


def _fingerprint(target: TargetLike | None) -> str | None:
    if target is None or isinstance(target, str):
        return target
    if isinstance(target, SupportsFingerprint):
        fingerprint = target.fingerprint()
        if isinstance(fingerprint, str):
            return fingerprint
    raise ValueError(
        f"target = {target!r} must be a fingerprint string or have a fingerprint() method "
        "returning one"
    )


def _zarr_store(location: Location, *, create: bool, read_only: bool) -> tuple[Store, str]:
    """The zarr store for `location` and a name for messages.

    Local paths (and file:// URLs) use LocalStore, whose writes are atomic renames; other URLs
    go through fsspec. A missing local directory is an error unless `create`.
    """
    if isinstance(location, Store):
        store = location.with_read_only(True) if read_only else location
        return store, repr(location)
    text = os.fspath(location)
    if "://" in text and not text.startswith("file://"):
        return FsspecStore.from_url(text, read_only=read_only), text
    path = Path(text.removeprefix("file://"))
    if path.exists() and not path.is_dir():
        raise StoreNotFoundError(f"no results store at {str(path)!r}: it is not a directory")
    if not path.exists() and not create:
        raise StoreNotFoundError(
            f"no results store at {str(path)!r}: the directory does not exist (open with "
            "create=True to make one)"
        )
    return LocalStore(path, read_only=read_only), str(path)
