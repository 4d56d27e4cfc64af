"""Terminal summary of one calibration: a header, a table per quantity, failures by reason."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from calib.core.results import NeuronResult
from reports.summary import RunSummary, success_level, summarize
from reports.text import terminal_safe
from reports.units import display_unit, format_duration, format_number


def _success_style(fraction: float) -> str:
    return {"good": "green", "fair": "yellow", "poor": "red"}[success_level(fraction)]


def _header(summary: RunSummary) -> Table:
    fraction = summary.success_fraction
    runs = "-" if summary.device_runs is None else f"{summary.device_runs:.0f}"
    grid = Table.grid(padding=(0, 2))
    for style in ("bold", "", "bold", ""):
        grid.add_column(style=style)
    grid.add_row(
        "chip", Text(summary.chip_id, style="bold cyan"), "finished", Text(summary.created)
    )
    grid.add_row(
        "success",
        Text(
            f"{summary.n_success}/{summary.n_neurons} ({100 * fraction:.1f} %)",
            style=_success_style(fraction),
        ),
        "run time",
        format_duration(summary.duration),
    )
    grid.add_row(
        "device runs", runs, "emulated hardware time", format_duration(summary.hardware_time)
    )
    grid.add_row("algorithm", Text(summary.algorithm), "", "")
    return grid


def quantity_table(summary: RunSummary) -> Table:
    table = Table(
        title=(
            f"per quantity: median and std σ over the {summary.n_success} successful "
            f"neurons; within tolerance: of all {summary.n_neurons}"
        ),
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("quantity", no_wrap=True)
    table.add_column("unit", no_wrap=True)
    for column in ("target", "median", "σ before", "σ after", "in tol.", "failed"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in summary.rows:
        unit = display_unit(row.name)
        table.add_row(
            escape(row.name),
            unit.label,
            format_number(unit(row.target_median)),
            format_number(unit(row.achieved_median)),
            format_number(unit(row.std_before)),
            format_number(unit(row.std_after)),
            "-" if row.within_tolerance is None else str(row.within_tolerance),
            Text(str(row.failed), style="red" if row.failed else ""),
        )
    return table


def failure_table(summary: RunSummary) -> Table | Text:
    if not summary.failure_groups:
        return Text("no failed neurons", style="green")
    table = Table(
        title="failures by reason",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    table.add_column("neurons", justify="right")
    table.add_column("reason")
    table.add_column("e.g. neuron ids")
    for group in summary.failure_groups:
        examples = ", ".join(str(n) for n in group.examples)
        if group.count > len(group.examples):
            examples += ", ..."
        table.add_row(str(group.count), escape(terminal_safe(group.label)), examples)
    return table


def build_summary(result: NeuronResult) -> Group:
    """The summary as rich renderables (for embedding in other rich output)."""
    summary = summarize(result)
    return Group(_header(summary), quantity_table(summary), failure_table(summary))


def render_summary(result: NeuronResult, console: Console | None = None) -> None:
    """Print the summary of `result` to `console` (a new stdout console by default)."""
    (console or Console()).print(build_summary(result))
