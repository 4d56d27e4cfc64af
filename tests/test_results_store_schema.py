"""What a stored run says about itself: array metadata, schema 1 runs still readable, plain
zarr and xarray access, histories as datasets, and decoding that does not depend on imports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray
import zarr
from result_factory import make_result as make_neuron_result
from test_results_store import PlainResult

from results_store import (
    ARRAY_META_KEY,
    CorruptRunError,
    KindRegistry,
    ResultsStore,
    StoredRecord,
)
from results_store.records import array_digest
from results_store.runfile import RUN_FILE_NAME

DATA = Path(__file__).parent / "data"
V1_STORE = DATA / "store-v1"
V1_EXPECTED = json.loads((DATA / "store-v1-expected.json").read_text())
V1_CHIP = "v1-chip-0"
CHIP = "w62f3-chip-07"


@pytest.fixture
def v1_copy(tmp_path: Path) -> Path:
    """A writable copy of the checked-in store written with schema version 1."""
    return Path(shutil.copytree(V1_STORE, tmp_path / "store-v1"))


# -- schema 1 runs ---------------------------------------------------------------------------------


def test_schema_1_runs_load_with_the_values_they_were_saved_with() -> None:
    store = ResultsStore(V1_STORE, read_only=True, registry=KindRegistry(entry_points=False))
    history = store.history(V1_CHIP)
    assert [info.run_id for info in history] == sorted(V1_EXPECTED)
    assert {info.schema_version for info in history} == {1}
    for run_id, expected in V1_EXPECTED.items():
        record = store.get(V1_CHIP, run_id)
        assert isinstance(record, StoredRecord)
        assert record.attrs == expected["attrs"]
        assert {
            path: {
                "dtype": values.dtype.name,
                "shape": list(values.shape),
                "sha256": array_digest(values),
            }
            for path, values in record.arrays.items()
        } == expected["arrays"]


def test_a_schema_1_neuron_result_decodes_and_exports_with_named_axes() -> None:
    store = ResultsStore(V1_STORE, read_only=True)
    result = store.latest(V1_CHIP)
    assert type(result).__name__ == "NeuronResult"
    assert result.success.shape == (512,)
    dataset = store.to_xarray(V1_CHIP, max(V1_EXPECTED))
    assert dataset["achieved.leak"].dims == ("neuron",)
    assert dataset["codes.cadc_ramp_offset"].dims == ("quadrant",)


def test_a_store_holds_schema_1_and_schema_2_runs_side_by_side(v1_copy: Path) -> None:
    store = ResultsStore(v1_copy)
    new_run = store.save(make_neuron_result(chip_id=V1_CHIP, seed=5))
    history = store.history(V1_CHIP)
    assert [info.schema_version for info in history] == [1, 1, 2]
    assert store.latest(V1_CHIP).provenance.chip_id == V1_CHIP
    assert history[-1].run_id == new_run
    assert store.verify().ok


def test_a_schema_1_array_without_checksum_entry_is_refused(v1_copy: Path) -> None:
    run_id = min(V1_EXPECTED)
    document = v1_copy / V1_CHIP / run_id / "zarr.json"
    content = json.loads(document.read_text())
    del content["attributes"]["manifest"]["achieved/leak"]
    document.write_text(json.dumps(content))
    with pytest.raises(CorruptRunError, match=rf"{run_id}.*achieved/leak.*no entry"):
        ResultsStore(v1_copy).get(V1_CHIP, run_id)


def test_a_missing_schema_1_array_is_refused(v1_copy: Path) -> None:
    run_id = min(V1_EXPECTED)
    shutil.rmtree(v1_copy / V1_CHIP / run_id / "achieved" / "leak")
    with pytest.raises(CorruptRunError, match=rf"{run_id}.*achieved/leak.*missing"):
        ResultsStore(v1_copy).get(V1_CHIP, run_id)


def test_a_schema_1_array_with_changed_values_is_refused(v1_copy: Path) -> None:
    run_id = min(V1_EXPECTED)
    run = zarr.storage.LocalStore(v1_copy / V1_CHIP / run_id)
    zarr.create_array(run, name="achieved/leak", data=np.zeros(512), overwrite=True)
    with pytest.raises(CorruptRunError, match=rf"{run_id}.*achieved/leak.*checksum"):
        ResultsStore(v1_copy).get(V1_CHIP, run_id)


# -- the array metadata of a record ----------------------------------------------------------------


def save_with_meta(tmp_path: Path, meta: object, arrays: dict | None = None) -> None:
    arrays = arrays or {"a": np.zeros(512), "b": np.zeros(4)}
    attrs = {"kind": "demo", "chip_id": "chip-0", ARRAY_META_KEY: meta}
    store = ResultsStore(tmp_path / "s", create=True)

    class Record:
        def to_record(self):
            return arrays, attrs

    store.save(Record())


GOOD = {"dims": ["neuron"], "units": "s", "long_name": "a"}


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        (None, "no entry for array 'a'"),
        ({"a": GOOD}, "no entry for array 'b'"),
        ({"a": GOOD, "b": GOOD, "c": GOOD}, "'c', which is no array"),
        ({"a": GOOD, "b": {**GOOD, "dims": ["quadrant", "x"]}}, r"\['b'\]\['dims'\].*1 axes"),
        ({"a": GOOD, "b": GOOD}, "dimension 'neuron' has length 4 in array 'b' but 512"),
        ({"a": GOOD, "b": {**GOOD, "dims": ["quad rant"]}}, "dims"),
        ({"a": GOOD, "b": {"dims": ["quadrant"], "units": 1, "long_name": "b"}}, "'units'"),
        (
            {"a": GOOD, "b": {"dims": ["quadrant"], "units": "1", "long_name": "\x1b[2J"}},
            "long_name",
        ),
        ({"a": GOOD, "b": {"dims": ["quadrant"], "units": "1"}}, "exactly the keys"),
        ([GOOD], "must map every array path"),
    ],
)
def test_array_metadata_is_checked_before_anything_is_written(tmp_path, meta, message) -> None:
    with pytest.raises(ValueError, match=message):
        save_with_meta(tmp_path, meta)
    assert not (tmp_path / "s" / "chip-0").exists()


def test_a_neuron_result_describes_every_array(tmp_path: Path) -> None:
    result = make_neuron_result(chip_id=CHIP)
    arrays, attrs = result.to_record()
    meta = attrs[ARRAY_META_KEY]
    assert set(meta) == set(arrays)
    assert meta["achieved/tau_mem"] == {
        "dims": ["neuron"],
        "units": "s",
        "long_name": "membrane time constant, achieved",
    }
    assert meta["achieved/leak"]["units"] == "CADC LSB"
    assert meta["codes/cadc_ramp_offset"]["dims"] == ["quadrant"]
    assert meta["codes/v_leak"]["units"] == "1"


# -- plain zarr and xarray -------------------------------------------------------------------------


def test_a_run_opens_with_plain_zarr_and_xarray_with_dims_and_units(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "s", create=True)
    result = make_neuron_result(chip_id=CHIP)
    run_id = store.save(result)
    run_file = tmp_path / "s" / CHIP / run_id / RUN_FILE_NAME
    assert sorted(path.name for path in run_file.parent.iterdir()) == [RUN_FILE_NAME, "zarr.json"]
    with zarr.storage.ZipStore(run_file, mode="r") as zip_store:
        root = zarr.open_group(zip_store, mode="r")
        assert root.attrs["target"]["tau_mem"] == result.target.tau_mem  # structured, not text
        assert root.attrs["provenance"]["device_stats"]["runs"] == 3120.0
        achieved = xarray.open_zarr(zip_store, group="achieved")
        assert achieved["tau_mem"].dims == ("neuron",)
        assert achieved["tau_mem"].attrs["units"] == "s"
        assert achieved["leak"].attrs["units"] == "CADC LSB"
        np.testing.assert_array_equal(achieved["leak"].values, result.achieved["leak"])
        codes = xarray.open_zarr(zip_store, group="codes")
        assert codes["cadc_ramp_offset"].dims == ("quadrant",)
        assert codes["v_leak"].attrs["units"] == "1"


def test_latest_decodes_a_neuron_result_when_only_the_store_was_imported(tmp_path) -> None:
    ResultsStore(tmp_path / "s", create=True).save(make_neuron_result(chip_id=CHIP))
    script = (
        "import sys\n"
        "from results_store import ResultsStore\n"
        "assert 'calib' not in sys.modules\n"
        f"result = ResultsStore({str(tmp_path / 's')!r}).latest({CHIP!r})\n"
        "print(type(result).__module__, type(result).__name__)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert output.stdout.split() == ["calib.core.results", "NeuronResult"]


def test_a_registry_without_entry_points_returns_stored_records(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "s", create=True, registry=KindRegistry(entry_points=False))
    store.save(make_neuron_result(chip_id=CHIP))
    assert isinstance(store.latest(CHIP), StoredRecord)


# -- histories as datasets -------------------------------------------------------------------------


@pytest.fixture
def history_store(tmp_path: Path) -> tuple[ResultsStore, list[str]]:
    store = ResultsStore(tmp_path / "s", create=True)
    runs = [
        store.save(make_neuron_result(chip_id=CHIP, seed=seed, achieved_shift={"leak": 0.5 * seed}))
        for seed in range(3)
    ]
    runs.append(store.save(make_neuron_result(chip_id=CHIP, seed=3, quantities=["leak"])))
    store.save(PlainResult({"x": np.zeros(3)}, {"kind": "other", "chip_id": CHIP}))
    return store, runs


def test_history_dataset_has_runs_by_neurons_in_time_order(history_store) -> None:
    store, runs = history_store
    dataset = store.history_dataset(CHIP, kind="neuron_result")
    assert list(dataset["run"].values) == runs
    assert dataset["achieved.leak"].dims == ("run", "neuron")
    assert dataset["achieved.leak"].attrs["units"] == "CADC LSB"
    assert dataset.sizes == {"run": 4, "neuron": 512, "quadrant": 4}
    assert np.all(np.diff(dataset["time"].values) > np.timedelta64(0))
    assert dataset["success"].dtype == bool
    medians = dataset["achieved.leak"].median("neuron").values
    assert medians[1] - medians[0] == pytest.approx(0.5, abs=0.2)
    assert np.isnan(dataset["achieved.tau_mem"].values[3]).all()  # run 3 measured leak only
    assert dataset["target.tau_mem"].attrs["units"] == "s"
    np.testing.assert_allclose(dataset["target.leak"].values, 80.0)
    assert "x" not in dataset


def test_history_dataset_of_every_kind_fills_what_a_run_lacks_with_nan(history_store):
    store, _ = history_store
    dataset = store.history_dataset(CHIP)
    assert dataset.sizes["run"] == 5
    assert dataset["x"].dims == ("run", "x_0")
    assert np.isnan(dataset["x"].values[:4]).all() and (dataset["x"].values[4] == 0).all()
    assert list(dataset["kind"].values) == ["neuron_result"] * 4 + ["other"]


@pytest.mark.parametrize("export_format", ["netcdf", "zarr"])
def test_history_dataset_exports_and_reloads(history_store, tmp_path, export_format) -> None:
    store, runs = history_store
    path = store.export_history(
        CHIP, tmp_path / f"history.{export_format}", format=export_format, kind="neuron_result"
    )
    if export_format == "netcdf":
        reloaded = xarray.open_dataset(path, engine="h5netcdf")
    else:
        reloaded = xarray.open_zarr(path)
    with reloaded:
        assert list(reloaded["run"].values) == runs
        assert reloaded["achieved.tau_mem"].attrs["units"] == "s"
        np.testing.assert_array_equal(
            reloaded["achieved.leak"].values,
            store.history_dataset(CHIP, kind="neuron_result")["achieved.leak"].values,
        )


def test_export_history_refuses_an_unknown_format(history_store, tmp_path) -> None:
    store, _ = history_store
    with pytest.raises(ValueError, match="format"):
        store.export_history(CHIP, tmp_path / "h", format="csv")  # type: ignore[arg-type]
