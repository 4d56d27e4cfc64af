"""The results store: calibration results of many chips in one zarr v3 hierarchy.

Layout (see docs/results_store.md for the whole story)::

    <root>/zarr.json          group, attrs {"results_store": {"layout": 1}}
      <chip_id>/zarr.json     one group per chip, attrs {"chip_id": ...}
      <chip_id>/index.json    the chip's run index (a cache, see results_store.index)
      <chip_id>/<run_id>/     one directory per saved result
        zarr.json             the run document (schema 2): schema_version, complete, run_id,
                              record (the result's attrs, structured), manifest (shape, dtype,
                              sha256, dims, units, long_name of every array), run_file (size and
                              sha256 of run.zarr.zip) and seal (sha256 over all of that); one
                              canonical JSON spelling
        run.zarr.zip          the arrays: a zipped zarr v3 hierarchy (results_store.runfile)
      _quarantine/<chip_id>/<run_id>/   damaged runs moved aside by `repair`

Schema 1 runs (one zarr array per record array beside an unsealed run document) stay
readable; new runs are written with schema 2.

A save encodes the whole run in memory, writes the chip group (first save only) and the run
file, and writes the run document last. Readers list only runs whose document exists, so a
writer killed mid-save leaves an invisible partial directory and every earlier run untouched.
On a local directory each file is written under a temporary name and renamed into place, so no
file is ever seen half-written; object stores replace keys atomically. Runs are never modified:
only `repair` moves damaged runs to the quarantine and removes leftovers of killed writers.

Integrity: a load checks the run document's spelling and seal, the run file's size and
checksum, that the file holds exactly the manifest's arrays, and each array's shape, dtype and
checksum; anything else is a CorruptRunError naming the run. Lookups (`history`, `latest`,
`as_of`, `chips`) skip a damaged run with a DamagedRunWarning naming it.

Opening: `ResultsStore(path)` opens an existing store and raises StoreNotFoundError if there
is none; `ResultsStore(path, create=True)` opens it or makes a new one.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import warnings
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np
import zarr
import zarr.api.asynchronous as zarr_async
from zarr.abc.store import Store, SupportsGetSync
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.core.sync import sync
from zarr.errors import ContainsGroupError
from zarr.storage import FsspecStore, LocalStore

from results_store.errors import (
    CorruptRunError,
    DamagedRunWarning,
    DecodeError,
    RunNotFoundError,
    StoreError,
    StoreNotFoundError,
    UnsupportedSchemaError,
)
from results_store.export import history_to_xarray, run_to_json, run_to_xarray
from results_store.ids import (
    check_chip_id,
    check_run_id,
    is_chip_id,
    is_run_id,
    new_run_id,
    run_time,
)
from results_store.index import COMPACT_AFTER, INDEX_NAME, decode_index, encode_index
from results_store.maintenance import RepairReport, RunProblem, VerifyReport
from results_store.records import (
    PreparedRecord,
    RunFileSpec,
    RunInfo,
    StoredRecord,
    SupportsFingerprint,
    canonical_json,
    check_array_set,
    check_kind,
    check_loaded_array,
    parse_run_document,
    prepare_record,
    run_document,
    sha256_hex,
)
from results_store.registry import DEFAULT_REGISTRY, KindRegistry
from results_store.runfile import RUN_FILE_NAME, decode_run_file, encode_run_file

if TYPE_CHECKING:
    import xarray

ROOT_MARKER = "results_store"
"""Root attribute that tells a results store from any other zarr hierarchy."""
LAYOUT_VERSION = 1
METADATA_DOCUMENT = "zarr.json"
QUARANTINE = "_quarantine"
"""Where `repair` moves damaged runs (not a chip id: chip ids start with a letter or digit)."""
PROBE_PREFIX = "_probe-"
NEWEST_FIRST = 8
"""Newest runs `latest` and `as_of` read from their own documents before using the index."""
UNREADABLE_ARRAY_ERRORS = (FileNotFoundError, KeyError, ValueError, TypeError, RuntimeError)
"""What zarr and its codecs raise for a missing node or damaged bytes."""
SKIPPED_ERRORS = (CorruptRunError, UnsupportedSchemaError, RunNotFoundError)
"""Runs that lookups step over (with a warning) instead of failing."""
TEMPORARY_FILE = re.compile(r".*\.[0-9a-f]{32}\.partial")
"""A local writer's temporary file (renamed into place when complete)."""

