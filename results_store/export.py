"""Export of stored runs: JSON text for any tool, xarray Datasets for analysis.

JSON keeps arrays as (nested) lists and attrs as saved. JSON has no NaN or infinity, so
non-finite floats are written as null (NaN) and the strings "Infinity" / "-Infinity",
the spelling zarr v3 uses for such fill values.

Datasets name each array's axes by its stored dims and carry its `units` and `long_name`;
runs of schema 1, which stored no dims, fall back to names by axis length (DEFAULT_DIMS).
Nested attrs are flattened into dotted names ('provenance.device_stats.runs'), so that every
attribute is a string, a number or an array of numbers, as netCDF requires.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from results_store.records import StoredRecord

if TYPE_CHECKING:
    import xarray

DEFAULT_DIMS: dict[int, str] = {512: "neuron", 4: "quadrant"}
"""Axis names by length, for schema 1 runs only (they stored no dimension names)."""
RUN_DIM = "run"


def json_values(array: np.ndarray) -> Any:
    """The array as nested lists of standard-JSON values."""
    if array.dtype.kind != "f" or np.isfinite(array).all():
        return array.tolist()
    values = array.astype(object)
    values[np.isnan(array)] = None
    values[array == np.inf] = "Infinity"
    values[array == -np.inf] = "-Infinity"
    return values.tolist()


def run_to_dict(record: StoredRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "saved_at": record.saved_at.isoformat(),
        "attrs": record.attrs,
        "dtypes": {path: values.dtype.name for path, values in record.arrays.items()},
        "meta": {path: meta.to_dict() for path, meta in record.meta.items()},
        "arrays": {path: json_values(values) for path, values in record.arrays.items()},
    }


def run_to_json(record: StoredRecord, indent: int | None = None) -> str:
    return json.dumps(run_to_dict(record), indent=indent, allow_nan=False)


def variable_name(path: str) -> str:
    """'codes/v_leak' -> 'codes.v_leak' ('/' would be read as a group by netCDF writers)."""
    return path.replace("/", ".")


def axis_names(shape: tuple[int, ...], dims: Mapping[int, str] = DEFAULT_DIMS) -> tuple[str, ...]:
    """Schema 1 fallback: names for the axes of `shape` from `dims` by length, else
    'length_<length>'."""
    names: list[str] = []
    for axis, length in enumerate(shape):
        name = dims.get(length, f"length_{length}")
        names.append(f"{name}_{axis}" if name in names else name)
    return tuple(names)


def array_dims(record: StoredRecord, path: str) -> tuple[str, ...]:
    meta = record.meta.get(path)
    return meta.dims if meta is not None else axis_names(record.arrays[path].shape)


def array_attributes(record: StoredRecord, path: str) -> dict[str, str]:
    meta = record.meta.get(path)
    attributes = {"path": path}
    if meta is not None:
        attributes.update(units=meta.units, long_name=meta.long_name)
    return attributes


def flat_attributes(attrs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested attrs as dotted names with netCDF-writable values: strings and numbers stay,
    lists of numbers become arrays, other values (booleans, None, mixed lists) JSON text."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_attributes(value, f"{name}."))
        elif isinstance(value, str) or type(value) in (int, float):
            out[name] = value
        elif isinstance(value, list) and value and all(type(v) in (int, float) for v in value):
            out[name] = np.asarray(value)
        else:
            out[name] = json.dumps(value)
    return out


def _index_coords(dataset: xarray.Dataset) -> xarray.Dataset:
    named = {
        dim: np.arange(dataset.sizes[dim]) for dim in ("neuron", "quadrant") if dim in dataset.dims
    }
    return dataset.assign_coords(named)


def run_to_xarray(record: StoredRecord) -> xarray.Dataset:
    """A Dataset with one variable per array (attrs['path'] keeps the stored path)."""
    import xarray  # imported here: loading xarray costs more than the rest of the store

    variables = {
        variable_name(path): xarray.Variable(
            array_dims(record, path), values, attrs=array_attributes(record, path)
        )
        for path, values in record.arrays.items()
    }
    attrs = flat_attributes(record.attrs)
    attrs.update(run_id=record.run_id, saved_at=record.saved_at.isoformat())
    return _index_coords(xarray.Dataset(variables, attrs=attrs))


def _stacked(values: Sequence[np.ndarray | None]) -> np.ndarray:
    """Runs' arrays stacked along a new first axis; runs lacking it filled with NaN (the
    result then float)."""
    present = [array for array in values if array is not None]
    if len(present) == len(values):
        return np.stack(present)
    out = np.full((len(values), *present[0].shape), np.nan)
    for row, array in enumerate(values):
        if array is not None:
            out[row] = array
    return out


def history_to_xarray(chip_id: str, records: Sequence[StoredRecord]) -> xarray.Dataset:
    """Runs of one chip, oldest first, as one Dataset with a leading 'run' dimension.

    Every array that has the same dims and shape in all runs holding it becomes a variable
    (run, *dims). Target fields (attrs['target']) become 'target.<name>': numbers per run, or
    per run and neuron when a field is a list as long as the 'neuron' dimension; they carry the
    units of the 'achieved/<name>' array where there is one (the convention of neuron results).
    """
    import xarray

    records = sorted(records, key=lambda record: record.run_id)
    layout: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {}
    clashing: set[str] = set()
    for record in records:
        for path, values in record.arrays.items():
            shape = (array_dims(record, path), values.shape)
            if layout.setdefault(path, shape) != shape:
                clashing.add(path)
    variables: dict[str, xarray.Variable] = {}
    for path, (dims, _) in layout.items():
        if path in clashing:
            continue
        first = next(record for record in records if path in record.arrays)
        data = _stacked([record.arrays.get(path) for record in records])
        variables[variable_name(path)] = xarray.Variable(
            (RUN_DIM, *dims), data, attrs=array_attributes(first, path)
        )
    n_neurons = next(
        (
            layout[path][1][layout[path][0].index("neuron")]
            for path in layout
            if "neuron" in layout[path][0]
        ),
        None,
    )
    variables.update(_target_variables(records, variables, n_neurons))
    coords = {
        RUN_DIM: (RUN_DIM, np.array([record.run_id for record in records], dtype=object)),
        "time": (
            RUN_DIM,
            np.array(
                [record.saved_at.replace(tzinfo=None) for record in records], dtype="datetime64[us]"
            ).astype("datetime64[ns]"),
            {"long_name": "time the run was saved (UTC)"},
        ),
        "target_fingerprint": (
            RUN_DIM,
            np.array(
                [str(record.attrs.get("target_fingerprint")) for record in records], dtype=object
            ),
        ),
        "kind": (RUN_DIM, np.array([record.kind for record in records], dtype=object)),
    }
    dataset = xarray.Dataset(
        variables, coords=coords, attrs={"chip_id": chip_id, "runs": len(records)}
    )
    return _index_coords(dataset)


def _target_variables(
    records: Sequence[StoredRecord],
    variables: Mapping[str, xarray.Variable],
    n_neurons: int | None,
) -> dict[str, xarray.Variable]:
    import xarray

    targets = [
        record.attrs.get("target") if isinstance(record.attrs.get("target"), dict) else {}
        for record in records
    ]
    names = sorted({name for target in targets for name in target})
    out: dict[str, xarray.Variable] = {}
    for name in names:
        values = [target.get(name) for target in targets]
        numbers = all(value is None or type(value) in (int, float) for value in values)
        per_neuron = n_neurons is not None and all(
            value is None
            or type(value) in (int, float)
            or (
                isinstance(value, list)
                and len(value) == n_neurons
                and all(type(v) in (int, float) for v in value)
            )
            for value in values
        )
        attrs = {"long_name": f"target {name}"}
        achieved = variables.get(f"achieved.{name}")
        if achieved is not None and "units" in achieved.attrs:
            attrs["units"] = achieved.attrs["units"]
        if numbers:
            data = np.array([np.nan if value is None else value for value in values], float)
            out[f"target.{name}"] = xarray.Variable((RUN_DIM,), data, attrs=attrs)
        elif per_neuron:
            data = np.full((len(values), n_neurons), np.nan)
            for row, value in enumerate(values):
                if value is not None:
                    data[row] = value
            out[f"target.{name}"] = xarray.Variable((RUN_DIM, "neuron"), data, attrs=attrs)
    return out
