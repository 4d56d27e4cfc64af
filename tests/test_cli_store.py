"""`calib store verify`, `calib store repair` and `calib export CHIP --history`."""

from __future__ import annotations

from pathlib import Path

import pytest
import xarray as xr
from result_factory import make_result
from store_damage import edit_document
from typer.testing import CliRunner

from calib.cli import app
from results_store import ResultsStore

CHIP = "cli-store-chip-1"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    store = ResultsStore(tmp_path / "store", create=True)
    for seed in range(3):
        store.save(make_result(chip_id=CHIP, seed=seed))
    return store


def test_verify_of_an_intact_store_exits_0(store: ResultsStore) -> None:
    result = invoke("store", "verify", "--store", store.location)
    assert result.exit_code == 0, result.output
    assert "3 runs checked" in result.output and "0 damaged" in result.output


def test_verify_names_a_damaged_run_and_exits_1_and_repair_quarantines_it(store) -> None:
    damaged = store.history(CHIP)[1].run_id
    edit_document(store, CHIP, damaged, lambda attrs: attrs["record"]["failures"].clear())
    result = invoke("store", "verify", "--store", store.location)
    assert result.exit_code == 1
    assert f"damaged  {CHIP}/{damaged}" in result.output
    repaired = invoke("store", "repair", "--store", store.location)
    assert repaired.exit_code == 0, repaired.output
    assert f"quarantined  {CHIP}/{damaged}" in repaired.output
    assert invoke("store", "verify", "--store", store.location).exit_code == 0
    shown = invoke("history", CHIP, "--store", store.location)
    assert shown.exit_code == 0 and damaged not in shown.output


@pytest.mark.parametrize("args", [["--older-than", "-1"], ["--older-than", "1e9"]])
def test_repair_refuses_ages_out_of_range(store, args) -> None:
    result = invoke("store", "repair", "--store", store.location, *args)
    assert result.exit_code == 2
    assert "--older-than" in result.output


def test_verify_of_a_missing_store_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("store", "verify", "--store", str(tmp_path / "absent"))
    assert result.exit_code == 2
    assert "no results store" in result.output


@pytest.mark.parametrize(("export_format", "suffix"), [("netcdf", "nc"), ("zarr", "zarr")])
def test_export_history_writes_a_dataset_of_runs_by_neurons(
    store, tmp_path, export_format, suffix
) -> None:
    output = tmp_path / f"history.{suffix}"
    result = invoke(
        "export",
        CHIP,
        "--history",
        "--format",
        export_format,
        "--output",
        str(output),
        "--store",
        store.location,
    )
    assert result.exit_code == 0, result.output
    opened = (
        xr.open_dataset(output, engine="h5netcdf")
        if export_format == "netcdf"
        else xr.open_zarr(output)
    )
    with opened as dataset:
        assert dataset["achieved.tau_mem"].dims == ("run", "neuron")
        assert dataset.sizes["run"] == 3
        assert dataset["achieved.tau_mem"].attrs["units"] == "s"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--history", "--format", "json"], "--history needs --format netcdf or zarr"),
        (["--format", "zarr"], "add --history"),
        (["--history", "--format", "netcdf", "--run", "x"], "no --run"),
    ],
)
def test_export_history_usage_errors(store, args, message) -> None:
    result = invoke("export", CHIP, *args, "--store", store.location)
    assert result.exit_code == 2
    assert message in result.output


def test_export_history_refuses_an_existing_zarr_output(store, tmp_path) -> None:
    (tmp_path / "h.zarr").mkdir()
    result = invoke(
        "export",
        CHIP,
        "--history",
        "--format",
        "zarr",
        "--output",
        str(tmp_path / "h.zarr"),
        "--store",
        store.location,
    )
    assert result.exit_code == 2 and "exists" in result.output
