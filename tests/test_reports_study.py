"""Mismatch-study report: spreads across chips and yield over a target grid."""

from __future__ import annotations

import numpy as np
import pytest
from result_factory import make_result
from test_reports_html import PNG_SIGNATURE, parse_report, png_bytes, table_with_header

from reports import ChipSpread, StudyData, YieldCurve, YieldMap, write_study_report
from reports.summary import summarize

QUANTITIES_SHOWN = ["leak", "threshold", "tau_mem"]


def study(chips: int = 4) -> StudyData:
    results = [
        make_result(chip_id=f"sim-{i}", seed=50 + i, quantities=QUANTITIES_SHOWN)
        for i in range(chips)
    ]
    grid = np.linspace(50, 150, 6)
    fraction = np.clip(1 - np.abs(grid - 90) / 300 - np.arange(chips)[:, None] * 0.01, 0, 1)
    return StudyData(
        chips=[ChipSpread.from_result(result) for result in results],
        yields=[YieldCurve("leak", grid, fraction)],
        yield_maps=[
            YieldMap(
                "leak", grid, "threshold", np.array([80.0, 125.0, 180.0]), np.full((3, 6), 0.97)
            )
        ],
        parameters={"mismatch_scale": 1.5},
    )


def test_chip_spread_takes_the_summary_spreads():
    result = make_result(seed=8)
    spread = ChipSpread.from_result(result)
    rows = {row.name: row for row in summarize(result).rows}
    assert spread.std_after["tau_mem"] == rows["tau_mem"].std_after
    assert spread.std_before["leak"] == rows["leak"].std_before
    assert spread.success_fraction == pytest.approx(result.success.mean())


def test_study_report_tables_and_plots(tmp_path):
    data = study()
    parsed = parse_report(write_study_report(data, tmp_path / "study.html"))
    spread = table_with_header(parsed, "std before (median over chips)")
    assert [row[0] for row in spread.rows] == QUANTITIES_SHOWN
    leak_before = np.median([chip.std_before["leak"] for chip in data.chips])
    assert float(spread.rows[0][2]) == pytest.approx(leak_before, rel=5e-3)
    assert len(table_with_header(parsed, "successful neurons").rows) == 4
    yields = table_with_header(parsed, "highest mean yield")
    assert yields.rows[0][4].startswith("98.5 % at 90")
    assert len(parsed.images) == 3
    assert all(png_bytes(image).startswith(PNG_SIGNATURE) for image in parsed.images)
    assert "1.5" in [
        row[1]
        for table in parsed.tables
        for row in table.rows
        if row and row[0] == "mismatch_scale"
    ]


def test_study_report_without_chips_still_renders(tmp_path):
    parsed = parse_report(write_study_report(StudyData(chips=[]), tmp_path / "s.html"))
    assert parsed.unbalanced == []
    assert parsed.images == []


def test_yield_fraction_outside_zero_to_one_is_rejected():
    with pytest.raises(ValueError, match=r"fraction 1\.2 is outside 0\.\.1"):
        YieldCurve("leak", [60.0, 80.0], [0.9, 1.2])


def test_yield_fraction_must_match_the_target_grid():
    with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
        YieldCurve("leak", [60.0, 80.0], np.ones((2, 3)))
    with pytest.raises(ValueError, match="yield map"):
        YieldMap("leak", [60.0, 80.0], "threshold", [100.0], np.ones((2, 2)))


def test_chip_spread_rejects_a_success_fraction_above_one():
    with pytest.raises(ValueError, match=r"success_fraction = 1\.5"):
        ChipSpread("c", {}, {}, success_fraction=1.5)
