"""The run file of schema 2: a run's arrays as one zipped zarr v3 hierarchy.

One zarr array per record array, each with `dimension_names` and CF-style `units` and
`long_name` attributes, in groups following the array paths ('achieved/tau_mem' is array
'tau_mem' of group 'achieved'); the root group carries the record's attrs as structured
attributes and consolidated metadata. The whole hierarchy is one zip file (zarr's ZipStore
layout, entries stored uncompressed: the chunks are compressed by zarr), so a run costs two
files however many arrays it has, and is read with one request.

Open one with plain zarr or xarray:

    store = zarr.storage.ZipStore("<store>/<chip>/<run>/run.zarr.zip", mode="r")
    xarray.open_zarr(store, group="achieved")
"""

from __future__ import annotations

import asyncio
import io
import json
import warnings
import zipfile
from typing import Any

import numpy as np
import zarr.api.asynchronous as zarr_async
from zarr.core.buffer import cpu, default_buffer_prototype
from zarr.storage import MemoryStore

from results_store.errors import CorruptRunError
from results_store.records import PreparedRecord, RunInfo, check_array_set, check_loaded_array

RUN_FILE_NAME = "run.zarr.zip"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
"""Every entry's time stamp: the file's bytes depend on the record alone."""
READ_ERRORS = (KeyError, ValueError, TypeError, RuntimeError, OSError, zipfile.BadZipFile)
"""What zipfile, zarr and its codecs raise for damaged bytes."""


def root_attributes(run_id: str, record: PreparedRecord) -> dict[str, Any]:
    """The run file's root attributes: the record as structured values, and the run id."""
    return {**record.attrs, "run_id": run_id}


async def encode_run_file(run_id: str, record: PreparedRecord) -> bytes:
    """The run file's bytes for `record`."""
    staging = MemoryStore()
    root = await zarr_async.open_group(
        store=staging, mode="w-", attributes=root_attributes(run_id, record), zarr_format=3
    )

    async def stage_array(path: str, values: np.ndarray) -> None:
        meta = record.manifest[path].meta
        assert meta is not None  # prepare_record gives every array its meta
        array = await root.create_array(
            path,
            shape=values.shape,
            dtype=values.dtype,
            dimension_names=meta.dims,
            attributes={"units": meta.units, "long_name": meta.long_name},
            config={"write_empty_chunks": True},
        )
        await array.setitem(Ellipsis, values)

    await asyncio.gather(*(stage_array(path, values) for path, values in record.arrays.items()))
    with warnings.catch_warnings():
        # zarr notes that consolidated metadata is not yet part of the v3 specification; it is
        # written so that xarray opens the file without probing every node.
        warnings.simplefilter("ignore", UserWarning)
        await zarr_async.consolidate_metadata(staging)
    prototype = default_buffer_prototype()
    keys = sorted([key async for key in staging.list_prefix("")])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for key in keys:
            value = await staging.get(key, prototype)
            if value is not None:
                archive.writestr(zipfile.ZipInfo(key, date_time=ZIP_TIME), value.to_bytes())
    return buffer.getvalue()


async def decode_run_file(info: RunInfo, data: bytes) -> dict[str, np.ndarray]:
    """The arrays of a run file whose bytes already match the run document's checksum; each
    checked against the manifest, and the file's arrays against the manifest's list."""
    where = f"run {info.run_id!r} of chip {info.chip_id!r}"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = {name: archive.read(name) for name in archive.namelist()}
        found = {
            name.removesuffix("/zarr.json")
            for name, content in entries.items()
            if name.endswith("/zarr.json") and json.loads(content).get("node_type") == "array"
        }
    except READ_ERRORS as error:
        raise CorruptRunError(f"{where}: its run file cannot be read: {error!r}") from error
    check_array_set(info, found, "its run file")
    store = MemoryStore({name: cpu.Buffer.from_bytes(content) for name, content in entries.items()})

    try:
        # The consolidated metadata in the root document describes every array at once.
        root = await zarr_async.open_group(
            store=store, mode="r", use_consolidated=True, zarr_format=3
        )
    except READ_ERRORS as error:
        raise CorruptRunError(f"{where}: its run file has no readable root: {error!r}") from error

    async def load(path: str) -> tuple[str, np.ndarray]:
        try:
            node = await root.getitem(path)
            values = np.asarray(await node.getitem(Ellipsis))  # type: ignore[union-attr]
        except READ_ERRORS as error:
            raise CorruptRunError(f"{where}: array {path!r} cannot be read: {error!r}") from error
        check_loaded_array(info, path, values)
        return path, values

    loaded = await asyncio.gather(*(load(path) for path in info.arrays), return_exceptions=True)
    for outcome in loaded:
        if isinstance(outcome, BaseException):
            raise outcome
    return dict(loaded)  # type: ignore[arg-type]
