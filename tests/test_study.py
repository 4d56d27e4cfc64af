"""Monte Carlo mismatch studies: target grids, reachability, a small study, export, the CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from typer.testing import CliRunner

from calib.cli import app
from calib.operations.study import (
    MismatchStudy,
    load_study,
    parse_target_grid,
    reachable,
    run_study,
    study_chip_ids,
)
from device_model import SimulatedChip
from reports.study import study_data, write_mismatch_study_report

GRID = "tau_mem=2:40:3"


# -- target grids and chip ids ------------------------------------------------------------------


def test_target_grid_is_read_in_microseconds_and_lsb() -> None:
    grid = parse_target_grid("tau_mem=2:40:3, leak=60:120:4")
    assert list(grid) == ["tau_mem", "leak"]
    np.testing.assert_allclose(grid["tau_mem"], [2e-6, 21e-6, 40e-6])
    np.testing.assert_allclose(grid["leak"], [60, 80, 100, 120])


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("", "empty"),
        ("tau_mem=2:40", "malformed"),
        ("tau_mem:2:40:8", "malformed"),
        ("psp_amplitude_exc=2:10:3", "not one of"),
        ("tau_mem=0.1:40:8", "outside the allowed range 0.5..60 µs"),
        ("leak=60:400:8", "outside the allowed range 50..160 LSB"),
        ("tau_mem=2:x:8", "not a number"),
        ("tau_mem=2:40:0", "count = 0"),
        ("tau_mem=2:40:2.5", "not an integer"),
        ("tau_mem=40:2:8", "exceeds stop"),
        ("tau_mem=2:40:3,tau_mem=4:8:2", "twice"),
    ],
)
def test_bad_target_grids_are_refused_naming_the_problem(spec: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_target_grid(spec)


def test_study_chip_ids_derive_from_the_name() -> None:
    assert study_chip_ids("lot7", 3) == ["lot7-000", "lot7-001", "lot7-002"]
    with pytest.raises(ValueError, match="n_chips = 0"):
        study_chip_ids("lot7", 0)
    with pytest.raises(ValueError, match="study name"):
        study_chip_ids("lot/7", 2)


# -- reachability -------------------------------------------------------------------------------


def test_reachability_falls_at_the_fast_end_of_tau_syn() -> None:
    chip = SimulatedChip("reach-0")
    settings = chip.read_settings()
    mid = reachable(chip, settings, "tau_syn_exc", 1e-6)
    fastest = reachable(chip, settings, "tau_syn_exc", 0.3e-6)
    assert mid.dtype == bool and mid.shape == (512,)
    assert mid.mean() > 0.95
    # 0.3 us needs nearly the strongest bias: beyond the cell range for a good part of them.
    assert fastest.mean() < mid.mean() - 0.1


def test_reachability_of_a_slow_membrane_needs_capacitance() -> None:
    chip = SimulatedChip("reach-0")
    settings = chip.read_settings()
    settings["membrane_capacitance"] = np.full(512, 63)
    full = reachable(chip, settings, "tau_mem", 60e-6).mean()
    settings["membrane_capacitance"] = np.zeros(512, dtype=np.int64)
    assert reachable(chip, settings, "tau_mem", 60e-6).mean() < full - 0.1


# -- a small study ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study() -> MismatchStudy:
    return run_study(2, name="mc-small", grid=GRID, workers=2)


def test_study_calibrates_every_chip(study: MismatchStudy) -> None:
    assert [chip.chip_id for chip in study.chips] == ["mc-small-000", "mc-small-001"]
    assert study.failures == {}
    for chip in study.chips:
        assert chip.result.success.mean() > 0.9


def test_calibration_shrinks_the_spread_of_every_potential(study: MismatchStudy) -> None:
    for spread in study_data(study).chips:
        for name in ("leak", "reset", "threshold", "tau_mem"):
            assert spread.std_after[name] < 0.5 * spread.std_before[name], name


def test_yield_curve_has_one_fraction_per_chip_and_grid_target(study: MismatchStudy) -> None:
    (curve,) = study_data(study).yields
    assert curve.quantity == "tau_mem"
    np.testing.assert_allclose(curve.targets, [2e-6, 21e-6, 40e-6])
    assert curve.fraction.shape == (2, 3)
    assert np.all((curve.fraction >= 0) & (curve.fraction <= 1))
    assert curve.fraction[:, 0].min() > 0.9  # 2 us is well inside the range


def test_reachability_at_the_target_bounds_the_measured_success(study: MismatchStudy) -> None:
    for chip in study.chips:
        measured = chip.measured_success()["tau_mem"]
        reach = chip.reachable_at_target["tau_mem"].mean()
        assert measured <= reach + 0.01


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_exported_study_reads_back_unchanged(
    study: MismatchStudy, tmp_path: Path, suffix: str
) -> None:
    path = study.export(tmp_path / f"study{suffix}")
    loaded = load_study(path)
    expected = study.to_dataset()
    xr.testing.assert_equal(loaded, expected)
    assert loaded.attrs["study"] == "mc-small"
    assert "physical reachability" in loaded.attrs["yield_method"]
    std = loaded["achieved_leak"].where(loaded["success"]).std("neuron")
    spreads = study_data(study).chips
    np.testing.assert_allclose(std, [s.std_after["leak"] for s in spreads], rtol=1e-6)
    with pytest.raises(FileExistsError):
        study.export(path)


def test_study_report_shows_spread_and_yield(study: MismatchStudy, tmp_path: Path) -> None:
    path = write_mismatch_study_report(study, tmp_path / "study.html")
    html = Path(path).read_text(encoding="utf-8")
    assert "Spread before and after calibration" in html
    assert "Yield over targets" in html
    assert "physical reachability" in html
    assert "mc-small-001" in html


# -- command line -------------------------------------------------------------------------------


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--chips", "0"], "--chips"),
        (["--chips", "2", "--workers", "0"], "--workers"),
        (["--chips", "2", "--target-grid", "tau_mem=2:40"], "malformed"),
        (["--chips", "2", "--output", "study.csv"], "must end in .nc"),
        (["--chips", "2", "--name", "a/b"], "study name"),
        (["--chips", "2", "--scheduler", "tcp://127.0.0.1:1"], "unreachable"),
    ],
)
def test_study_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("study", *args, "--html", "study.html")
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in lines[0], lines[0]
    assert list(tmp_path.iterdir()) == []
