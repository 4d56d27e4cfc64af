"""HTML report of one calibration: one self-contained file with tables and embedded plots.

The page is the template `calibration.html.j2` (see `reports.templating`); this module computes
what it shows: tables, plots and notes, as data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from calib.core.checks import CheckRecord
from calib.core.results import NeuronResult
from device_model.protocol import CELLS, NEURONS_PER_QUADRANT
from reports import plots
from reports.htmlkit import (
    Block,
    Grid,
    Image,
    KeyValues,
    Page,
    Paragraph,
    Table,
    grid,
    heading,
    image,
    key_value_table,
    paragraph,
    preformatted,
    status_badge,
    table,
    write_page,
)
from reports.summary import RunSummary, success_level, summarize
from reports.templating import render
from reports.units import display_unit, format_duration, format_number

HistoryEntry = tuple[object, NeuronResult]
"""(time, result): time a datetime, an ISO 8601 string or a number (e.g. hours)."""
CheckEntry = tuple[object, CheckRecord]
"""(time, check record) of a stored check of the chip."""


def overview_table(summary: RunSummary) -> KeyValues:
    fraction = summary.success_fraction
    runs = "-" if summary.device_runs is None else f"{summary.device_runs:.0f}"
    writes = "-" if summary.device_writes is None else f"{summary.device_writes:.0f}"
    success = status_badge(
        f"{100 * fraction:.1f} %",
        success_level(fraction),
        f"{summary.n_success} of {summary.n_neurons} neurons",
    )
    return key_value_table(
        {
            "chip": summary.chip_id,
            "finished": summary.created,
            "run time (host)": format_duration(summary.duration),
            "successful neurons": success,
            "device runs": runs,
            "cell writes": writes,
            "emulated hardware time": format_duration(summary.hardware_time),
            "algorithm": summary.algorithm,
        }
    )


def quantity_table(summary: RunSummary) -> Table:
    rows = []
    for row in summary.rows:
        unit = display_unit(row.name)
        rows.append(
            [
                row.name,
                unit.label,
                format_number(unit(row.target_median)),
                format_number(unit(row.achieved_median)),
                format_number(unit(row.std_before)),
                format_number(unit(row.std_after)),
                "-"
                if row.within_tolerance is None
                else f"{row.within_tolerance} / {row.n_neurons}",
                str(row.failed),
            ]
        )
    return table(
        [
            "quantity",
            "unit",
            "target (median)",
            "achieved (median)",
            "std before",
            "std after",
            "within tolerance",
            "failed",
        ],
        rows,
        caption="Medians and standard deviations over the successful neurons.",
        numeric_from=2,
    )


def failure_group_table(summary: RunSummary) -> Table | Paragraph:
    if not summary.failure_groups:
        return paragraph("No neuron failed.")
    rows = []
    for group in summary.failure_groups:
        examples = ", ".join(str(n) for n in group.examples)
        if group.count > len(group.examples):
            examples += ", ..."
        rows.append([str(group.count), group.label, examples])
    return table(
        ["neurons", "reason (numbers shown as #)", "e.g. neuron ids"],
        rows,
        caption="Failures grouped by reason; a neuron failing several quantities counts in each.",
        numeric_from=99,
    )


def failed_neuron_table(result: NeuronResult) -> Table | Paragraph:
    failed = np.flatnonzero(~np.asarray(result.success, dtype=bool))
    listed = sorted(set(failed.tolist()) | set(result.reasons))
    if not listed:
        return paragraph("No neuron failed.")
    success = np.asarray(result.success, dtype=bool)
    rows = [
        [
            str(neuron),
            str(neuron // NEURONS_PER_QUADRANT),
            "no" if success[neuron] else "yes",
            result.reasons.get(neuron, "(no reason given)"),
        ]
        for neuron in listed
    ]
    return table(["neuron", "quadrant", "failed", "reason"], rows, numeric_from=99)


def _ordered_cells(names: Sequence[str]) -> list[str]:
    known = [name for name in CELLS if name in names]
    return known + sorted(set(names) - set(CELLS))


def code_section(result: NeuronResult) -> list[Block]:
    """Histograms of varying per-neuron cells; tables of per-quadrant and constant cells."""
    n_neurons = np.asarray(result.success).size
    varying, constant, per_quadrant = [], [], []
    for cell in _ordered_cells(list(result.codes)):
        codes = np.asarray(result.codes[cell]).ravel()
        if codes.size != n_neurons:
            per_quadrant.append([cell, ", ".join(str(int(code)) for code in codes)])
        elif codes.size and np.all(codes == codes[0]):
            constant.append([cell, str(int(codes[0]))])
        else:
            varying.append(cell)
    parts: list[Block] = []
    if varying:
        figure = plots.code_histograms(result, varying)
        parts.append(image(plots.png_base64(figure), "code distributions per cell"))
        parts.append(paragraph("Dotted red lines: the ends of a cell's code range.", "note"))
    if per_quadrant:
        parts.append(
            table(
                ["cell", "codes (Q0, Q1, Q2, Q3)"],
                per_quadrant,
                numeric_from=99,
                caption="Per-quadrant cells",
            )
        )
    if constant:
        parts.append(table(["cell", "code"], constant, caption="Cells at one code on every neuron"))
    if not parts:
        parts.append(paragraph("The result holds no codes."))
    return parts


def provenance_section(result: NeuronResult) -> list[Block]:
    provenance = result.provenance
    parts: list[Block] = [
        key_value_table(
            {
                "chip": provenance.chip_id,
                "finished": provenance.created,
                "duration (host)": format_duration(provenance.duration),
                "algorithm": provenance.algorithm,
                "target fingerprint": result.target.fingerprint(),
            }
        ),
        table(
            ["package", "version"],
            sorted(provenance.versions.items()),
            numeric_from=99,
            caption="Versions",
        ),
        table(
            ["statistic", "value"],
            [[key, _stat_text(value)] for key, value in provenance.device_stats.items()],
            caption="Device statistics (hardware_time in seconds)",
        ),
    ]
    steps = getattr(provenance, "steps", None) or {}
    if steps:
        parts.append(_step_table(steps))
    if provenance.extra:
        parts.append(heading("Extra"))
        parts.append(preformatted(provenance.extra))
    parts.append(heading("Target"))
    parts.append(preformatted(_compact_target(result)))
    return parts


def _step_table(steps: dict[str, dict[str, float]]) -> Table:
    """Cost of each calibration step (as the calibration recorded it, in its order)."""
    rows = []
    for name, cost in steps.items():
        rows.append(
            [
                name,
                _stat_text(cost.get("runs", "-")),
                _stat_text(cost.get("writes", "-")),
                format_duration(cost.get("hardware_time")),
                format_duration(cost.get("host_time")),
            ]
        )
    return table(
        ["step", "device runs", "writes", "emulated hardware time", "host time"],
        rows,
        caption="Cost per calibration step",
    )


def _stat_text(value: object) -> str:
    if isinstance(value, int | float) and float(value).is_integer():
        return str(int(value))
    return format_number(value) if isinstance(value, float) else str(value)


def _compact_target(result: NeuronResult) -> dict[str, object]:
    """The target with per-neuron arrays summarised (512 numbers help nobody here)."""
    out: dict[str, object] = {}
    for key, value in result.target.to_dict().items():
        if isinstance(value, list):
            array = np.asarray(value, dtype=float)
            out[key] = f"per neuron: {array.min():g}..{array.max():g} (median {np.median(array):g})"
        else:
            out[key] = value
    return out


def _histogram_grid(result: NeuronResult, summary: RunSummary) -> Grid:
    return grid(
        image(
            plots.png_base64(plots.quantity_histograms(result, row.name)),
            f"{row.name} before and after calibration",
        )
        for row in summary.rows
    )


def _normalise_history(
    history: Sequence[HistoryEntry] | Sequence[NeuronResult],
) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    for index, entry in enumerate(history):
        if isinstance(entry, NeuronResult):
            entries.append((entry.provenance.created, entry))
        elif isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[1], NeuronResult):
            entries.append(entry)
        else:
            raise ValueError(
                f"history[{index}] = {type(entry).__name__}: expected a NeuronResult or a "
                "(time, NeuronResult) pair"
            )
    return entries


def write_html_report(
    result: NeuronResult,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    history: Sequence[HistoryEntry] | Sequence[NeuronResult] | None = None,
    checks: Sequence[CheckEntry] | None = None,
) -> Path:
    """Write the report of `result` to `path` as one self-contained HTML file.

    `history`, earlier results of the same chip as (time, result) pairs or results (timed by
    their provenance), adds a drift-over-time plot per quantity; include `result` itself to
    see it as the last point. `checks`, (time, CheckRecord) pairs of the chip's stored checks,
    add what the chip measured between calibrations. Without either, the page says there is
    nothing earlier to compare with.
    """
    summary = summarize(result)
    entries = _normalise_history(history) if history else []
    check_entries = list(checks or [])
    title = title or f"Calibration report: chip {summary.chip_id}"
    drift: Image | None = None
    if len(entries) > 1 or check_entries:
        entries = entries or [(result.provenance.created, result)]
        drift = image(
            plots.png_base64(plots.drift_figure(entries, checks=check_entries)), "drift over time"
        )
        checks_text = f" and {len(check_entries)} checks" if check_entries else ""
        squares = ", checks as squares (median of the checked neurons)" if check_entries else ""
        drift_note = (
            f"{len(entries)} calibration{'s' if len(entries) != 1 else ''}"
            f"{checks_text} of this chip for this target; median and 10th..90th "
            f"percentile over the successful neurons of each calibration{squares}."
        )
    else:
        drift_note = (
            "No earlier calibration or check of this chip for this target is stored: "
            "there is nothing to compare with yet ('calib check CHIP' stores one)."
        )
    subtitle = (
        f"{summary.created} · {summary.n_success}/{summary.n_neurons} neurons "
        f"calibrated · {summary.algorithm}"
    )
    report = {
        "overview": overview_table(summary),
        "quantities": quantity_table(summary),
        "failure_groups": failure_group_table(summary),
        "histograms": _histogram_grid(result, summary),
        "histogram_note": (
            "Left: every neuron at one code before calibration. Right: the successful neurons "
            "after, on an axis zoomed to the tolerance band (shaded; at least ± 1.25 "
            "tolerances, at most ± 6): the title counts the neurons inside it, σ says how much "
            "of the tolerance the spread uses, neurons beyond the zoomed axis are counted at "
            "its edges."
        ),
        "residual_maps": image(
            plots.png_base64(plots.residual_maps(result), tight=True), "residual maps"
        ),
        "codes": code_section(result),
        "drift": drift,
        "drift_note": drift_note,
        "failed_neurons": failed_neuron_table(result),
        "provenance": provenance_section(result),
    }
    text = render("calibration.html.j2", page=Page(title, (), subtitle), report=report)
    return write_page(path, text)
