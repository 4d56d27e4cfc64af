"""Helpers that damage stored runs the way a disk, a person or a bug would, for store tests."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from results_store import ResultsStore
from results_store.records import canonical_json, seal_of, sha256_hex
from results_store.runfile import RUN_FILE_NAME


def run_directory(store: ResultsStore, chip_id: str, run_id: str) -> Path:
    return Path(store.location) / chip_id / run_id


def read_document(store: ResultsStore, chip_id: str, run_id: str) -> dict[str, Any]:
    return json.loads((run_directory(store, chip_id, run_id) / "zarr.json").read_bytes())


def write_document(
    store: ResultsStore, chip_id: str, run_id: str, content: dict[str, Any], *, reseal: bool
) -> None:
    """Write a run document in the store's own spelling; `reseal` recomputes its seal, as a
    careful forger (or a bug) would, so that only the deeper checks can notice."""
    if reseal:
        content["attributes"]["seal"] = seal_of(content["attributes"])
    (run_directory(store, chip_id, run_id) / "zarr.json").write_bytes(canonical_json(content))


def edit_document(
    store: ResultsStore,
    chip_id: str,
    run_id: str,
    edit: Callable[[dict[str, Any]], None],
    *,
    reseal: bool = False,
) -> None:
    content = read_document(store, chip_id, run_id)
    edit(content["attributes"])
    write_document(store, chip_id, run_id, content, reseal=reseal)


def edit_run_file(
    store: ResultsStore,
    chip_id: str,
    run_id: str,
    edit: Callable[[dict[str, bytes]], None],
    *,
    manifest_edit: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """Rewrite the run file's entries with `edit`, and the run document to match it (new size,
    checksum and seal): a run whose outer checks all pass."""
    path = run_directory(store, chip_id, run_id) / RUN_FILE_NAME
    with zipfile.ZipFile(path) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    edit(entries)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in entries.items():
            archive.writestr(name, content)
    data = buffer.getvalue()
    path.write_bytes(data)

    def update(attributes: dict[str, Any]) -> None:
        attributes["run_file"].update(size=len(data), sha256=sha256_hex(data))
        if manifest_edit is not None:
            manifest_edit(attributes["manifest"])

    edit_document(store, chip_id, run_id, update, reseal=True)


def leaf_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every leaf of a JSON value, as the keys and indices leading to it."""
    if isinstance(value, dict) and value:
        return [path for key, item in value.items() for path in leaf_paths(item, (*prefix, key))]
    if isinstance(value, list) and value:
        return [
            path for index, item in enumerate(value) for path in leaf_paths(item, (*prefix, index))
        ]
    return [prefix]


def altered(value: Any) -> Any:
    """A different JSON value of a similar kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return 0
    return [*value, 0] if isinstance(value, list) else {**value, "x": 0}


def set_leaf(document: Any, path: tuple, value: Any) -> None:
    for key in path[:-1]:
        document = document[key]
    document[path[-1]] = value


def get_leaf(document: Any, path: tuple) -> Any:
    for key in path:
        document = document[key]
    return document
