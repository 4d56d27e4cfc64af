"""`--json` documents, stored check records, and tables that fit 100 columns (synthetic
results in a temporary store; no chip is calibrated here)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from result_factory import make_result
from rich.console import Console
from typer.testing import CliRunner

from calib.cli import app
from calib.cli.fleet_commands import nightly_table
from calib.core.checks import CHECK_KIND, CheckRecord, QuantityDrift
from calib.core.results import NeuronResult
from calib.operations.fleet import ChipOutcome
from results_store import ResultsStore

CHIP = "json-chip-1"


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "100"})


@pytest.fixture
def store(tmp_path: Path) -> tuple[Path, NeuronResult, str]:
    location = tmp_path / "store"
    results = ResultsStore(location, create=True)
    result = make_result(chip_id=CHIP, failures=5)
    return location, result, results.save(result)


def a_check(result: NeuronResult, run_id: str, shift: float = 0.4) -> CheckRecord:
    measured = np.asarray(result.achieved["leak"]) + shift
    return CheckRecord(
        chip_id=result.chip_id,
        checked_run=run_id,
        target_fingerprint=result.target.fingerprint(),
        created="2025-03-02T02:00:00+00:00",
        runs=7,
        quantities={
            "leak": QuantityDrift(
                median_shift=shift,
                spread=0.9,
                out_of_tolerance=0.02,
                tolerance=2.0,
                checked_neurons=500,
                stale=False,
            ),
            "tau_mem": QuantityDrift(
                median_shift=1e-7,
                spread=float("nan"),
                out_of_tolerance=0.5,
                tolerance=3e-7,
                checked_neurons=32,
                stale=True,
            ),
        },
        measured={"leak": measured},
        extra={"checked_by": "test"},
    )


def test_show_json_is_one_document_with_the_summary_in_stored_units(store) -> None:
    location, result, run_id = store
    shown = invoke("show", CHIP, "--json", "--store", str(location))
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert document["run_id"] == run_id
    assert document["successful_neurons"] == int(result.success.sum())
    tau = document["quantities"]["tau_mem"]
    assert tau["unit"] == "s"
    good = result.achieved["tau_mem"][result.success]
    assert tau["achieved_median"] == pytest.approx(float(np.median(good)))
    assert sum(len(group["neurons"]) for group in document["failures"]) >= 5


def test_a_check_record_round_trips_through_the_store(store) -> None:
    location, result, run_id = store
    results = ResultsStore(location)
    check_id = results.save(a_check(result, run_id))
    loaded = results.get(CHIP, check_id)
    assert isinstance(loaded, CheckRecord)
    assert loaded.checked_run == run_id
    assert loaded.quantities["leak"].spread == 0.9
    assert np.isnan(loaded.quantities["tau_mem"].spread)
    assert loaded.stale == ["tau_mem"] and not loaded.holds
    np.testing.assert_array_equal(loaded.measured["leak"], result.achieved["leak"] + 0.4)


def test_the_newest_calibration_for_a_target_is_never_a_check(store) -> None:
    location, result, run_id = store
    results = ResultsStore(location)
    results.save(a_check(result, run_id))
    newest = results.latest(CHIP, result.target)
    assert isinstance(newest, NeuronResult)
    assert results.history(CHIP)[-1].kind == CHECK_KIND


def test_history_lists_calibrations_and_checks(store) -> None:
    location, result, run_id = store
    check_id = ResultsStore(location).save(a_check(result, run_id))
    listed = invoke("history", CHIP, "--json", "--store", str(location))
    assert listed.exit_code == 0, listed.output
    runs = json.loads(listed.stdout)["runs"]
    assert [run["kind"] for run in runs] == ["calibration", "check"]
    assert runs[0]["success_fraction"] == pytest.approx(float(result.success.mean()))
    assert runs[1]["run_id"] == check_id
    assert runs[1]["holds"] is False
    assert runs[1]["quantities"]["leak"]["median_shift"] == pytest.approx(0.4)
    table = invoke("history", CHIP, "--store", str(location))
    assert table.exit_code == 0, table.output
    assert "drifted" in table.stdout and check_id in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) <= 100


def test_chips_json_names_the_newest_calibration_and_check(store) -> None:
    location, result, run_id = store
    ResultsStore(location).save(a_check(result, run_id))
    listed = invoke("chips", "--json", "--store", str(location))
    assert listed.exit_code == 0, listed.output
    (chip,) = json.loads(listed.stdout)["chips"]
    assert chip["chip"] == CHIP and chip["calibrations"] == 1
    assert chip["newest"]["run_id"] == run_id
    assert chip["newest_check"]["kind"] == "check"


def outcome(chip_id: str, status: str) -> ChipOutcome:
    drift = {
        name: 0.1
        for name in ("leak", "reset", "threshold", "psp_amplitude_exc", "psp_amplitude_inh")
    }
    drift.update(
        {name: 2e-7 for name in ("tau_mem", "tau_syn_exc", "tau_syn_inh", "refractory_time")}
    )
    return ChipOutcome(
        chip_id, status, detail="test", success_fraction=0.99, drift=drift, n_neurons=512
    )


def test_the_nightly_table_fits_100_columns_and_keeps_chip_ids_whole() -> None:
    ids = ["ecosystem-rack12-chip-000", "ecosystem-rack12-chip-001"]
    outcomes = [outcome(ids[0], "recalibrated"), outcome(ids[1], "ok, checked")]
    console = Console(width=100, record=True, color_system=None)
    console.print(nightly_table(outcomes, console))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 100
    for chip_id in ids:
        assert chip_id in text
    assert "recalibrated" in text and "ok, checked" in text
    assert "left out for the width" in text  # nine drift columns do not fit in 100
    wide = Console(width=200, record=True, color_system=None)
    wide.print(nightly_table(outcomes, wide))
    wide_text = wide.export_text()
    assert "left out" not in wide_text
    assert "Δ t_ref" in wide_text


def test_nightly_json_is_one_document_with_a_line_per_chip_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fleet run is replaced by one that returns outcomes at once (test_fleet.py runs the
    real one); what is checked is the command's output."""
    from contextlib import contextmanager

    import calib.operations.fleet as fleet

    ids = ["rack1-chip0", "rack1-chip1"]
    outcomes = [outcome(ids[0], "recalibrated"), outcome(ids[1], "ok, checked")]

    @contextmanager
    def no_cluster(scheduler, workers):
        yield None

    def fake_run(chip_ids, location, *, on_outcome, **kwargs):
        assert list(chip_ids) == ids
        for item in outcomes:
            on_outcome(item)
        return outcomes

    monkeypatch.setattr(fleet, "dask_client", no_cluster)
    monkeypatch.setattr(fleet, "run_nightly", fake_run)
    shown = CliRunner().invoke(
        app, ["nightly", "--chips", "rack1-chip[0-1]", "--store", str(tmp_path / "store"), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert [chip["chip"] for chip in document["chips"]] == ids
    assert document["chips"][0]["drift"]["tau_mem"] == pytest.approx(2e-7)
    assert "[1/2] rack1-chip0 recalibrated" in shown.stderr
    assert "[2/2] rack1-chip1 ok, checked" in shown.stderr


def test_study_prints_a_line_per_chip_as_it_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    import calib.operations.fleet as fleet
    import calib.operations.study as study
    from calib.core.targets import NeuronTarget

    @contextmanager
    def no_cluster(scheduler, workers):
        yield None

    def fake_study(chips, *, name, mismatch_scale, target, grid, client, on_chip):
        on_chip("s-000", None, 1, 2)
        on_chip("s-001", "Traceback ...\nRuntimeError: the chip broke", 2, 2)
        return study.MismatchStudy(
            name,
            mismatch_scale,
            NeuronTarget(),
            grid,
            [],
            {"s-001": "RuntimeError: the chip broke"},
            host_seconds=1.0,
        )

    monkeypatch.setattr(fleet, "dask_client", no_cluster)
    monkeypatch.setattr(study, "run_study", fake_study)
    shown = CliRunner().invoke(app, ["study", "--chips", "2", "--name", "s"])
    assert "[1/2] s-000 calibrated" in shown.stderr
    assert "[2/2] s-001 failed: RuntimeError: the chip broke" in shown.stderr
    assert shown.exit_code == 3  # no chip left to report on
