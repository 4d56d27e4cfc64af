"""Export of stored runs: JSON text for any tool, xarray Datasets for analysis.

JSON keeps arrays as (nested) lists and attrs as saved. JSON has no NaN or infinity, so
non-finite floats are written as null (NaN) and the strings "Infinity" / "-Infinity",
the spelling zarr v3 uses for such fill values.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from results_store.records import StoredRecord

if TYPE_CHECKING:
    import xarray

DEFAULT_DIMS: dict[int, str] = {512: "neuron", 4: "quadrant"}
"""Axis names by length: per-neuron and per-quadrant data of the reference chip."""


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
        "arrays": {path: json_values(values) for path, values in record.arrays.items()},
    }


def run_to_json(record: StoredRecord, indent: int | None = None) -> str:
    return json.dumps(run_to_dict(record), indent=indent, allow_nan=False)


def variable_name(path: str) -> str:
    """'codes/v_leak' -> 'codes.v_leak' ('/' would be read as a group by netCDF writers)."""
    return path.replace("/", ".")


def axis_names(shape: tuple[int, ...], dims: dict[int, str]) -> tuple[str, ...]:
    """Names for the axes of `shape`: from `dims` by length, else 'length_<length>'."""
    names: list[str] = []
    for axis, length in enumerate(shape):
        name = dims.get(length, f"length_{length}")
        names.append(f"{name}_{axis}" if name in names else name)
    return tuple(names)


def attribute_value(value: Any) -> str | int | float:
    """Strings and numbers as they are; everything else (nested, bool, None) as JSON text,
    since netCDF attributes hold only those."""
    if isinstance(value, str) or type(value) in (int, float):
        return value
    return json.dumps(value)


def run_to_xarray(record: StoredRecord, dims: dict[int, str] = DEFAULT_DIMS) -> xarray.Dataset:
    """A Dataset with one variable per array (attrs['path'] keeps the stored path)."""
    import xarray  # imported here: loading xarray costs more than the rest of the store

    variables = {
        variable_name(path): xarray.Variable(
            axis_names(values.shape, dims), values, attrs={"path": path}
        )
        for path, values in record.arrays.items()
    }
    attrs = {key: attribute_value(value) for key, value in record.attrs.items()}
    attrs.update(run_id=record.run_id, saved_at=record.saved_at.isoformat())
    dataset = xarray.Dataset(variables, attrs=attrs)
    named = {name: np.arange(length) for length, name in dims.items() if name in dataset.dims}
    return dataset.assign_coords(named)