T = TypeVar("T")
Location = str | os.PathLike[str] | Store
TargetLike = str | SupportsFingerprint


class ResultsStore:
    """Per-chip calibration results on zarr v3: save, get, latest, history, as-of, export,
    verify and repair.

    `location` is a local directory, an fsspec URL zarr supports (e.g. 's3://bucket/calib'),
    or a zarr Store. Without `create=True` the store must already exist. `registry` maps
    record kinds to decoders (default: the registry of `register_kind`, which also finds
    decoders declared under the 'results_store.kinds' entry point group).
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

    def check_writable(self) -> None:
        """StoreError naming the store unless a save could write to it now (call it before a
        long calibration: a probe file is written and removed)."""
        if self.read_only:
            raise StoreError(f"{self!r} is open read-only; cannot save")
        probe = f"{PROBE_PREFIX}{secrets.token_hex(8)}"
        try:
            sync(self._store.set(probe, cpu.Buffer.from_bytes(b"")))
            sync(self._store.delete(probe))
        except OSError as error:
            raise StoreError(
                f"results store {self._location!r} is not writable: {error.strerror or error}"
            ) from error

    def save(self, result: object) -> str:
        """Store `result` (anything with `to_record() -> (arrays, attrs)`); return its run id.

        The run becomes visible to readers only once all of it is written.
        """
        if self.read_only:
            raise StoreError(f"{self!r} is open read-only; cannot save")
        record = prepare_record(result)
        run_id = new_run_id()
        try:
            self._write_run(record, run_id)
        except OSError as error:
            raise StoreError(
                f"could not save run {run_id!r} of chip {record.chip_id!r} in results store "
                f"{self._location!r} (nothing was committed): {error.strerror or error}"
            ) from error
        return run_id

    # -- reading ------------------------------------------------------------------------------

    def chips(self) -> list[str]:
        """Ids of the chips with at least one complete, readable run, sorted."""
        names = self._list_dir("")
        return [
            chip
            for chip in sorted(filter(is_chip_id, names))
            if any(isinstance(info, RunInfo) for _, info in self._infos(chip))
        ]

    def history(self, chip_id: str) -> list[RunInfo]:
        """Every complete run of `chip_id`, oldest first, without loading arrays; runs whose
        metadata cannot be read are left out with a DamagedRunWarning naming them."""
        return _warned(self._infos(check_chip_id(chip_id)))

    def info(self, chip_id: str, run_id: str) -> RunInfo:
        """Metadata of one run, read from its own document (RunNotFoundError if it is absent
        or incomplete, CorruptRunError if it is damaged)."""
        check_chip_id(chip_id)
        check_run_id(run_id)
        (info,) = self._read_documents(chip_id, [run_id])
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
        """The newest intact run of `chip_id` (for `target` and of `kind`, when given), else
        None. Damaged newer runs are skipped with a DamagedRunWarning naming them.

        `target` is an object with `fingerprint()` or a fingerprint string; runs made for
        another target never match.
        """
        return self._newest(check_chip_id(chip_id), _matcher(target, kind), None, decode)

    def as_of(
        self,
        chip_id: str,
        time: datetime,
        target: TargetLike | None = None,
        *,
        kind: str | None = None,
        decode: bool = True,
    ) -> Any | None:
        """What `latest` returns for the runs saved at or before `time` (timezone-aware)."""
        if not isinstance(time, datetime) or time.tzinfo is None:
            raise ValueError(
                f"time = {time!r} must be a timezone-aware datetime (e.g. with tzinfo=UTC)"
            )
        return self._newest(check_chip_id(chip_id), _matcher(target, kind), time, decode)

    # -- export -------------------------------------------------------------------------------

    def export_json(
        self, chip_id: str, run_id: str, path: str | os.PathLike[str] | None = None
    ) -> str:
        """The run as JSON text (arrays as lists, attrs as saved); also written to `path`."""
        text = run_to_json(self.get(chip_id, run_id, decode=False))
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def to_xarray(self, chip_id: str, run_id: str) -> xarray.Dataset:
        """The run as an xarray Dataset: one variable per array with its stored dims, units
        and long name (schema 1 runs: axes named from their length, 512 -> 'neuron',
        4 -> 'quadrant'); attrs flattened to netCDF-writable values."""
        return run_to_xarray(self.get(chip_id, run_id, decode=False))

    def history_dataset(self, chip_id: str, kind: str | None = None) -> xarray.Dataset:
        """The chip's runs (of `kind`, when given) as one Dataset, oldest first: dimensions
        (run, neuron), coordinates run id, time and target fingerprint, and per-run target,
        success and per-neuron values (NaN where a run lacks a quantity). Damaged runs are
        left out with a DamagedRunWarning."""
        matcher = _matcher(None, kind)
        records = []
        for info in _warned(self._infos(check_chip_id(chip_id))):
            if not matcher(info):
                continue
            try:  # the run's own document decides what is loaded
                records.append(self._load(self.info(chip_id, info.run_id), decode=False))
            except SKIPPED_ERRORS as error:
                _warn_skipped(error)
        if not records:
            raise RunNotFoundError(
                f"chip {chip_id!r} has no readable run{f' of kind {kind!r}' if kind else ''} "
                f"in {self!r}"
            )
        return history_to_xarray(chip_id, records)

    def export_history(
        self,
        chip_id: str,
        path: str | os.PathLike[str],
        *,
        format: Literal["netcdf", "zarr"] = "netcdf",
        kind: str | None = None,
    ) -> Path:
        """Write `history_dataset(chip_id, kind)` as netCDF (h5netcdf) or a zarr v3 store."""
        if format not in ("netcdf", "zarr"):
            raise ValueError(f"format = {format!r} is not allowed: use 'netcdf' or 'zarr'")
        dataset = self.history_dataset(chip_id, kind)
        target = Path(path)
        if format == "netcdf":
            dataset.to_netcdf(target, engine="h5netcdf")
        else:
            with warnings.catch_warnings():
                # zarr notes that consolidated metadata is not yet in the v3 specification;
                # written so that xarray opens the export without probing every node.
                warnings.simplefilter("ignore", UserWarning)
                dataset.to_zarr(target, mode="w-", zarr_format=3, consolidated=True)
        return target

    # -- maintenance --------------------------------------------------------------------------

    def verify(self) -> VerifyReport:
        """Check every run of every chip completely (metadata, seal, run file, every array);
        list damaged runs, runs not committed (a save in progress or a killed writer) and
        damaged indexes. Reads everything; nothing is changed."""
        checked, damaged, partial, indexes = 0, [], [], []
        for chip_id in sorted(filter(is_chip_id, self._list_dir(""))):
            try:
                self._read_index(chip_id, warn=False)
            except ValueError as error:
                indexes.append(RunProblem(chip_id, INDEX_NAME, str(error)))
            run_ids = self._run_ids(chip_id)
            for run_id, info in zip(run_ids, self._read_documents(chip_id, run_ids), strict=True):
                if info is None:
                    partial.append(RunProblem(chip_id, run_id, "not committed"))
                    continue
                checked += 1
                try:
                    if isinstance(info, StoreError):
                        raise info
                    self._load_arrays(info)
                except StoreError as error:
                    damaged.append(RunProblem(chip_id, run_id, str(error)))
        return VerifyReport(checked, damaged, partial, indexes)

    def repair(self, older_than: timedelta = timedelta(hours=1)) -> RepairReport:
        """Move damaged runs to the quarantine (`_quarantine/<chip>/<run>`), remove runs never
        committed whose save started more than `older_than` ago and (local stores) temporary
        files older than that, and rewrite the touched chips' indexes."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise ValueError(f"older_than = {older_than!r} must be a non-negative timedelta")
        if self.read_only:
            raise StoreError(f"{self!r} is open read-only; cannot repair")
        report = self.verify()
        cutoff = datetime.now(UTC) - older_than
        quarantined, removed = [], []
        for problem in report.damaged:
            self._quarantine(problem.chip_id, problem.run_id)
            quarantined.append(problem)
        for problem in report.partial:
            if run_time(problem.run_id) < cutoff:
                sync(self._store.delete_dir(f"{problem.chip_id}/{problem.run_id}"))
                removed.append(problem)
        temporary = self._remove_temporary_files(cutoff)
        for chip_id in {p.chip_id for p in [*quarantined, *removed, *report.damaged_indexes]}:
            infos = [
                info for _, info in self._infos(chip_id, compact=False) if isinstance(info, RunInfo)
            ]
            self._write_index(chip_id, infos)
        return RepairReport(quarantined, removed, temporary)

    # -- internals: opening and writing -------------------------------------------------------

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
        run_path = f"{record.chip_id}/{run_id}"
        data = sync(encode_run_file(run_id, record))
        run_file = RunFileSpec(RUN_FILE_NAME, len(data), sha256_hex(data))
        chip_document = canonical_json(
            {"attributes": {"chip_id": record.chip_id}, "node_type": "group", "zarr_format": 3}
        )
        # Concurrent first saves of one chip write the same chip document; the first one stays.
        sync(
            self._store.set_if_not_exists(
                f"{record.chip_id}/{METADATA_DOCUMENT}", cpu.Buffer.from_bytes(chip_document)
            )
        )
        sync(self._store.set(f"{run_path}/{RUN_FILE_NAME}", cpu.Buffer.from_bytes(data)))
        # The commit: until this document exists, readers do not see the run.
        document = run_document(run_id, record, run_file)
        sync(
            self._store.set_if_not_exists(
                f"{run_path}/{METADATA_DOCUMENT}", cpu.Buffer.from_bytes(document)
            )
        )

    def _write_index(self, chip_id: str, infos: list[RunInfo]) -> None:
        """Replace the chip's index (atomically); a store that refuses the write keeps the old
        one, which stays valid, as lookups check it against the listing."""
        try:
            sync(
                self._store.set(
                    f"{chip_id}/{INDEX_NAME}", cpu.Buffer.from_bytes(encode_index(infos))
                )
            )
        except OSError:
            pass

    def _quarantine(self, chip_id: str, run_id: str) -> None:
        """Copy the run below QUARANTINE, then delete it: its document first, so it is never
        half-visible."""
        prefix = f"{chip_id}/{run_id}/"
        keys = sync(_list_prefix(self._store, prefix))
        values = self._get_many(keys)
        for key, value in zip(keys, values, strict=True):
            if value is not None:
                sync(self._store.set(f"{QUARANTINE}/{key}", value))
        document = f"{prefix}{METADATA_DOCUMENT}"
        if document in keys:
            sync(self._store.delete(document))
        sync(self._store.delete_dir(f"{chip_id}/{run_id}"))

    def _remove_temporary_files(self, cutoff: datetime) -> list[str]:
        """Temporary files of killed local writers, older than `cutoff` (local stores only:
        object stores write no temporary files)."""
        if not isinstance(self._store, LocalStore):
            return []
        root = Path(self._store.root)
        removed = []
        for path in root.rglob("*.partial"):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(f"{QUARANTINE}/") or not TEMPORARY_FILE.fullmatch(path.name):
                continue
            try:
                if datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff:
                    path.unlink()
                    removed.append(relative)
            except FileNotFoundError:
                continue  # renamed into place or removed meanwhile
        return sorted(removed)

    # -- internals: reading -------------------------------------------------------------------

    def _get_many(self, keys: list[str]) -> list[Buffer | None]:
        # Small local reads cost less in this thread than handed to worker threads.
        if isinstance(self._store, SupportsGetSync):
            return [self._store.get_sync(key) for key in keys]
        prototype = default_buffer_prototype()
        return sync(_gather(self._store.get(key, prototype) for key in keys))

    def _list_dir(self, prefix: str) -> list[str]:
        if isinstance(self._store, LocalStore):
            # What LocalStore.list_dir does, without a round trip through zarr's event loop.
            try:
                return os.listdir(Path(self._store.root) / prefix)
            except (FileNotFoundError, NotADirectoryError):
                return []

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
        if document is None:
            return None
        try:
            return _group_attributes(METADATA_DOCUMENT, document)
        except ValueError as error:
            raise StoreError(f"{self._location!r} has a damaged root document: {error}") from None

    def _read_documents(
        self, chip_id: str, run_ids: list[str]
    ) -> list[RunInfo | StoreError | None]:
        """Per run, from its own document: its metadata; None if it is not committed (a save
        in progress, or one that died); the error if it is damaged."""
        keys = [f"{chip_id}/{run_id}/{METADATA_DOCUMENT}" for run_id in run_ids]
        infos: list[RunInfo | StoreError | None] = []
        for run_id, document in zip(run_ids, self._get_many(keys), strict=True):
            if document is None:
                infos.append(None)
                continue
            try:
                infos.append(parse_run_document(chip_id, run_id, document.to_bytes()))
            except StoreError as error:
                infos.append(error)
        return infos

    def _read_index(self, chip_id: str, *, warn: bool = True) -> dict[str, RunInfo]:
        """The chip's index ({} if there is none). A damaged index raises ValueError with
        warn=False, else is ignored with a DamagedRunWarning."""
        (data,) = self._get_many([f"{chip_id}/{INDEX_NAME}"])
        if data is None:
            return {}
        try:
            return decode_index(chip_id, data.to_bytes())
        except ValueError as error:
            if not warn:
                raise
            warnings.warn(
                f"chip {chip_id!r}: the run index of {self!r} is damaged ({error}) and is "
                "ignored; 'repair' rewrites it",
                DamagedRunWarning,
                stacklevel=4,
            )
            return {}

    def _infos(
        self, chip_id: str, *, compact: bool = True
    ) -> list[tuple[str, RunInfo | StoreError]]:
        """The chip's complete runs, oldest first, with their ids: indexed runs from the
        index, the others from their documents (the error in place of a damaged one)."""
        run_ids = self._run_ids(chip_id)
        indexed = self._read_index(chip_id)
        unindexed = [run_id for run_id in run_ids if run_id not in indexed]
        read = dict(zip(unindexed, self._read_documents(chip_id, unindexed), strict=True))
        infos = [
            (run_id, info)
            for run_id in run_ids
            if (info := indexed.get(run_id) or read.get(run_id)) is not None
        ]
        fresh = sum(isinstance(info, RunInfo) for info in read.values())
        if compact and fresh >= COMPACT_AFTER and not self.read_only:
            self._write_index(chip_id, [info for _, info in infos if isinstance(info, RunInfo)])
        return infos

    def _newest(
        self,
        chip_id: str,
        accept: Callable[[RunInfo], bool],
        until: datetime | None,
        decode: bool,
    ) -> Any | None:
        """The newest matching run that loads intact; damaged ones are warned about and
        skipped, so an intact older run stands in for them (named in the warning).

        The newest NEWEST_FIRST runs are read from their own documents (the usual answer is
        among them, and the index need not be read); older candidates come from the index."""
        run_ids = [
            run_id
            for run_id in self._run_ids(chip_id)
            if until is None or run_time(run_id) <= until
        ]
        recent, older = run_ids[-NEWEST_FIRST:], set(run_ids[:-NEWEST_FIRST])
        for info in reversed(self._read_documents(chip_id, recent)):
            found = self._try_load(info, accept, decode, from_index=False)
            if found is not None:
                return found[0]
        if older:
            for run_id, info in reversed(self._infos(chip_id)):
                if run_id in older:
                    found = self._try_load(info, accept, decode, from_index=True)
                    if found is not None:
                        return found[0]
        return None

    def _try_load(
        self,
        info: RunInfo | StoreError | None,
        accept: Callable[[RunInfo], bool],
        decode: bool,
        *,
        from_index: bool,
    ) -> tuple[Any] | None:
        """(loaded run,) if `info` is an accepted run that loads intact, else None (after a
        warning if it is damaged)."""
        if info is None:
            return None
        if isinstance(info, StoreError):
            _warn_skipped(info)
            return None
        if not accept(info):
            return None
        try:
            current = self.info(info.chip_id, info.run_id) if from_index else info
            if current.seal != info.seal:
                raise CorruptRunError(
                    f"run {info.run_id!r} of chip {info.chip_id!r} changed after it was indexed"
                )
            return (self._load(current, decode=decode),)
        except SKIPPED_ERRORS as error:
            _warn_skipped(error)
            return None

    def _load(self, info: RunInfo, *, decode: bool) -> Any:
        record = StoredRecord(
            info.run_id,
            self._load_arrays(info),
            info.attrs,
            {path: spec.meta for path, spec in info.arrays.items() if spec.meta is not None},
        )
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

    def _load_arrays(self, info: RunInfo) -> dict[str, np.ndarray]:
        if info.run_file is None:
            return sync(self._load_schema1_arrays(info))
        key = f"{info.chip_id}/{info.run_id}/{info.run_file.name}"
        (data,) = self._get_many([key])
        where = f"run {info.run_id!r} of chip {info.chip_id!r}"
        if data is None:
            raise CorruptRunError(f"{where}: its run file {info.run_file.name!r} is missing")
        content = data.to_bytes()
        if len(content) != info.run_file.size or sha256_hex(content) != info.run_file.sha256:
            raise CorruptRunError(
                f"{where}: its run file {info.run_file.name!r} differs from the checksum in the "
                "run document (tampered or damaged)"
            )
        return sync(decode_run_file(info, content))

    async def _load_schema1_arrays(self, info: RunInfo) -> dict[str, np.ndarray]:
        run_path = f"{info.chip_id}/{info.run_id}"
        documents = [
            key
            async for key in self._store.list_prefix(f"{run_path}/")
            if key.endswith(f"/{METADATA_DOCUMENT}") and key != f"{run_path}/{METADATA_DOCUMENT}"
        ]
        prototype = default_buffer_prototype()
        found = set()
        for key in documents:
            content = await self._store.get(key, prototype)
            try:
                node = json.loads(content.to_bytes()) if content is not None else None
                is_array = isinstance(node, dict) and node.get("node_type") == "array"
            except ValueError:
                is_array = False  # a garbled array document: reported when the array is read
            if is_array:
                found.add(key.removeprefix(f"{run_path}/").removesuffix(f"/{METADATA_DOCUMENT}"))
        check_array_set(info, found, "its directory")

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
        return dict(loaded)  # type: ignore[arg-type]


def _warned(infos: list[tuple[str, RunInfo | StoreError]]) -> list[RunInfo]:
    """The readable runs of `infos`, after a warning for each damaged one."""
    for _, info in infos:
        if isinstance(info, StoreError):
            _warn_skipped(info)
    return [info for _, info in infos if isinstance(info, RunInfo)]


def _warn_skipped(error: StoreError) -> None:
    warnings.warn(f"skipped a damaged run: {error}", DamagedRunWarning, stacklevel=4)


async def _list_prefix(store: Store, prefix: str) -> list[str]:
    return sorted([key async for key in store.list_prefix(prefix)])


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
