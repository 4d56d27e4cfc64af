"""`calib calibrate --mode`, `--embedded` and `--device`: the options that pick how and where a
chip is calibrated, refused before any device run when they contradict each other."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from remote_helpers import served
from typer.testing import CliRunner

from calib.cli import app
from device_model import SimulatedChip
from results_store import ResultsStore


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "mac", "--leak", "90"], "--leak set a neuron target; --mode mac"),
        (["--mac-baseline", "100"], "--mac-baseline apply only with --mode mac"),
        (["--embedded", "--mode", "mac"], "--embedded is --mode embedded"),
        (["--mode", "mac", "--mac-baseline", "500"], "--mode mac: baseline"),
        (["--device", "127.0.0.1:9", "--mismatch-scale", "2"], "describe a simulated chip"),
        (["--token-file", "token.txt"], "--token-file applies only with --device"),
        (["--mode", "mac", "--html", "report.html"], "--html: the HTML report covers neuron"),
    ],
)
def test_contradicting_modes_and_devices_are_refused_before_anything_is_made(
    tmp_path: Path, args: list[str], message: str
) -> None:
    store = tmp_path / "store"
    result = invoke("calibrate", "--chip", "mode-0", "--store", str(store), *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not store.exists()


@pytest.mark.slow
def test_a_served_chip_is_calibrated_and_checked_over_the_network(tmp_path: Path) -> None:
    store = tmp_path / "store"
    with served(SimulatedChip("served-0")) as server:
        calibrated = invoke(
            "calibrate", "--chip", "served-0", "--store", str(store), "--device", server.address
        )
        assert calibrated.exit_code == 0, calibrated.output
        checked = invoke("check", "served-0", "--store", str(store), "--device", server.address)
        assert checked.exit_code == 0, checked.output
    (run,) = [
        info for info in ResultsStore(store).history("served-0") if info.kind == "neuron_result"
    ]
    stored = ResultsStore(store).get("served-0", run.run_id)
    assert stored.provenance.extra["device"] == {"backend": "remote", "address": server.address}
    assert "simulation" not in stored.provenance.extra


@pytest.mark.slow
def test_mac_mode_calibrates_stores_and_shows_a_mac_result(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = invoke(
        "calibrate",
        "--chip",
        "mode-mac-0",
        "--store",
        str(store),
        "--mode",
        "mac",
        "--max-failed",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    (run,) = ResultsStore(store).history("mode-mac-0")
    assert run.kind == "mac_result"
    shown = invoke("show", "mode-mac-0", "--store", str(store))
    assert shown.exit_code == 0 and "MAC target" in shown.output
    history = invoke("history", "mode-mac-0", "--store", str(store))
    assert history.exit_code == 0 and "MAC calibration" in history.output
    exported = invoke(
        "export", "mode-mac-0", "--store", str(store), "--run", run.run_id, "--format", "json"
    )
    assert exported.exit_code == 0 and '"mac_result"' in exported.output
    reported = invoke("report", "mode-mac-0", "--store", str(store), "--run", run.run_id)
    assert reported.exit_code == 0 and "MAC target" in reported.output


@pytest.mark.slow
def test_embedded_mode_is_recorded_in_the_provenance(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = invoke("calibrate", "--chip", "mode-emb-0", "--store", str(store), "--embedded")
    assert result.exit_code == 0, result.output
    (run,) = ResultsStore(store).history("mode-emb-0")
    stored = ResultsStore(store).get("mode-emb-0", run.run_id)
    assert stored.provenance.extra["mode"] == "embedded"
