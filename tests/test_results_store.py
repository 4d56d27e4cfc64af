"""The results store: opening, saving, lookups, decoding, validation, export.

Integrity, damage and repair: test_results_store_integrity.py; schema 1 runs, array metadata
and datasets: test_results_store_schema.py.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray
import zarr

from results_store import (
    ARRAY_META_KEY,
    CHIP_ID_PATTERN,
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    CorruptRunError,
    DamagedRunWarning,
    DecodeError,
    KindRegistry,
    ResultsStore,
    RunNotFoundError,
    StoredRecord,
    StoreError,
    StoreNotFoundError,
    UnsupportedSchemaError,
    register_kind,
    unregister_kind,
)
from results_store.ids import RunIdClock, new_run_id, run_time


def generic_meta(path: str, values: Any) -> dict[str, Any]:
    """Dims named after the array, no unit: for tests about something else than metadata."""
    name = path.replace("/", "_")
    dims = [f"{name}_{axis}" for axis in range(np.ndim(values))]
    return {"dims": dims, "units": "1", "long_name": name}


@dataclass
class PlainResult:
    """The smallest thing the store can save; arrays without an entry in
    attrs['array_meta'] get generic_meta."""

    arrays: dict[str, Any]
    attrs: dict[str, Any]

    def to_record(self) -> tuple[dict[str, Any], dict[str, Any]]:
        given = self.attrs.get(ARRAY_META_KEY, {})
        if not isinstance(given, dict):
            return self.arrays, self.attrs
        meta = {
            path: given.get(path) or generic_meta(path, values)
            for path, values in self.arrays.items()
            if isinstance(path, str)
        }
        return self.arrays, {**self.attrs, ARRAY_META_KEY: meta}


MAKE_RESULT_META = {
    "success": (["neuron"], "1", "neuron within tolerance"),
    "codes/v_leak": (["neuron"], "1", "code of cell v_leak"),
    "codes/cadc_ramp_offset": (["quadrant"], "1", "code of cell cadc_ramp_offset"),
    "codes/cadc_channel_offset": (["neuron"], "1", "code of cell cadc_channel_offset"),
    "achieved/tau_mem": (["neuron"], "s", "membrane time constant, achieved"),
    "achieved/leak": (["neuron"], "CADC LSB", "leak potential, achieved"),
    "models/tau_mem/coefficients": (["neuron", "coefficient"], "1", "fit coefficients"),
    "counts": (["neuron"], "1", "spike counts"),
    "offset": ([], "CADC LSB", "an offset"),
    "nothing": (["empty"], "1", "an empty array"),
}


@dataclass(frozen=True)
class Target:
    name: str

    def fingerprint(self) -> str:
        return f"fp-{self.name}"


def make_result(
    chip_id: str = "chip-0", *, target: str = "a", kind: str = "demo", seed: int = 0
) -> PlainResult:
    rng = np.random.default_rng(seed)
    achieved = rng.normal(10e-6, 1e-6, 512)
    achieved[[3, 7]] = np.nan
    achieved[11] = np.inf
    arrays = {
        "success": rng.random(512) > 0.1,
        "codes/v_leak": rng.integers(0, 1023, 512),
        "codes/cadc_ramp_offset": rng.integers(0, 1023, 4).astype(np.int16),
        "codes/cadc_channel_offset": rng.integers(-128, 128, 512).astype(np.int8),
        "achieved/tau_mem": achieved,
        "achieved/leak": rng.normal(80, 2, 512).astype(np.float32),
        "models/tau_mem/coefficients": rng.normal(size=(512, 3)),
        "counts": rng.integers(0, 2**16, 512).astype(np.uint16),
        "offset": np.float64(rng.normal()),
        "nothing": np.zeros((0,)),
    }
    attrs = {
        "kind": kind,
        "chip_id": chip_id,
        "target_fingerprint": f"fp-{target}",
        "target": {"tau_mem": 10e-6, "per_neuron": [1.5, 2.5]},
        "reasons": {"3": "tau_mem: code at upper bound 1022"},
        "provenance": {"seed": seed, "ok": True, "note": None},
        ARRAY_META_KEY: {
            path: {"dims": dims, "units": units, "long_name": long_name}
            for path, (dims, units, long_name) in MAKE_RESULT_META.items()
        },
    }
    return PlainResult(arrays, attrs)


def assert_same_record(loaded: StoredRecord, saved: PlainResult) -> None:
    assert set(loaded.arrays) == set(saved.arrays)
    for path, values in saved.arrays.items():
        expected = np.asarray(values)
        assert loaded.arrays[path].dtype == expected.dtype, path
        assert loaded.arrays[path].shape == expected.shape, path
        assert loaded.arrays[path].tobytes() == expected.tobytes(), path
    expected_attrs = dict(saved.to_record()[1])
    meta = expected_attrs.pop(ARRAY_META_KEY)
    assert loaded.attrs == expected_attrs
    assert {path: item.to_dict() for path, item in loaded.meta.items()} == meta


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    return ResultsStore(tmp_path / "store", create=True, registry=KindRegistry())


def run_directory(store: ResultsStore, chip_id: str, run_id: str) -> Path:
    return Path(store.location) / chip_id / run_id


def edit_run_attributes(store: ResultsStore, chip_id: str, run_id: str, edit) -> None:
    document = run_directory(store, chip_id, run_id) / "zarr.json"
    content = json.loads(document.read_text())
    edit(content["attributes"])
    document.write_text(json.dumps(content))


# -- opening -------------------------------------------------------------------------------------


def test_opening_a_missing_directory_raises_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="create=True"):
        ResultsStore(tmp_path / "absent")
    assert not (tmp_path / "absent").exists()


def test_opening_an_empty_directory_without_create_raises(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="no results store"):
        ResultsStore(tmp_path)


def test_created_store_reopens_with_its_runs(tmp_path: Path) -> None:
    run_id = ResultsStore(tmp_path / "s", create=True).save(make_result())
    reopened = ResultsStore(tmp_path / "s")
    assert [info.run_id for info in reopened.history("chip-0")] == [run_id]


def test_create_refuses_a_directory_holding_other_data(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a store")
    with pytest.raises(StoreError, match="not a results store"):
        ResultsStore(tmp_path, create=True)


def test_a_zarr_hierarchy_that_is_not_a_results_store_is_refused(tmp_path: Path) -> None:
    zarr.create_group(zarr.storage.LocalStore(tmp_path / "other"), attributes={"x": 1})
    with pytest.raises(StoreError, match="not a results store"):
        ResultsStore(tmp_path / "other")


def test_a_read_only_store_refuses_to_save(tmp_path: Path) -> None:
    ResultsStore(tmp_path / "s", create=True).save(make_result())
    reader = ResultsStore(tmp_path / "s", read_only=True)
    assert reader.latest("chip-0") is not None
    with pytest.raises(StoreError, match="read-only"):
        reader.save(make_result())


def test_create_and_read_only_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="read_only"):
        ResultsStore(tmp_path / "s", create=True, read_only=True)


def test_an_fsspec_url_store_saves_and_loads() -> None:
    url = f"memory://results-{new_run_id()}"
    with pytest.raises(StoreNotFoundError):
        ResultsStore(url)
    saved = make_result()
    run_id = ResultsStore(url, create=True, registry=KindRegistry()).save(saved)
    assert_same_record(ResultsStore(url, registry=KindRegistry()).get("chip-0", run_id), saved)


# -- saving and loading ----------------------------------------------------------------------------


def test_a_saved_record_loads_bit_identically(store: ResultsStore) -> None:
    saved = make_result()
    run_id = store.save(saved)
    loaded = store.get("chip-0", run_id)
    assert isinstance(loaded, StoredRecord)
    assert loaded.run_id == run_id
    assert_same_record(loaded, saved)


def test_big_endian_arrays_load_with_the_same_values(store: ResultsStore) -> None:
    values = np.arange(512, dtype=">f8") / 7
    run_id = store.save(PlainResult({"x": values}, {"kind": "demo", "chip_id": "chip-0"}))
    loaded = store.get("chip-0", run_id).arrays["x"]
    assert loaded.dtype == np.float64
    np.testing.assert_array_equal(loaded, values)


def test_a_stored_record_can_be_saved_into_another_store(store: ResultsStore, tmp_path) -> None:
    saved = make_result()
    record = store.get("chip-0", store.save(saved))
    copy = ResultsStore(tmp_path / "copy", create=True, registry=KindRegistry())
    assert_same_record(copy.get("chip-0", copy.save(record)), saved)


def test_a_registered_kind_is_decoded_by_its_function(store: ResultsStore) -> None:
    registry = KindRegistry()
    registry.register("demo", lambda arrays, attrs: ("decoded", attrs["chip_id"], len(arrays)))
    run_id = store.save(make_result())
    decoding = ResultsStore(store.location, registry=registry)
    assert decoding.get("chip-0", run_id) == ("decoded", "chip-0", 10)
    assert isinstance(decoding.get("chip-0", run_id, decode=False), StoredRecord)


def test_register_kind_feeds_stores_without_a_registry_of_their_own(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "s", create=True)
    run_id = store.save(make_result(kind="test-default-registry"))
    register_kind("test-default-registry", lambda arrays, attrs: "decoded")
    try:
        assert store.get("chip-0", run_id) == "decoded"
    finally:
        unregister_kind("test-default-registry")
    assert isinstance(store.get("chip-0", run_id), StoredRecord)


def test_a_kind_cannot_be_claimed_by_a_second_decoder() -> None:
    registry = KindRegistry()
    registry.register("demo", StoredRecord)
    registry.register("demo", StoredRecord)  # the same decoder again is harmless
    with pytest.raises(ValueError, match="already registered"):
        registry.register("demo", lambda arrays, attrs: None)


def test_a_failing_decoder_raises_decode_error_naming_the_run(store: ResultsStore) -> None:
    def broken(arrays, attrs):
        raise KeyError("target")

    registry = KindRegistry()
    registry.register("demo", broken)
    run_id = store.save(make_result())
    with pytest.raises(DecodeError, match=run_id):
        ResultsStore(store.location, registry=registry).get("chip-0", run_id)


def test_run_ids_sort_in_save_order_and_are_unique(store: ResultsStore) -> None:
    run_ids = [store.save(make_result(seed=seed)) for seed in range(6)]
    assert sorted(run_ids) == run_ids
    assert len(set(run_ids)) == len(run_ids)


def test_run_ids_increase_even_when_the_clock_stands_still() -> None:
    clock = RunIdClock(lambda: datetime(2030, 1, 1, tzinfo=UTC))
    first, second = clock.next_id(), clock.next_id()
    assert first < second
    assert run_time(second) - run_time(first) >= timedelta(microseconds=1)


def test_history_lists_metadata_oldest_first(store: ResultsStore) -> None:
    run_ids = [store.save(make_result(target=name)) for name in ("a", "b", "c")]
    store.save(make_result("chip-1"))
    history = store.history("chip-0")
    assert [info.run_id for info in history] == run_ids
    assert [info.target_fingerprint for info in history] == ["fp-a", "fp-b", "fp-c"]
    assert all(info.kind == "demo" and info.schema_version == SCHEMA_VERSION for info in history)
    assert history[0].arrays["codes/cadc_ramp_offset"].shape == (4,)
    assert history[0].arrays["achieved/leak"].dtype == "float32"
    assert history[0].saved_at <= history[1].saved_at <= datetime.now(UTC)


def test_an_unknown_chip_has_no_history_and_no_latest(store: ResultsStore) -> None:
    assert store.history("chip-9") == []
    assert store.latest("chip-9") is None


def test_latest_returns_the_newest_run(store: ResultsStore) -> None:
    for seed in range(3):
        newest = store.save(make_result(seed=seed))
    assert store.latest("chip-0").run_id == newest


def test_latest_for_a_target_skips_runs_of_other_targets(store: ResultsStore) -> None:
    for_a = store.save(make_result(target="a"))
    store.save(make_result(target="b"))
    assert store.latest("chip-0", Target("a")).run_id == for_a
    assert store.latest("chip-0", "fp-a").run_id == for_a


def test_latest_for_a_target_never_stored_is_none(store: ResultsStore) -> None:
    store.save(make_result(target="a"))
    assert store.latest("chip-0", Target("z")) is None


def test_latest_filters_by_kind(store: ResultsStore) -> None:
    demo = store.save(make_result(kind="demo"))
    store.save(make_result(kind="drift-report"))
    assert store.latest("chip-0", kind="demo").run_id == demo
    assert store.latest("chip-0", kind="missing") is None


def test_latest_refuses_a_target_without_fingerprint(store: ResultsStore) -> None:
    with pytest.raises(ValueError, match="fingerprint"):
        store.latest("chip-0", target=42)


def test_as_of_returns_the_newest_run_saved_at_or_before_the_time(store: ResultsStore) -> None:
    run_ids = [store.save(make_result(seed=seed)) for seed in range(3)]
    times = [run_time(run_id) for run_id in run_ids]
    assert store.as_of("chip-0", times[1]).run_id == run_ids[1]
    assert store.as_of("chip-0", times[2] - timedelta(microseconds=1)).run_id == run_ids[1]
    assert store.as_of("chip-0", times[0] - timedelta(seconds=1)) is None
    assert store.as_of("chip-0", datetime.now(UTC) + timedelta(days=1)).run_id == run_ids[2]


def test_as_of_refuses_a_naive_time(store: ResultsStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        store.as_of("chip-0", datetime(2030, 1, 1))


def test_chips_lists_every_chip_with_a_run(store: ResultsStore) -> None:
    assert store.chips() == []
    for chip_id in ("chip-b", "chip-a", "chip-b"):
        store.save(make_result(chip_id))
    assert store.chips() == ["chip-a", "chip-b"]


def test_getting_an_absent_run_raises_run_not_found(store: ResultsStore) -> None:
    with pytest.raises(RunNotFoundError, match="chip-0"):
        store.get("chip-0", new_run_id())


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chip_id",
    [
        "",
        "../evil",
        "a/b",
        "a\\b",
        "a..b",
        ".hidden",
        "-dash",
        "a b",
        "x" * 65,
        "__zarr",
        "zarr.json",
        "chip\n",
        None,
    ],
)
def test_unsafe_chip_ids_are_value_errors_naming_the_pattern(store, chip_id) -> None:
    with pytest.raises(ValueError, match="must match") as error:
        store.save(make_result(chip_id))
    assert CHIP_ID_PATTERN in str(error.value)
    with pytest.raises(ValueError, match="must match"):
        store.history(chip_id)
    assert not any(Path(store.location).rglob("evil"))


@pytest.mark.parametrize("chip_id", ["a", "chip-0", "W61_3.a", "x" * 64])
def test_safe_chip_ids_are_accepted(store: ResultsStore, chip_id: str) -> None:
    run_id = store.save(make_result(chip_id))
    assert store.get(chip_id, run_id).chip_id == chip_id


@pytest.mark.parametrize("run_id", ["../../zarr.json", "latest", "20300101T000000.000000Z"])
def test_malformed_run_ids_are_value_errors(store: ResultsStore, run_id: str) -> None:
    with pytest.raises(ValueError, match="run_id"):
        store.get("chip-0", run_id)


@pytest.mark.parametrize(
    ("values", "dtype"),
    [(np.array(["a", "b"]), "<U1"), (np.array([{}, 1], dtype=object), "object")],
)
def test_non_numeric_arrays_are_refused(store: ResultsStore, values, dtype) -> None:
    result = PlainResult({"labels": values}, {"kind": "demo", "chip_id": "chip-0"})
    with pytest.raises(ValueError, match=f"'labels' has dtype {dtype}"):
        store.save(result)


@pytest.mark.parametrize(
    ("attrs", "offending"),
    [
        ({"runs": np.int64(3)}, "runs"),
        ({"pair": (1, 2)}, "pair"),
        ({"nested": {"value": float("nan")}}, "value"),
        ({"reasons": {3: "dead"}}, "key 3"),
        ({"cells": {"a", "b"}}, "cells"),
    ],
)
def test_attrs_that_are_not_plain_json_are_refused(store, attrs, offending) -> None:
    result = PlainResult({}, {"kind": "demo", "chip_id": "chip-0", **attrs})
    with pytest.raises(ValueError, match=offending):
        store.save(result)


def test_a_record_without_kind_is_refused(store: ResultsStore) -> None:
    with pytest.raises(ValueError, match="kind"):
        store.save(PlainResult({}, {"chip_id": "chip-0"}))


@pytest.mark.parametrize("path", ["a//b", "../x", "a/__b", "codes/v leak", ""])
def test_unsafe_array_paths_are_refused(store: ResultsStore, path: str) -> None:
    with pytest.raises(ValueError, match="array path"):
        store.save(PlainResult({path: np.zeros(3)}, {"kind": "demo", "chip_id": "chip-0"}))


def test_an_array_path_cannot_also_be_a_group(store: ResultsStore) -> None:
    arrays = {"codes": np.zeros(3), "codes/v_leak": np.zeros(3)}
    with pytest.raises(ValueError, match="both an array and a group"):
        store.save(PlainResult(arrays, {"kind": "demo", "chip_id": "chip-0"}))


def test_an_object_without_to_record_is_a_type_error(store: ResultsStore) -> None:
    with pytest.raises(TypeError, match="to_record"):
        store.save({"kind": "demo"})


# -- incomplete runs -------------------------------------------------------------------------


def test_a_run_without_its_metadata_document_is_invisible(store: ResultsStore) -> None:
    kept = store.save(make_result("chip-0"))
    partial = store.save(make_result("chip-1"))
    (run_directory(store, "chip-1", partial) / "zarr.json").unlink()
    assert store.chips() == ["chip-0"]
    assert store.history("chip-1") == []
    assert store.latest("chip-1") is None
    with pytest.raises(RunNotFoundError):
        store.get("chip-1", partial)
    assert store.latest("chip-0").run_id == kept


def test_an_unknown_schema_version_names_the_run_and_the_supported_ones(store) -> None:
    run_id = store.save(make_result())
    edit_run_attributes(store, "chip-0", run_id, lambda attrs: attrs.update(schema_version=99))
    with pytest.raises(UnsupportedSchemaError, match=run_id) as error:
        store.get("chip-0", run_id)
    assert "99" in str(error.value)
    assert "schema versions " + ", ".join(map(str, SUPPORTED_SCHEMA_VERSIONS)) in str(error.value)
    with pytest.warns(DamagedRunWarning, match=run_id):
        assert store.history("chip-0") == []


def test_a_run_copied_under_another_id_is_reported(store: ResultsStore) -> None:
    run_id = store.save(make_result())
    other_id = new_run_id()
    shutil.copytree(
        run_directory(store, "chip-0", run_id), run_directory(store, "chip-0", other_id)
    )
    with pytest.raises(CorruptRunError, match=other_id):
        store.get("chip-0", other_id)


# -- export ----------------------------------------------------------------------------------------


def test_json_export_has_arrays_as_lists_and_attrs_as_saved(store, tmp_path) -> None:
    saved = make_result()
    run_id = store.save(saved)
    text = store.export_json("chip-0", run_id, tmp_path / "run.json")
    assert (tmp_path / "run.json").read_text() == text
    exported = json.loads(text)
    assert exported["run_id"] == run_id
    assert exported["attrs"] == {k: v for k, v in saved.attrs.items() if k != ARRAY_META_KEY}
    assert exported["meta"]["achieved/tau_mem"]["units"] == "s"
    assert exported["arrays"]["codes/v_leak"] == saved.arrays["codes/v_leak"].tolist()
    assert exported["arrays"]["models/tau_mem/coefficients"][5] == pytest.approx(
        saved.arrays["models/tau_mem/coefficients"][5].tolist(), rel=0, abs=0
    )
    assert exported["dtypes"]["codes/cadc_channel_offset"] == "int8"


def test_json_export_is_standard_json_for_non_finite_values(store: ResultsStore) -> None:
    run_id = store.save(make_result())

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    exported = json.loads(store.export_json("chip-0", run_id), parse_constant=refuse)
    tau = exported["arrays"]["achieved/tau_mem"]
    assert tau[3] is None and tau[7] is None
    assert tau[11] == "Infinity"


def test_xarray_export_names_axes_by_the_stored_dims(store: ResultsStore) -> None:
    saved = make_result()
    dataset = store.to_xarray("chip-0", store.save(saved))
    assert isinstance(dataset, xarray.Dataset)
    assert dataset["codes.v_leak"].dims == ("neuron",)
    assert dataset["codes.cadc_ramp_offset"].dims == ("quadrant",)
    assert dataset["models.tau_mem.coefficients"].dims == ("neuron", "coefficient")
    assert dataset["codes.v_leak"].attrs["path"] == "codes/v_leak"
    assert dataset["achieved.tau_mem"].attrs["units"] == "s"
    assert dataset["achieved.leak"].attrs["long_name"] == "leak potential, achieved"
    np.testing.assert_array_equal(dataset["achieved.leak"].values, saved.arrays["achieved/leak"])
    np.testing.assert_array_equal(dataset["neuron"].values, np.arange(512))


def test_xarray_export_flattens_nested_attrs_and_writes_netcdf(store, tmp_path) -> None:
    saved = make_result()
    dataset = store.to_xarray("chip-0", store.save(saved))
    assert dataset.attrs["chip_id"] == "chip-0"
    assert dataset.attrs["provenance.seed"] == 0
    assert dataset.attrs["provenance.ok"] == "true"  # netCDF has no booleans
    assert dataset.attrs["target.tau_mem"] == 10e-6
    dataset.to_netcdf(tmp_path / "run.nc", engine="h5netcdf")
    with xarray.open_dataset(tmp_path / "run.nc", engine="h5netcdf") as reloaded:
        np.testing.assert_array_equal(reloaded["counts"].values, saved.arrays["counts"])
        np.testing.assert_array_equal(reloaded.attrs["target.per_neuron"], [1.5, 2.5])
        assert reloaded["achieved.tau_mem"].attrs["units"] == "s"
        assert reloaded.attrs["reasons.3"] == "tau_mem: code at upper bound 1022"
