"""Bad input to the `calib` command line: one clear line on stderr and exit code 2.

Nothing here calibrates a chip: stores are filled with synthetic results, and a calibration
that must not start is replaced by one that fails the test if called.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from result_factory import make_result
from typer.testing import CliRunner

from calib.cli import app
from results_store import ResultsStore

CHIP = "w62f3-chip-07"
CALIBRATE_MODULE = importlib.import_module("calib.sequences.calibrate")
"""The module itself: the package `calib` may export a function of the same name."""


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(app, list(args), env=env)


def assert_usage_error(result: Any, *fragments: str) -> None:
    """Exit 2, exactly one line on stderr starting 'error:', containing every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.fixture(autouse=True)
def no_calibration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Bad input must be refused before any calibration starts; never touch the user's store."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("calibrate() was called for bad input")

    monkeypatch.setattr(CALIBRATE_MODULE, "calibrate", refuse)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "user-data"))
    monkeypatch.delenv("CALIB_STORE", raising=False)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """A store holding one synthetic calibration of CHIP."""
    path = tmp_path / "store"
    ResultsStore(path, create=True).save(make_result(chip_id=CHIP))
    return path


# -- chip ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize("chip", ["../etc", "a/b", "-chip", "chip..7", "x" * 65, ""])
def test_calibrate_refuses_a_chip_id_outside_the_pattern(tmp_path: Path, chip: str) -> None:
    store = tmp_path / "new-store"
    result = invoke("calibrate", "--chip", chip, "--store", str(store))
    assert_usage_error(result, "--chip", "is not a chip id")
    assert not store.exists()


def test_reading_commands_refuse_a_chip_id_outside_the_pattern(store: Path) -> None:
    for command in ("show", "history", "check", "report"):
        assert_usage_error(invoke(command, "../x", "--store", str(store)), "is not a chip id")


def test_a_chip_without_results_is_a_usage_error_naming_the_chips_there(store: Path) -> None:
    assert_usage_error(
        invoke("show", "other-chip", "--store", str(store)),
        "'other-chip' has no stored calibration",
        f"chips there: {CHIP}",
    )


# -- targets ------------------------------------------------------------------------------------


def test_a_target_flag_out_of_range_is_refused_in_command_line_units(tmp_path: Path) -> None:
    store = tmp_path / "new-store"
    result = invoke("calibrate", "--chip", CHIP, "--tau-mem", "200", "--store", str(store))
    assert_usage_error(result, "tau_mem = 200 is outside the allowed range 0.5..60 µs")
    assert not store.exists()


def test_a_potential_flag_out_of_range_is_refused(tmp_path: Path) -> None:
    result = invoke("calibrate", "--chip", CHIP, "--leak", "20", "--store", str(tmp_path / "s"))
    assert_usage_error(result, "leak = 20 is outside the allowed range 50..160 CADC LSB")


def test_an_unknown_key_in_the_target_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "target.toml"
    path.write_text("leak = 80\ntau_membrane = 10\n", encoding="utf-8")
    result = invoke(
        "calibrate", "--chip", CHIP, "--target", str(path), "--store", str(tmp_path / "s")
    )
    assert_usage_error(result, "unknown key 'tau_membrane'", str(path))


def test_a_malformed_target_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "target.toml"
    path.write_text("leak = [80\n", encoding="utf-8")
    result = invoke(
        "calibrate", "--chip", CHIP, "--target", str(path), "--store", str(tmp_path / "s")
    )
    assert_usage_error(result, "not a valid TOML target file")


def test_a_missing_target_file_is_a_usage_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    result = invoke(
        "calibrate", "--chip", CHIP, "--target", str(missing), "--store", str(tmp_path / "s")
    )
    assert_usage_error(result, "no such file", str(missing))


def test_speedup_without_a_nir_graph_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("calibrate", "--chip", CHIP, "--speedup", "100", "--store", str(tmp_path))
    assert_usage_error(result, "--speedup applies only with --nir")


def test_a_nir_graph_and_target_flags_exclude_each_other(tmp_path: Path) -> None:
    result = invoke(
        "calibrate",
        "--chip",
        CHIP,
        "--nir",
        str(tmp_path / "g.nir"),
        "--leak",
        "80",
        "--store",
        str(tmp_path),
    )
    assert_usage_error(result, "--nir sets the whole target")


