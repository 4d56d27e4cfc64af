"""`calib` as a user drives it: one real calibration of a simulated chip, then every reading
command on its store (show, history, export, check, report) and the installed script itself."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from result_factory import make_result
from typer.testing import CliRunner

from calib.cli import app
from calib.core.results import NeuronResult
from results_store import ResultsStore

CHIP = "cli-chip-3"
TARGET_FILE = "leak = 85\ntau_mem = 12.0   # µs\n"
AGED_HOURS = "2000"


@dataclass(frozen=True)
class Calibrated:
    store: Path
    html: Path
    output: Any
    """The CliRunner result of the calibrate command."""

    @property
    def run_id(self) -> str:
        (info,) = [
            info for info in ResultsStore(self.store).history(CHIP) if info.kind == "neuron_result"
        ]  # the checks of this module add records
        return info.run_id

    def result(self) -> NeuronResult:
        return ResultsStore(self.store).get(CHIP, self.run_id)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory: pytest.TempPathFactory) -> Calibrated:
    """The one calibration of this module: a TOML target with a flag on top, and --html."""
    root = tmp_path_factory.mktemp("cli")
    target = root / "target.toml"
    target.write_text(TARGET_FILE, encoding="utf-8")
    store, html = root / "store", root / "calibrate.html"
    output = invoke(
        "calibrate",
        "--chip",
        CHIP,
        "--store",
        str(store),
        "--target",
        str(target),
        "--threshold",
        "130",
        "--max-failed",
        "1",
        "--html",
        str(html),
    )
    return Calibrated(store, html, output)


def store_args(calibrated: Calibrated) -> list[str]:
    return ["--store", str(calibrated.store)]


# -- calibrate ----------------------------------------------------------------------------------


def test_calibrate_stores_one_run_for_the_file_and_flag_target(calibrated: Calibrated) -> None:
    assert calibrated.output.exit_code == 0, calibrated.output.output
    result = calibrated.result()
    assert result.chip_id == CHIP
    assert result.target.leak == 85.0
    assert result.target.tau_mem == pytest.approx(12e-6)
    assert result.target.threshold == 130.0
    assert f"stored as run {calibrated.run_id}" in calibrated.output.stdout


def test_calibrate_shows_progress_over_every_step(calibrated: Calibrated) -> None:
    steps = len(calibrated.result().provenance.steps)
    assert steps > 5
    match = re.search(r"(\d+)/(\d+) steps", calibrated.output.stderr)
    assert match is not None, calibrated.output.stderr
    assert match.group(1) == match.group(2)


def test_calibrate_prints_a_summary_row_per_quantity(calibrated: Calibrated) -> None:
    result = calibrated.result()
    rows = {
        line.split()[0]: line.split()
        for line in calibrated.output.stdout.splitlines()
        if line.strip() and line.split()[0] in result.achieved
    }
    assert set(rows) == set(result.achieved)
    assert rows["tau_mem"][2] == "12"  # target in µs
    assert rows["leak"][2] == "85"
    failed = int(np.sum(~result.success))
    assert f"{512 - failed}/512" in calibrated.output.stdout


def test_calibrate_records_the_simulated_chip_and_target_source(calibrated: Calibrated) -> None:
    extra = calibrated.result().provenance.extra
    assert extra["simulation"]["backend"] == "simulated"
    assert extra["simulation"]["drift_hours"] == 0.0
    assert extra["target_source"].endswith("target.toml + flags")


def test_calibrate_writes_an_html_report(calibrated: Calibrated) -> None:
    text = calibrated.html.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 3
    assert "<table" in text


# -- show and history ---------------------------------------------------------------------------


def test_show_prints_the_newest_run_and_its_summary(calibrated: Calibrated) -> None:
    shown = invoke("show", CHIP, *store_args(calibrated))
    assert shown.exit_code == 0, shown.output
    assert calibrated.run_id in shown.stdout
    assert calibrated.result().target.fingerprint() in shown.stdout
    for quantity in calibrated.result().achieved:
        assert quantity in shown.stdout


def test_show_a_given_run(calibrated: Calibrated) -> None:
    shown = invoke("show", CHIP, "--run", calibrated.run_id, *store_args(calibrated))
    assert shown.exit_code == 0, shown.output
    assert calibrated.run_id in shown.stdout


def test_history_has_a_row_per_run_with_target_success_and_hardware_time(
    calibrated: Calibrated,
) -> None:
    listed = invoke("history", CHIP, *store_args(calibrated))
    assert listed.exit_code == 0, listed.output
    result = calibrated.result()
    (row,) = [line for line in listed.stdout.splitlines() if calibrated.run_id in line]
    assert result.target.fingerprint() in row
    assert f"{100 * result.success.mean():.1f} %" in row
    hardware = result.provenance.device_stats["hardware_time"]
    assert re.search(r"\d", row.split("%")[1]), row
    assert hardware > 0


# -- export -------------------------------------------------------------------------------------


def test_export_json_to_stdout_holds_the_stored_arrays(calibrated: Calibrated) -> None:
    exported = invoke("export", CHIP, "--format", "json", *store_args(calibrated))
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.stdout)
    result = calibrated.result()
    assert data["run_id"] == calibrated.run_id
    assert data["arrays"]["success"] == result.success.tolist()
    assert data["attrs"]["target_fingerprint"] == result.target.fingerprint()


def test_export_json_to_a_file(calibrated: Calibrated, tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    exported = invoke("export", CHIP, "-f", "json", "-o", str(path), *store_args(calibrated))
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == ""
    assert json.loads(path.read_text(encoding="utf-8"))["run_id"] == calibrated.run_id


def test_export_netcdf_reads_back_with_xarray(calibrated: Calibrated, tmp_path: Path) -> None:
    path = tmp_path / "run.nc"
    exported = invoke(
        "export",
        CHIP,
        "--format",
        "netcdf",
        "--output",
        str(path),
        "--run",
        calibrated.run_id,
        *store_args(calibrated),
    )
    assert exported.exit_code == 0, exported.output
    result = calibrated.result()
    with xr.open_dataset(path, engine="h5netcdf") as dataset:
        assert dataset.sizes["neuron"] == 512
        tau = next(
            dataset[name] for name in dataset.data_vars if "achieved" in name and "tau_mem" in name
        )
        np.testing.assert_array_equal(tau.values, result.achieved["tau_mem"])


# -- check --------------------------------------------------------------------------------------


def test_check_of_the_fresh_chip_holds_and_exits_0(calibrated: Calibrated) -> None:
    checked = invoke("check", CHIP, *store_args(calibrated))
    assert checked.exit_code == 0, checked.output
    assert "holds" in checked.stdout
    assert "aged 0 h" in checked.stdout


def test_check_of_the_aged_chip_finds_drift_and_exits_1(calibrated: Calibrated) -> None:
    checked = invoke("check", CHIP, "--drift-hours", AGED_HOURS, *store_args(calibrated))
    assert checked.exit_code == 1, checked.output
    assert "drifted" in checked.stdout
    assert "STALE" in checked.stdout
    assert f"aged {AGED_HOURS} h" in checked.stdout


def test_a_check_is_stored_and_listed_by_history(calibrated: Calibrated, tmp_path: Path) -> None:
    store = tmp_path / "store"
    shutil.copytree(calibrated.store, store)
    before = len(ResultsStore(store).history(CHIP))
    checked = invoke("check", CHIP, "--drift-hours", AGED_HOURS, "--store", str(store))
    assert checked.exit_code == 1, checked.output
    listed = invoke("history", CHIP, "--json", "--store", str(store))
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)["runs"]
    assert len(runs) == before + 1
    check = runs[-1]
    assert check["kind"] == "check"
    assert f"stored as check {check['run_id']}" in checked.stdout
    assert check["holds"] is False
    leak = check["quantities"]["leak"]
    assert {"median_shift", "spread", "out_of_tolerance"} <= set(leak)
    assert leak["spread"] > 0


def test_check_json_is_one_document_and_its_hint_keeps_the_store(calibrated: Calibrated) -> None:
    checked = invoke(
        "check", CHIP, "--drift-hours", AGED_HOURS, "--no-save", "--json", *store_args(calibrated)
    )
    assert checked.exit_code == 1, checked.output
    document = json.loads(checked.stdout)
    assert document["holds"] is False and document["stale"]
    assert document["saved_as"] is None
    assert document["quantities"]["leak"]["unit"] == "CADC LSB"
    assert f"--store {calibrated.store}" in document["recalibrate"]
    text = invoke("check", CHIP, "--drift-hours", AGED_HOURS, "--no-save", *store_args(calibrated))
    assert f"--store {calibrated.store}" in " ".join(text.stdout.split())


# -- report -------------------------------------------------------------------------------------


def test_report_prints_the_summary_and_writes_html_with_plots_and_tables(
    calibrated: Calibrated, tmp_path: Path
) -> None:
    path = tmp_path / "report.html"
    reported = invoke("report", CHIP, "--html", str(path), *store_args(calibrated))
    assert reported.exit_code == 0, reported.output
    assert "σ after" in reported.stdout
    assert f"HTML report: {path}" in reported.stdout
    text = path.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") >= 3
    assert text.count("<table") >= 2
    for quantity in calibrated.result().achieved:
        assert quantity in text
    assert CHIP in text


def test_report_plots_drift_over_the_chip_history_of_the_same_target(
    calibrated: Calibrated, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    shutil.copytree(calibrated.store, store)
    results = ResultsStore(store)
    later = results.save(make_result(chip_id=CHIP, target=calibrated.result().target))
    results.save(make_result(chip_id=CHIP))  # another target: not part of this drift
    path = tmp_path / "report.html"
    reported = invoke("report", CHIP, "--run", later, "--html", str(path), "--store", str(store))
    assert reported.exit_code == 0, reported.output
    text = path.read_text(encoding="utf-8")
    assert "Drift over time" in text
    assert "2 calibrations" in text  # the calibrated run and the later one of the same target


# -- the installed script -----------------------------------------------------------------------


def run_calib(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("calib")
    assert script.is_file(), f"console script missing: {script} (is the project installed?)"
    env = {key: value for key, value in os.environ.items() if key != "CALIB_STORE"}
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_installed_script_help_lists_the_commands() -> None:
    shown = run_calib("--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("calibrate", "show", "history", "export", "check", "report"):
        assert command in shown.stdout


def test_installed_script_reads_the_store_like_the_app(calibrated: Calibrated) -> None:
    listed = run_calib("history", CHIP, "--store", str(calibrated.store))
    assert listed.returncode == 0, listed.stderr
    assert calibrated.run_id in listed.stdout


def test_calibrate_help_says_times_are_microseconds() -> None:
    shown = invoke("calibrate", "--help")
    assert shown.exit_code == 0
    text = " ".join(shown.stdout.split())
    assert "microseconds (µs)" in text
    assert "CADC LSB" in text


def test_chips_lists_the_chip_with_its_newest_run(calibrated: Calibrated) -> None:
    listed = invoke("chips", *store_args(calibrated))
    assert listed.exit_code == 0, listed.output
    (row,) = [line for line in listed.stdout.splitlines() if CHIP in line]
    assert calibrated.run_id in row


def test_targets_lists_every_field_with_unit_default_and_range() -> None:
    listed = invoke("targets")
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines() if line.strip()}
    assert rows["tau_mem"][1:4] == ["µs", "10", "0.5..60"]
    assert rows["leak"][1:5] == ["CADC", "LSB", "80", "50..160"]
    assert rows["refractory_time"][1:4] == ["µs", "2", "0.04..32"]
    assert rows["membrane_capacitance"][1:4] == ["units", "63", "0..63"]
