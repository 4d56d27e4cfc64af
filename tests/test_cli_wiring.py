"""What `calib calibrate` hands to the calibration and does with its result.

The calibration itself is replaced by one that returns a synthetic result at once, so these
tests pin the command's wiring (targets in SI units, NIR graphs, the simulated chip's settings,
provenance, storing, exit codes) in milliseconds; test_cli.py calibrates a real simulated chip.
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import replace
from itertools import pairwise
from pathlib import Path
from typing import Any

import nir
import numpy as np
import pytest
from result_factory import make_result
from typer.testing import CliRunner

from calib.cli import app
from calib.core.results import NeuronResult
from calib.core.targets import NeuronTarget
from calib.frontends.nir import targets_from_nir
from results_store import ResultsStore

CHIP = "wiring-chip-1"
CALIBRATE_MODULE = importlib.import_module("calib.sequences.calibrate")
STEPS = ("cadc", "leak", "tau_mem")


class FakeCalibration:
    """Stands in for calibrate(): remembers its arguments, reports progress, fails `failures`."""

    def __init__(self, failures: int = 0, warn: bool = False) -> None:
        self.failures = failures
        self.warn = warn
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        device: Any,
        target: NeuronTarget,
        *,
        progress: Any = None,
        provenance_extra: Any = None,
        **kwargs: Any,
    ) -> NeuronResult:
        self.calls.append({"device": device, "target": target, "extra": provenance_extra})
        for index, step in enumerate(STEPS):
            progress(step, index, len(STEPS))
            if self.warn:
                warnings.warn(f"overflow in step {step}", RuntimeWarning, stacklevel=1)
        result = make_result(chip_id=device.chip_id, target=target, failures=self.failures)
        provenance = replace(result.provenance, extra=dict(provenance_extra or {}))
        return replace(result, provenance=provenance)

    @property
    def only_call(self) -> dict[str, Any]:
        assert len(self.calls) == 1
        return self.calls[0]


def fake_calibration(
    monkeypatch: pytest.MonkeyPatch, failures: int = 0, warn: bool = False
) -> FakeCalibration:
    fake = FakeCalibration(failures, warn)
    monkeypatch.setattr(CALIBRATE_MODULE, "calibrate", fake)
    return fake


def calibrate(store: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["calibrate", "--chip", CHIP, "--store", str(store), *args])


def lif_graph_file(path: Path, n: int = 3) -> Path:
    """A small NIR graph (input -> LIF -> output) written to `path`."""
    ones = np.ones(n)
    lif = nir.LIF(
        tau=ones * 20e-3, r=ones, v_leak=ones * 0.0, v_reset=ones * -0.2, v_threshold=ones * 1.0
    )
    nodes = {"input": nir.Input(np.array([n])), "lif": lif, "output": nir.Output(np.array([n]))}
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=list(pairwise(nodes))))
    return path


def test_target_flags_reach_the_calibration_in_seconds_and_lsb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_calibration(monkeypatch)
    result = calibrate(
        tmp_path / "s",
        "--tau-mem",
        "12",
        "--refractory-time",
        "0.5",
        "--leak",
        "85",
        "--membrane-capacitance",
        "40",
    )
    assert result.exit_code == 0, result.output
    target = fake.only_call["target"]
    assert target.tau_mem == pytest.approx(12e-6)
    assert target.refractory_time == pytest.approx(0.5e-6)
    assert target.leak == 85.0
    assert target.membrane_capacitance == 40
    assert target.threshold == NeuronTarget().threshold


def test_the_simulated_chip_is_built_from_the_simulation_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_calibration(monkeypatch)
    result = calibrate(
        tmp_path / "s",
        "--mismatch-scale",
        "0.5",
        "--noise-scale",
        "0",
        "--drift-hours",
        "12",
        "--seed",
        "7",
    )
    assert result.exit_code == 0, result.output
    device = fake.only_call["device"]
    assert (device.chip_id, device.seed) == (CHIP, 7)
    assert (device.mismatch_scale, device.noise_scale, device.drift_hours) == (0.5, 0.0, 12.0)
    stored = ResultsStore(tmp_path / "s").latest(CHIP)
    assert stored.provenance.extra["simulation"] == {
        "backend": "simulated",
        "seed": 7,
        "mismatch_scale": 0.5,
        "noise_scale": 0.0,
        "drift_hours": 12.0,
        "faults": False,
    }


def test_the_result_is_stored_and_its_run_id_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch)
    result = calibrate(tmp_path / "s")
    assert result.exit_code == 0, result.output
    (info,) = ResultsStore(tmp_path / "s").history(CHIP)
    assert f"stored as run {info.run_id}" in result.stdout


def test_progress_counts_the_calibration_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch)
    result = calibrate(tmp_path / "s")
    assert f"{len(STEPS)}/{len(STEPS)} steps" in result.stderr


def test_the_summary_table_shows_every_quantity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, failures=6)
    result = calibrate(tmp_path / "s", "--tau-mem", "12")
    table = result.stdout
    for heading in ("target", "median", "σ before", "σ after", "failed"):
        assert heading in table
    tau_row = next(line for line in table.splitlines() if line.strip().startswith("tau_mem"))
    assert tau_row.split()[2] == "12"  # target, in µs
    assert "506/512" in table


def test_more_failed_neurons_than_allowed_exit_1_and_still_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, failures=26)  # 5.1 % of 512
    result = calibrate(tmp_path / "s")
    assert result.exit_code == 1, result.output
    assert "calibration incomplete: 5.1 % of the neurons failed (allowed: 3.0 %" in result.stderr
    assert len(ResultsStore(tmp_path / "s").history(CHIP)) == 1


def test_max_failed_sets_the_allowed_fraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, failures=26)
    assert calibrate(tmp_path / "s", "--max-failed", "0.06").exit_code == 0
    assert calibrate(tmp_path / "s", "--max-failed", "0.05").exit_code == 1


def test_failures_at_the_default_limit_still_succeed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, failures=15)  # 2.9 %
    assert calibrate(tmp_path / "s").exit_code == 0


def test_a_nir_graph_is_mapped_printed_calibrated_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_calibration(monkeypatch)
    graph = lif_graph_file(tmp_path / "net.nir")
    expected = targets_from_nir(graph, speedup=500)
    result = calibrate(tmp_path / "s", "--nir", str(graph), "--speedup", "500")
    assert result.exit_code == 0, result.output
    assert expected.summary().splitlines()[0] in result.stdout
    for note in expected.notes:
        assert note[:60] in " ".join(result.stdout.split())
    assert fake.only_call["target"] == expected.target
    stored = ResultsStore(tmp_path / "s").latest(CHIP)
    nir_record = stored.provenance.extra["nir"]
    assert nir_record["graph_name"] == expected.graph_name
    assert nir_record["content_hash"] == expected.content_hash
    assert nir_record["speedup"] == 500
    history = CliRunner().invoke(app, ["history", CHIP, "--store", str(tmp_path / "s")])
    assert f"NIR {expected.graph_name}" in history.stdout


def test_a_nir_graph_that_does_not_fit_names_the_problem_and_the_way_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_calibration(monkeypatch)
    graph = lif_graph_file(tmp_path / "net.nir")  # tau 20 ms: 0.2 µs at speed-up 1e5
    result = calibrate(tmp_path / "s", "--nir", str(graph), "--speedup", "1e5")
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: NIR graph")
    assert "tau" in line
    assert "--speedup from" in line
    assert "--clip" in line
    assert fake.calls == []
    clipped = calibrate(tmp_path / "s", "--nir", str(graph), "--speedup", "1e5", "--clip")
    assert clipped.exit_code == 0, clipped.output
    assert "warning: " in clipped.stderr
    assert float(np.min(fake.only_call["target"].tau_mem)) == pytest.approx(0.5e-6)


def test_calibrate_writes_the_html_report_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch)
    report = tmp_path / "report.html"
    result = calibrate(tmp_path / "s", "--html", str(report))
    assert result.exit_code == 0, result.output
    text = report.read_text(encoding="utf-8")
    assert f"HTML report: {report}" in result.stdout
    assert "data:image/png;base64," in text
    assert CHIP in text


def test_warnings_during_the_calibration_become_one_note_after_the_progress_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, warn=True)
    result = calibrate(tmp_path / "s")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, result.stderr
    assert notes[0].startswith(
        f"note: {len(STEPS)} warnings during the calibration, the "
        "first: RuntimeWarning: overflow in step cadc (test_cli_wiring.py:"
    )
    assert "overflow in step leak" not in result.stderr