def test_a_missing_nir_file_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke(
        "calibrate",
        "--chip",
        CHIP,
        "--nir",
        str(tmp_path / "g.nir"),
        "--store",
        str(tmp_path / "s"),
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


def test_max_failed_outside_zero_to_one_is_a_usage_error(tmp_path: Path) -> None:
    result = invoke("calibrate", "--chip", CHIP, "--max-failed", "1.5")
    assert_usage_error(result, "--max-failed", "calib calibrate --help")


def test_a_missing_required_option_is_one_line(tmp_path: Path) -> None:
    assert_usage_error(invoke("calibrate"), "Missing option '--chip'")
    assert_usage_error(invoke("export", CHIP), "Missing option '--format'")


# -- stores and runs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["show", CHIP],
        ["history", CHIP],
        ["check", CHIP],
        ["report", CHIP],
        ["chips"],
        ["export", CHIP, "--format", "json"],
    ],
)
def test_reading_commands_never_create_a_missing_store(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-store"
    result = invoke(*command, "--store", str(missing))
    assert_usage_error(result, f"no results store at {missing}")
    assert not missing.exists()


def test_the_default_store_is_in_the_per_user_data_directory(tmp_path: Path) -> None:
    expected = tmp_path / "user-data" / "analog-calib" / "store"
    assert_usage_error(invoke("history", CHIP), f"no results store at {expected}")
    assert not expected.exists()


def test_calib_store_in_the_environment_selects_the_store(store: Path) -> None:
    result = invoke("history", CHIP, env={"CALIB_STORE": str(store)})
    assert result.exit_code == 0, result.output
    assert CHIP in result.stdout


def test_a_store_option_wins_over_the_environment(store: Path, tmp_path: Path) -> None:
    result = invoke(
        "history", CHIP, "--store", str(store), env={"CALIB_STORE": str(tmp_path / "elsewhere")}
    )
    assert result.exit_code == 0, result.output


def test_an_unknown_run_is_a_usage_error(store: Path) -> None:
    unknown = "20240101T000000.000000Z-000000000000"
    assert_usage_error(invoke("show", CHIP, "--run", unknown, "--store", str(store)), unknown)


def test_a_malformed_run_id_is_a_usage_error(store: Path) -> None:
    assert_usage_error(
        invoke("export", CHIP, "--run", "latest", "--format", "json", "--store", str(store)),
        "'latest' is not a run id",
    )


def test_an_unknown_export_format_is_a_usage_error(store: Path) -> None:
    assert_usage_error(invoke("export", CHIP, "--format", "csv", "--store", str(store)), "--format")


def test_a_directory_that_is_not_a_store_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a store", encoding="utf-8")
    result = invoke("history", CHIP, "--store", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")


# -- failures that are not the user's -----------------------------------------------------------


def test_a_calibration_that_breaks_exits_3_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(device: object, target: object, *, progress: Any, **kwargs: object) -> None:
        progress("cadc", 0, 3)
        raise RuntimeError("CADC ramp did not start")

    monkeypatch.setattr(CALIBRATE_MODULE, "calibrate", broken)
    result = invoke("calibrate", "--chip", CHIP, "--store", str(tmp_path / "s"))
    assert result.exit_code == 3, result.output
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        "error: calibration of chip 'w62f3-chip-07' stopped in step 'cadc': "
        "RuntimeError: CADC ramp did not start"
    )


def test_debug_shows_the_exception_instead_of_one_line(tmp_path: Path) -> None:
    result = invoke("--debug", "show", CHIP, "--store", str(tmp_path / "missing"))
    assert result.exit_code != 0
    assert result.exception is not None
    assert "no results store" in str(result.exception)


def run_calib(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("calib")
    assert script.is_file(), f"console script missing: {script} (is the project installed?)"
    env = {**os.environ, "XDG_DATA_HOME": os.environ["XDG_DATA_HOME"]}
    env.pop("CALIB_STORE", None)
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def test_the_installed_script_prints_one_line_without_and_a_traceback_with_debug(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "missing")
    plain = run_calib("show", CHIP, "--store", missing)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"error: no results store at {missing} (calibrate a chip first, or point --store / "
        "$CALIB_STORE at an existing store)"
    ]
    debug = run_calib("--debug", "show", CHIP, "--store", missing)
    assert debug.returncode != 0
    assert "Traceback (most recent call last)" in debug.stderr


def test_no_arguments_prints_the_help() -> None:
    result = invoke()
    assert result.exit_code == 0
    for command in ("calibrate", "show", "history", "export", "check", "report"):
        assert command in result.output


def test_escape_sequences_stored_in_metadata_are_shown_not_obeyed(tmp_path: Path) -> None:
    from results_store import ResultsStore

    result = make_result(chip_id="escape-0")
    result.provenance.extra["target_source"] = "file\x1b[2J\x1b]0;owned\x07.toml"
    store = ResultsStore(tmp_path / "store", create=True)
    store.save(result)
    for command in ("show", "history"):
        output = invoke(
            command, "escape-0", "--store", str(tmp_path / "store"), env={"COLUMNS": "200"}
        ).output
        assert "\x1b[2J" not in output and "\x07" not in output
        assert "\\x1b[2J" in output
