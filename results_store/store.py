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
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
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
        sync(self._write_run(record, run_id))
        return run_id

    # -- reading ------------------------------------------------------------------------------

    def chips(self) -> list[str]:
        """Ids of the chips with at least one complete run, sorted."""
        names = sync(self._list_dir(""))
        return [chip for chip in sorted(filter(is_chip_id, names))
                if self._newest(chip, _accept_any) is not None]

    def history(self, chip_id: str) -> list[RunInfo]:
        """Every complete run of `chip_id`, oldest first, without loading arrays."""
        infos = sync(self._read_infos(check_chip_id(chip_id), self._run_ids(chip_id)))
        for info in infos:
            if isinstance(info, BaseException):
                raise info
        return [info for info in infos if info is not None]

    def info(self, chip_id: str, run_id: str) -> RunInfo:
        """Metadata of one run (RunNotFoundError if it is absent or incomplete)."""
        check_chip_id(chip_id)
        check_run_id(run_id)
        info = sync(self._read_info(chip_id, run_id))
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
        attrs = sync(self._group_attributes(""))
        if attrs is None and create:
            others = [name for name in sync(self._list_dir("")) if not _is_root_document(name)]
            if not others:
                try:
                    zarr.create_group(
                        self._store, attributes={ROOT_MARKER: {"layout": LAYOUT_VERSION}}
                    )
                except ContainsGroupError:
                    pass  # another process created the store at the same moment
            # Written by us or by a concurrent creator (whose first runs may be `others`).
            attrs = sync(self._group_attributes(""))
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

    async def _write_run(self, record: PreparedRecord, run_id: str) -> None:
        chip_path = record.chip_id
        run_path = f"{chip_path}/{run_id}"
        staging = MemoryStore()
        await zarr_async.open_group(
            store=staging, path=chip_path, mode="w-", attributes={"chip_id": record.chip_id},
            zarr_format=3,
        )
        group = await zarr_async.open_group(
            store=staging, path=run_path, mode="w-", attributes=run_metadata(run_id, record),
            zarr_format=3,
        )
        await asyncio.gather(
            *(_stage_array(group, path, values) for path, values in record.arrays.items())
        )
        prototype = default_buffer_prototype()

        async def place(key: str, *, exclusive: bool = False) -> None:
            value = await staging.get(key, prototype)
            assert value is not None
            if exclusive:
                await self._store.set_if_not_exists(key, value)
            else:
                await self._store.set(key, value)

        run_document = f"{run_path}/{METADATA_DOCUMENT}"
        # Concurrent first saves of one chip write the same chip document; the first one stays.
        await place(f"{chip_path}/{METADATA_DOCUMENT}", exclusive=True)
        body = [key async for key in staging.list_prefix(f"{run_path}/") if key != run_document]
        await asyncio.gather(*(place(key) for key in body))
        # The commit: until this document exists, readers do not see the run.
        await place(run_document, exclusive=True)

    async def _list_dir(self, prefix: str) -> list[str]:
        try:
            return [name async for name in self._store.list_dir(prefix)]
        except FileNotFoundError:
            return []

    def _run_ids(self, chip_id: str) -> list[str]:
        """Names under the chip that look like runs (complete or not), oldest first."""
        return sorted(filter(is_run_id, sync(self._list_dir(chip_id))))

    async def _group_attributes(self, path: str) -> dict[str, Any] | None:
        """A group's attributes read from its metadata document; None if it has none."""
        key = f"{path}/{METADATA_DOCUMENT}" if path else METADATA_DOCUMENT
        buffer = await self._store.get(key, prototype=default_buffer_prototype())
        if buffer is None:
            return None
        document = json.loads(buffer.to_bytes())
        if not isinstance(document, dict) or document.get("node_type") != "group":
            raise ValueError(f"{key} is not the metadata of a zarr group")
        attributes = document.get("attributes", {})
        if not isinstance(attributes, dict):
            raise ValueError(f"{key} has attributes that are not a JSON object")
        return attributes

    async def _read_info(self, chip_id: str, run_id: str) -> RunInfo | None:
        try:
            attrs = await self._group_attributes(f"{chip_id}/{run_id}")
        except ValueError as error:  # includes JSON and UTF-8 decoding errors
            raise CorruptRunError(
                f"run {run_id!r} of chip {chip_id!r} has unreadable metadata: {error}"
            ) from error
        if attrs is None:
            return None  # not committed: a save in progress, or one that died
        return parse_run_metadata(chip_id, run_id, attrs)

    async def _read_infos(
        self, chip_id: str, run_ids: list[str]
    ) -> list[RunInfo | BaseException | None]:
        return await asyncio.gather(
            *(self._read_info(chip_id, run_id) for run_id in run_ids), return_exceptions=True
        )

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
            for info in reversed(sync(self._read_infos(chip_id, batch))):
                if isinstance(info, BaseException):
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

        return dict(await asyncio.gather(*(load(path) for path in info.arrays)))


async def _stage_array(group: zarr_async.AsyncGroup, path: str, values: np.ndarray) -> None:
    array = await group.create_array(
        path, shape=values.shape, dtype=values.dtype, config={"write_empty_chunks": True}
    )
    await array.setitem(Ellipsis, values)


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
