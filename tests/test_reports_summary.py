"""Terminal summary and the figures behind it."""

from __future__ import annotations

import numpy as np
import pytest
from fakes import QUANTITIES
from result_factory import make_result
from rich.console import Console

from reports import render_summary, summarize
from reports.summary import UNEXPLAINED, reason_template
from reports.units import display_unit, format_duration, format_number


def rendered(result, width: int = 120) -> str:
    console = Console(record=True, width=width, color_system=None)
    render_summary(result, console)
    return console.export_text()


def test_summary_lists_every_quantity_with_a_human_unit():
    text = rendered(make_result())
    for name in QUANTITIES:
        assert name in text
    tau_line = next(line for line in text.splitlines() if line.strip().startswith("tau_mem"))
    assert " µs " in tau_line
    leak_line = next(line for line in text.splitlines() if line.strip().startswith("leak"))
    assert " LSB " in leak_line


def test_summary_shows_time_constants_in_microseconds():
    text = rendered(make_result())
    tau_line = next(line for line in text.splitlines() if line.strip().startswith("tau_mem"))
    # Target 10e-6 s is shown as 10 (us), not as 1e-05.
    assert tau_line.split()[2] == "10"


def test_summary_header_shows_success_and_device_cost():
    result = make_result(failures=3)
    text = rendered(result)
    assert result.chip_id in text
    assert "509/512" in text
    assert "3120" in text
    assert format_duration(result.provenance.device_stats["hardware_time"]) in text


def test_summary_groups_failures_by_reason_with_neuron_ids():
    reasons = {
        3: "tau_mem: i_bias_leak at upper bound 1022",
        200: "tau_mem: i_bias_leak at upper bound 1022",
        7: "dead neuron: no response to the current step",
    }
    text = rendered(make_result(failures=reasons))
    group_line = next(line for line in text.splitlines() if "upper bound 1022" in line)
    assert group_line.split()[0] == "2"
    assert "3, 200" in group_line
    assert "dead neuron: no response to the current step" in text


def test_summary_fits_a_narrow_terminal_without_cutting_quantity_names():
    text = rendered(make_result(), width=80)
    for name in QUANTITIES:
        assert name in text


def test_summary_shows_rich_markup_in_reasons_literally():
    text = rendered(make_result(failures={5: "leak: [bold red]odd[/] reading"}))
    assert "[bold red]odd[/]" in text


def test_spreads_and_medians_are_taken_over_successful_neurons():
    result = make_result(failures=10)
    row = next(row for row in summarize(result).rows if row.name == "tau_mem")
    good = result.success
    assert row.std_after == pytest.approx(np.std(result.achieved["tau_mem"][good]))
    assert row.std_before == pytest.approx(np.std(result.before["tau_mem"][good]))
    assert row.achieved_median == pytest.approx(np.median(result.achieved["tau_mem"][good]))
    assert row.target_median == pytest.approx(10e-6)


def test_failed_count_per_quantity_counts_reasons_naming_it():
    reasons = {
        1: "leak: v_leak at lower bound 0",
        2: "leak: reached 90 CADC LSB, target 80 CADC LSB ± 3 CADC LSB; "
        "tau_mem: measurement failed",
        3: "tau_mem: i_bias_leak at upper bound 1022",
    }
    rows = {row.name: row for row in summarize(make_result(failures=reasons)).rows}
    assert rows["leak"].failed == 2
    assert rows["tau_mem"].failed == 2
    assert rows["reset"].failed == 0


def test_reasons_differing_only_in_numbers_share_a_group():
    reasons = {
        4: "threshold: reached 131 CADC LSB, target 125 CADC LSB ± 4 CADC LSB",
        9: "threshold: reached 140 CADC LSB, target 125 CADC LSB ± 4 CADC LSB",
        11: "leak: v_leak at lower bound 0",
        12: "leak: v_leak at lower bound 0",
    }
    groups = {
        group.label: group for group in summarize(make_result(failures=reasons)).failure_groups
    }
    masked = reason_template(reasons[4])
    assert "#" in masked
    assert groups[masked].neurons == (4, 9)
    assert groups["leak: v_leak at lower bound 0"].neurons == (11, 12)


def test_a_neuron_failing_two_quantities_counts_in_both_groups():
    reasons = {6: "leak: v_leak at lower bound 0; tau_mem: i_bias_leak at upper bound 1022"}
    groups = summarize(make_result(failures=reasons)).failure_groups
    assert sorted(group.label for group in groups) == [
        "leak: v_leak at lower bound 0",
        "tau_mem: i_bias_leak at upper bound 1022",
    ]
    assert all(group.neurons == (6,) for group in groups)


def test_a_failed_neuron_without_reason_is_reported_not_hidden():
    result = make_result(failures=0)
    result.success[[9, 17]] = False
    summary = summarize(result)
    assert summary.unexplained_failures == 2
    group = next(group for group in summary.failure_groups if group.label == UNEXPLAINED)
    assert group.neurons == (9, 17)
    assert UNEXPLAINED in rendered(result)


def test_no_failures_says_so():
    assert "no failed neurons" in rendered(make_result(failures=0))


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.25, "250 ms"), (12.34, "12.3 s"), (125, "2 min 05 s"), (7380, "2 h 03 min"), (None, "-")],
)
def test_durations_read_naturally(seconds, text):
    assert format_duration(seconds) == text


def test_units_convert_seconds_to_microseconds_and_keep_lsb():
    assert display_unit("tau_syn_exc")(2e-6) == pytest.approx(2.0)
    assert display_unit("tau_syn_exc").label == "µs"
    assert display_unit("threshold")(125.0) == 125.0
    assert display_unit("threshold").label == "LSB"
    assert format_number(float("nan")) == "-"
    assert format_number(0.00788) == "0.00788"


def test_a_quantity_without_a_target_is_shown_without_one():
    result = make_result(quantities=["leak"])
    result.achieved["adaptation_b"] = np.linspace(0.0, 2.0, result.success.size)
    row = next(row for row in summarize(result).rows if row.name == "adaptation_b")
    assert np.isnan(row.target_median)
    assert row.within_tolerance is None
    assert row.achieved_median == pytest.approx(
        np.median(result.achieved["adaptation_b"][result.success])
    )
    line = next(line for line in rendered(result).splitlines() if "adaptation_b" in line)
    assert line.split()[1] == "-"
