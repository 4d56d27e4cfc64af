"""Comparison of two results of one chip, and the fleet report built from such comparisons."""

from __future__ import annotations

import json

import pytest
from result_factory import make_result
from test_reports_html import PNG_SIGNATURE, parse_report, png_bytes, table_with_header

from reports import FleetRow, compare_results, write_fleet_report

LEAK_FAILURE = "leak: v_leak at lower bound 0"
TAU_FAILURE = "tau_mem: i_bias_leak at upper bound 1022"


def test_compare_detects_an_injected_drift_of_one_quantity():
    previous = make_result(seed=3)
    current = make_result(seed=3, achieved_shift={"leak": 2.5, "tau_mem": -0.4e-6})
    quantities = compare_results(previous, current)["quantities"]
    assert quantities["leak"]["median_shift"] == pytest.approx(2.5)
    assert quantities["tau_mem"]["median_shift"] == pytest.approx(-0.4e-6)
    assert quantities["reset"]["median_shift"] == pytest.approx(0.0, abs=1e-12)
    assert quantities["leak"]["neurons_compared"] == int(previous.success.sum())


def test_compare_finds_newly_failed_and_recovered_neurons():
    previous = make_result(seed=4, failures={10: LEAK_FAILURE, 20: TAU_FAILURE})
    current = make_result(seed=4, failures={20: TAU_FAILURE, 30: LEAK_FAILURE, 31: TAU_FAILURE})
    comparison = compare_results(previous, current)
    assert comparison["newly_failed"] == [30, 31]
    assert comparison["recovered"] == [10]
    assert comparison["quantities"]["leak"]["newly_failed"] == [30]
    assert comparison["quantities"]["leak"]["recovered"] == [10]
    assert comparison["quantities"]["tau_mem"]["newly_failed"] == [31]


def test_compare_excludes_neurons_failed_in_either_result_from_shifts():
    previous = make_result(seed=5, failures={})
    # Neuron 40 fails now with a far-off leak; it must not move the median shift.
    current = make_result(seed=5, failures={40: LEAK_FAILURE}, achieved_shift={"leak": 1.0})
    leak = compare_results(previous, current)["quantities"]["leak"]
    assert leak["neurons_compared"] == 511
    assert leak["median_shift"] == pytest.approx(1.0)


def test_compare_reports_code_shifts_per_cell():
    previous = make_result(seed=6)
    current = make_result(seed=6, code_shift={"v_leak": 7})
    codes = compare_results(previous, current)["codes"]
    assert codes["v_leak"]["median_shift"] == pytest.approx(7.0)
    assert codes["v_leak"]["changed"] == codes["v_leak"]["compared"]
    assert codes["v_reset"]["median_shift"] == 0.0
    assert codes["v_reset"]["changed"] == 0


def test_comparison_is_strict_json():
    comparison = compare_results(make_result(seed=1), make_result(seed=2))
    assert json.loads(json.dumps(comparison, allow_nan=False)) == comparison


def test_compare_rejects_results_of_different_chips():
    with pytest.raises(ValueError, match="chip_id"):
        compare_results(make_result(chip_id="a"), make_result(chip_id="b"))


def fleet_rows() -> list[FleetRow | dict]:
    rows: list[FleetRow | dict] = []
    for index in range(4):
        chip = f"chip-{index}"
        previous = make_result(chip_id=chip, seed=index, failures={})
        current = make_result(
            chip_id=chip,
            seed=index,
            failures={5: LEAK_FAILURE} if index else {},
            achieved_shift={"leak": 0.5 * index},
        )
        rows.append(
            FleetRow.from_comparison(
                compare_results(previous, current), status="degraded" if index else "ok"
            )
        )
    rows.append(
        {
            "chip_id": "chip-9",
            "status": "failed",
            "error": "TransientRunError: run 17 failed <b>twice</b>",
        }
    )
    return rows


def test_fleet_report_has_a_row_per_chip_and_shows_drift(tmp_path):
    parsed = parse_report(write_fleet_report(fleet_rows(), tmp_path / "fleet.html"))
    table = table_with_header(parsed, "chip")
    assert [row[0] for row in table.rows] == [*(f"chip-{i}" for i in range(4)), "chip-9"]
    column = table.headers.index("Δ leak [LSB]")
    assert [row[column] for row in table.rows] == ["+0", "+0.5", "+1", "+1.5", "-"]
    newly_failed = table.headers.index("newly failed")
    assert table.rows[2][newly_failed] == "1 (5)"
    assert all(png_bytes(image).startswith(PNG_SIGNATURE) for image in parsed.images)


def test_fleet_report_escapes_error_text(tmp_path):
    path = write_fleet_report(fleet_rows(), tmp_path / "fleet.html")
    raw = path.read_text(encoding="utf-8")
    assert "<b>twice</b>" not in raw
    assert "run 17 failed <b>twice</b>" in "".join(parse_report(path).text)


def test_fleet_row_rejects_an_unknown_status():
    with pytest.raises(ValueError, match="status = 'fine'"):
        FleetRow(chip_id="c", status="fine")


def test_fleet_row_mapping_rejects_unknown_fields():
    with pytest.raises(ValueError, match="drfit"):
        FleetRow.from_mapping({"chip_id": "c", "status": "ok", "drfit": {}})
