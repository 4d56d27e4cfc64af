"""Per-chip run index: the metadata of a chip's runs in one file, so lookups need not read
every run document.

The index is a cache, never the truth: the runs a chip holds are the run directories a listing
shows, and what a run holds is its own sealed run document. A lookup lists the chip, takes the
metadata of every indexed run from the index and reads the run documents of the few runs it
does not cover yet (saves do not touch the index). When more than COMPACT_AFTER runs are not
covered, a writable store rewrites the index. The file is replaced atomically (a temporary
file renamed into place, or one object put), and its first line carries a SHA-256 of the rest:
a writer killed mid-write leaves the old index, a damaged index is detected and ignored (with a
warning), and concurrent rewrites each leave a valid, if partial, index.

Index entries leave out the arrays' checksums (a load reads them from the run document, which
is the authority) and share the array layouts (path, shape, dtype, dims, units, long name)
that runs of one chip mostly have in common, so the index stays small: about half a kilobyte
per run plus the record's attrs.

File `<chip>/index.json`:

    results_store-index 2 <sha256 of the payload>\n
    {"format":2,"layouts":[{<path>:{"shape":...,"dtype":...,"dims":...,...}}, ...],
     "runs":[{"run_id":...,"schema_version":...,"seal":...,"run_file":...,"layout":<index>,
              "record":{...}}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from results_store.records import (
    ArraySpec,
    RunFileSpec,
    RunInfo,
    canonical_json,
    check_array_path,
    sha256_hex,
)

INDEX_NAME = "index.json"
INDEX_FORMAT = 2
COMPACT_AFTER = 16
"""Runs a lookup reads from their own documents before a writable store rewrites the index."""
_MAGIC = b"results_store-index"


def _layout(info: RunInfo) -> dict[str, Any]:
    return {
        path: {key: value for key, value in spec.to_dict().items() if key != "sha256"}
        for path, spec in info.arrays.items()
    }


def encode_index(infos: Iterable[RunInfo]) -> bytes:
    layouts: dict[bytes, int] = {}
    runs = []
    for info in infos:
        layout = canonical_json(_layout(info))
        runs.append(
            {
                "run_id": info.run_id,
                "schema_version": info.schema_version,
                "seal": info.seal,
                "run_file": None if info.run_file is None else info.run_file.to_dict(),
                "layout": layouts.setdefault(layout, len(layouts)),
                "record": info.attrs,
            }
        )
    payload = canonical_json(
        {
            "format": INDEX_FORMAT,
            "layouts": [json.loads(layout) for layout in layouts],
            "runs": runs,
        }
    )
    return b"%s %d %s\n" % (_MAGIC, INDEX_FORMAT, sha256_hex(payload).encode()) + payload


def decode_index(chip_id: str, data: bytes) -> dict[str, RunInfo]:
    """Run id -> RunInfo (array checksums None); ValueError if the file is not an intact
    index of `chip_id`."""
    header, newline, payload = data.partition(b"\n")
    parts = header.split(b" ")
    if not newline or len(parts) != 3 or parts[0] != _MAGIC:
        raise ValueError("it does not start with the index header")
    if parts[1] != b"%d" % INDEX_FORMAT:
        raise ValueError(f"it has format {parts[1]!r}, this code reads format {INDEX_FORMAT}")
    if sha256_hex(payload) != parts[2].decode("ascii", "replace"):
        raise ValueError("its checksum does not match its content")
    content = json.loads(payload)
    infos: dict[str, RunInfo] = {}
    try:
        layouts = [
            {
                check_array_path(path): ArraySpec.from_dict({**spec, "sha256": None})
                for path, spec in layout.items()
            }
            for layout in content["layouts"]
        ]
        for item in content["runs"]:
            record = item["record"]
            if record.get("chip_id") != chip_id:
                raise ValueError(f"it lists a run of chip {record.get('chip_id')!r}")
            run_file = item["run_file"]
            infos[item["run_id"]] = RunInfo(
                chip_id,
                item["run_id"],
                item["schema_version"],
                record,
                dict(layouts[item["layout"]]),
                item["seal"],
                None if run_file is None else RunFileSpec.from_dict(run_file),
            )
    except (KeyError, TypeError, AttributeError, IndexError) as error:
        raise ValueError(f"an entry is malformed: {error!r}") from error
    return infos
