"""The fleet commands of `calib`: `nightly` (maintain many chips) and `study` (mismatch study).

Both run one Dask task per chip: on a local cluster of --workers single-threaded processes by
default, or on a running cluster given by --scheduler ADDRESS (e.g. tcp://host:8786; the
command gives up after a few seconds when nothing answers there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from calib.cli.app import (
    CLIError,
    CommandFailed,
    ExitCode,
    JsonOption,
    StoreOption,
    app,
    check_output_file,
    error_console,
    output_console,
    print_json,
)
from calib.cli.app import store_location as resolve_store
from calib.cli.tables import ESSENTIAL, Column, fitted_table
from calib.operations.defaults import CONNECT_TIMEOUT, DEFAULT_GRID, DEFAULT_WORKERS

if TYPE_CHECKING:
    from calib.core.targets import NeuronTarget
    from calib.operations.fleet import ChipOutcome
    from calib.operations.study import MismatchStudy

# Dask, numpy, the calibration code and the reports are imported inside the commands, so that
# building the command line (and every --help) stays quick.

FLEET_PANEL = "Fleet"
CLUSTER_PANEL = "Cluster"
OUTPUT_PANEL = "Store and output"
STATUS_STYLES = {
    "calibrated": "green",
    "recalibrated": "yellow",
    "ok, checked": "green",
    "failed": "bold red",
}

SchedulerOption = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        metavar="ADDRESS",
        rich_help_panel=CLUSTER_PANEL,
        help=f"A running Dask scheduler, e.g. tcp://host:8786 (default: a local cluster); "
        f"gives up after {CONNECT_TIMEOUT:g} s when it does not answer.",
    ),
]
WorkersOption = Annotated[
    int,
    typer.Option(
        "--workers",
        metavar="N",
        min=1,
        rich_help_panel=CLUSTER_PANEL,
        help="Worker processes of the local cluster, one chip at a time each (>= 1; ignored "
        "with --scheduler).",
    ),
]
HtmlOption = Annotated[
    Path | None,
    typer.Option(
        "--html", metavar="FILE", rich_help_panel=OUTPUT_PANEL, help="Also write an HTML report."
    ),
]
TargetFileOption = Annotated[
    Path | None,
    typer.Option(
        "--target",
        metavar="FILE.toml",
        rich_help_panel=FLEET_PANEL,
        help="TOML file of target fields in µs and CADC LSB (default: the default LIF target).",
    ),
]


def _target(target_file: Path | None) -> NeuronTarget:
    from calib.cli.target_file import build_target, read_target_file
    from calib.core.targets import NeuronTarget

    if target_file is None:
        return NeuronTarget()
    return build_target(read_target_file(target_file), str(target_file))


def _cluster_text(scheduler: str | None, workers: int) -> str:
    if scheduler is not None:
        return f"the cluster at {scheduler}"
    return f"a local cluster of {workers} worker{'s' if workers != 1 else ''}"


# -- nightly ------------------------------------------------------------------------------------


def _progress_line(outcome: ChipOutcome, done: int, total: int) -> Text:
    fraction = (
        "" if outcome.success_fraction is None else f" {100 * outcome.success_fraction:.1f} %"
    )
    line = Text(f"[{done}/{total}] ")
    line.append(outcome.chip_id, style="bold cyan")
    line.append(f" {outcome.status}", style=STATUS_STYLES[outcome.status])
    line.append(f"{fraction} ({outcome.host_seconds:.1f} s): {outcome.detail}")
    return line


SHORT_NAMES = {
    "threshold": "thresh",
    "tau_mem": "τ_mem",
    "tau_syn_exc": "τ_exc",
    "tau_syn_inh": "τ_inh",
    "psp_amplitude_exc": "psp_exc",
    "psp_amplitude_inh": "psp_inh",
    "refractory_time": "t_ref",
}
"""Column headers of the drift table: short enough that every quantity fits a terminal."""


def _drift_cell(name: str, value: float | None) -> str:
    import numpy as np

    from reports.units import display_unit

    if value is None or not np.isfinite(value):
        return "-"
    unit = display_unit(name)
    return f"{unit(value):+.3f}" if unit.label == "µs" else f"{unit(value):+.2f}"


def nightly_table(outcomes: Sequence[ChipOutcome], console: Console) -> Table:
    """Night-over-night comparison: one row per chip, drift per quantity in µs or LSB; fits
    the console (drift columns of the later quantities go first, chip ids are never cut)."""
    from reports.summary import ordered_quantities

    quantities = ordered_quantities({name for outcome in outcomes for name in outcome.drift})
    columns = [
        Column("chip", priority=ESSENTIAL),
        Column("status", priority=ESSENTIAL),
        Column("success", "right", priority=ESSENTIAL),
        Column("newly failed", "right", priority=500),
    ]
    columns += [
        Column(f"Δ {SHORT_NAMES.get(name, name)}", "right", priority=400 - index)
        for index, name in enumerate(quantities)
    ]
    rows = [
        [
            escape(outcome.chip_id),
            Text(outcome.status, style=STATUS_STYLES[outcome.status]),
            "-" if outcome.success_fraction is None else f"{100 * outcome.success_fraction:.1f} %",
            "-" if outcome.status in ("failed", "calibrated") else str(len(outcome.newly_failed)),
            *(_drift_cell(name, outcome.drift.get(name)) for name in quantities),
        ]
        for outcome in outcomes
    ]
    caption = (
        "Δ: median shift (potentials and PSP amplitudes in CADC LSB, times in µs): for a "
        "checked chip, measured now minus its last stored check (night over night), or minus "
        "the calibration when it has no check yet; for a recalibrated one, new minus previous "
        "calibration."
        if quantities
        else None
    )
    return fitted_table(
        console, columns, rows, caption=caption, title="nightly calibration", collapse_padding=True
    )


def outcome_document(outcome: ChipOutcome) -> dict[str, Any]:
    """One chip's night as data (drift in the quantities' stored units)."""
    return {
        "chip": outcome.chip_id,
        "status": outcome.status,
        "report_status": outcome.report_status,
        "detail": outcome.detail,
        "success_fraction": outcome.success_fraction,
        "run_id": outcome.run_id,
        "drift": dict(outcome.drift),
        "check": dict(outcome.check),
        "stale": list(outcome.stale),
        "newly_failed": list(outcome.newly_failed),
        "recovered": list(outcome.recovered),
        "host_seconds": outcome.host_seconds,
        "error": outcome.error,
    }


def print_notes(outcomes: Sequence[ChipOutcome], console: Console) -> None:
    """What was done to each chip and why (the table has no room for it)."""
    for outcome in outcomes:
        line = Text(f"{outcome.chip_id}: ", style="bold")
        line.append(outcome.detail, style="red" if outcome.failed else "")
        console.print(line, soft_wrap=True)


NIGHTLY_HELP = (
    "Maintain many chips in parallel: check each stored calibration, recalibrate the stale "
    "chips, compare with the previous night.\n\n"
    "A chip whose check holds is not recalibrated ('ok, checked'); one without a stored result "
    "is calibrated; a failing chip is reported with its error while the others finish. Prints "
    "the drift of every quantity since the previous stored result. Exits 1 when a chip failed "
    "or came out degraded."
)


@app.command(rich_help_panel=FLEET_PANEL, help=NIGHTLY_HELP)
def nightly(
    chips: Annotated[
        str,
        typer.Option(
            "--chips",
            metavar="SPEC",
            rich_help_panel=FLEET_PANEL,
            help="Chips to maintain: comma-separated ids; a numeric range in brackets expands, "
            "e.g. rack1-chip[0-7] (rack1-chip0..rack1-chip7) or rack[1-2]-chip[00-15] (a "
            "leading zero keeps the width).",
        ),
    ],
    store: StoreOption = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
    html: HtmlOption = None,
    drift_hours: Annotated[
        float,
        typer.Option(
            "--drift-hours",
            metavar="H",
            min=0.0,
            rich_help_panel="Simulated chip",
            help="Age of every simulated chip in hours: its offsets random-walk with age.",
        ),
    ] = 0.0,
    target_file: TargetFileOption = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            rich_help_panel=FLEET_PANEL,
            help="Check each chip's stored result first and recalibrate only when it is stale "
            "(--no-check recalibrates every chip).",
        ),
    ] = True,
    as_json: JsonOption = False,
    devices: Annotated[
        str | None,
        typer.Option(
            "--devices",
            metavar="CHIP=HOST:PORT,...",
            rich_help_panel=FLEET_PANEL,
            help="Work on chips served at these addresses ('calib serve', one server per chip) "
            "instead of simulated chips; every chip of --chips needs one.",
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            rich_help_panel=FLEET_PANEL,
            help="With --devices: the shared token servers on non-loopback addresses ask for.",
        ),
    ] = None,
) -> None:
    """Maintain many chips in parallel (see NIGHTLY_HELP)."""
    from calib.operations.fleet import SimulatedFleet, dask_client, parse_chip_spec, run_nightly

    ids = parse_chip_spec(chips)
    factory: Any
    if devices is not None:
        from device_remote import RemoteFleet, parse_addresses

        addresses = parse_addresses(devices)
        missing = [chip for chip in ids if chip not in addresses]
        if missing:
            raise CLIError(f"--devices names no server for {', '.join(missing)}")
        if drift_hours:
            raise CLIError(
                "--drift-hours ages simulated chips; with --devices it applies where "
                "the chips are served"
            )
        factory = RemoteFleet(addresses, token_file=None if token_file is None else str(token_file))
    else:
        if token_file is not None:
            raise CLIError("--token-file applies only with --devices")
        factory = SimulatedFleet(drift_hours=drift_hours)
    target = _target(target_file)
    check_output_file(html, "--html")
    location = resolve_store(store)
    err, out = error_console(), output_console()
    done = 0

    def report(outcome: ChipOutcome) -> None:
        nonlocal done
        done += 1
        err.print(_progress_line(outcome, done, len(ids)), soft_wrap=True)

    with dask_client(scheduler, workers=workers) as client:
        err.print(
            f"maintaining {len(ids)} chip{'s' if len(ids) != 1 else ''} on "
            f"{escape(_cluster_text(scheduler, workers))}, store {escape(location)}"
        )
        outcomes = run_nightly(
            ids,
            location,
            client=client,
            target=target,
            device_factory=factory,
            check_first=check,
            on_outcome=report,
        )
    path = None
    if html is not None:
        from reports.fleet import write_nightly_report

        path = write_nightly_report(outcomes, html)
    if as_json:
        print_json(
            {
                "store": location,
                "chips": [outcome_document(item) for item in outcomes],
                "html": None if path is None else str(path),
            }
        )
    else:
        out.print(nightly_table(outcomes, out))
        print_notes(outcomes, out)
        if path is not None:
            out.print(f"HTML report: {escape(str(path))}")
    bad = [outcome.chip_id for outcome in outcomes if outcome.report_status != "ok"]
    if bad:
        err.print(
            f"[bold red]{len(bad)} of {len(outcomes)} chips failed or degraded:[/] "
            f"{escape(', '.join(bad))}"
        )
        raise typer.Exit(int(ExitCode.INCOMPLETE))


# -- study --------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    import numpy as np

    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else float("nan")


def spread_table(study: MismatchStudy) -> Table:
    """Spread before/after calibration per quantity (median over chips of each chip's std)."""
    import numpy as np

    from reports.study import study_data
    from reports.summary import ordered_quantities
    from reports.units import display_unit, format_number, quantity_label

    chips = study_data(study).chips
    names = ordered_quantities({name for chip in chips for name in chip.std_after})
    table = Table(
        title="spread over successful neurons (median over chips)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for column in ("quantity", "std before", "std after", "reduction"):
        table.add_column(column, justify="left" if column == "quantity" else "right")
    for name in names:
        unit = display_unit(name)
        before = _median([chip.std_before.get(name, np.nan) for chip in chips])
        after = _median([chip.std_after.get(name, np.nan) for chip in chips])
        ratio = before / after if after > 0 else float("nan")
        table.add_row(
            escape(quantity_label(name)),
            format_number(unit(before)),
            format_number(unit(after)),
            format_number(ratio),
        )
    return table


def yield_table(study: MismatchStudy) -> Table:
    import numpy as np

    from reports.units import display_unit, format_number, quantity_label

    table = Table(
        title="yield over the target grid (physical reachability, mean over chips)",
        title_justify="left",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("quantity")
    table.add_column("target → yield")
    from reports.study import study_data

    for curve in study_data(study).yields:
        unit = display_unit(curve.quantity)
        mean = np.nanmean(curve.fraction, axis=0)
        cells = ", ".join(
            f"{format_number(unit(value))}: {100 * fraction:.1f} %"
            for value, fraction in zip(curve.targets, mean, strict=True)
        )
        table.add_row(escape(quantity_label(curve.quantity)), cells)
    return table


def study_progress(console: Console) -> Any:
    """A per-chip progress line on `console` (stderr) as each chip of a study finishes."""
    import time

    started = time.perf_counter()

    def report(chip_id: str, error: str | None, done: int, total: int) -> None:
        line = Text(f"[{done}/{total}] ")
        line.append(chip_id, style="bold cyan")
        if error is None:
            line.append(" calibrated", style="green")
        else:
            last = error.strip().splitlines()[-1] if error.strip() else "unknown error"
            line.append(f" failed: {last}", style="red")
        line.append(f" ({time.perf_counter() - started:.0f} s since the start)")
        console.print(line, soft_wrap=True)

    return report


STUDY_HELP = (
    "Monte Carlo mismatch study: calibrate N simulated chips; spread before and after, yield "
    "over a grid of targets.\n\n"
    "Yield over the grid is the physical reachability on each chip's ground truth (the best "
    "code reaches the target within tolerance, inside the cell range): cheap, and an upper "
    "bound on what a calibration achieves; the measured success of the real calibration at the "
    "study's own target is shown beside it."
)


@app.command(rich_help_panel=FLEET_PANEL, help=STUDY_HELP)
def study(
    chips: Annotated[
        int,
        typer.Option(
            "--chips",
            metavar="N",
            min=1,
            rich_help_panel=FLEET_PANEL,
            help="Number of simulated chips (ids <name>-000, <name>-001, ...).",
        ),
    ],
    name: Annotated[
        str,
        typer.Option(
            "--name",
            rich_help_panel=FLEET_PANEL,
            help="Study name: the chip ids derive from it, so a name is always the same chips.",
        ),
    ] = "study",
    mismatch_scale: Annotated[
        float,
        typer.Option(
            "--mismatch-scale",
            metavar="S",
            min=0.0,
            rich_help_panel=FLEET_PANEL,
            help="Multiplies every fixed-pattern spread of the simulated chips.",
        ),
    ] = 1.0,
    target_grid: Annotated[
        str | None,
        typer.Option(
            "--target-grid",
            metavar="SPEC",
            rich_help_panel=FLEET_PANEL,
            help="Targets to compute the yield at: QUANTITY=START:STOP:COUNT, comma-separated, "
            "e.g. tau_mem=2:40:8 (µs for times, CADC LSB for potentials; quantities leak, "
            "reset, threshold, tau_mem, tau_syn_exc, tau_syn_inh). Default: "
            "leak=50:160:12,tau_mem=2:40:8.",
        ),
    ] = None,
    target_file: TargetFileOption = None,
    html: HtmlOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            metavar="FILE.nc|FILE.zarr",
            rich_help_panel=OUTPUT_PANEL,
            help="Export the study data (per chip and neuron) as netCDF (.nc) or zarr (.zarr).",
        ),
    ] = None,
    scheduler: SchedulerOption = None,
    workers: WorkersOption = DEFAULT_WORKERS,
) -> None:
    """Monte Carlo mismatch study (see STUDY_HELP)."""
    from calib.operations.fleet import dask_client
    from calib.operations.study import (
        check_export_path,
        parse_target_grid,
        run_study,
        study_chip_ids,
    )

    grid = parse_target_grid(DEFAULT_GRID if target_grid is None else target_grid)
    target = _target(target_file)
    if output is not None:
        check_export_path(output)
        check_output_file(output, "--output")
        if output.exists():
            raise CLIError(f"--output {output} exists; choose a new file for the study data")
    check_output_file(html, "--html")
    study_chip_ids(name, chips)
    err, out = error_console(), output_console()
    with dask_client(scheduler, workers=workers) as client:
        err.print(
            f"study {escape(name)!r}: calibrating {chips} simulated chip"
            f"{'s' if chips != 1 else ''} (mismatch ×{mismatch_scale:g}) on "
            f"{escape(_cluster_text(scheduler, workers))}"
        )
        result = run_study(
            chips,
            name=name,
            mismatch_scale=mismatch_scale,
            target=target,
            grid=grid,
            client=client,
            on_chip=study_progress(err),
        )
    if not result.chips:
        raise CommandFailed(f"every chip of study {name!r} failed; see the errors above")
    for key, value in result.parameters().items():
        out.print(Text(f"{key}: {value}"), soft_wrap=True)
    out.print(spread_table(result))
    out.print(yield_table(result))
    if output is not None:
        out.print(f"study data: {escape(str(result.export(output)))}")
    if html is not None:
        from reports.study import write_mismatch_study_report

        out.print(f"HTML report: {escape(str(write_mismatch_study_report(result, html)))}")
