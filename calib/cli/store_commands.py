"""`calib store verify` and `calib store repair`: integrity checks and clean-up of a results
store (see docs/results_store.md).

Exit codes: 0 the store is intact (verify) or was repaired (repair); 1 damage found (verify),
or damage that repair could not remove; 2 usage error (bad option, no store).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from calib.cli.app import (
    CLIError,
    ExitCode,
    StoreOption,
    app,
    error_console,
    open_store,
    output_console,
)

if TYPE_CHECKING:
    from results_store import ResultsStore

store_app = typer.Typer(
    name="store",
    help="Check a results store and clean up damaged runs and leftovers of killed writers.",
    no_args_is_help=True,
)
app.add_typer(store_app, rich_help_panel="Inspect")

MAX_AGE_HOURS = 24 * 365


@store_app.command()
def verify(store: StoreOption = None) -> None:
    """Check every run of every chip (metadata, seal, every array); list damaged runs.

    Exit 0 if every run is intact, 1 if any run or index is damaged.
    """
    results = open_store(store)
    report = results.verify()
    out = output_console()
    for problem in report.damaged:
        out.print(f"damaged  {escape(str(problem))}", soft_wrap=True)
    for problem in report.damaged_indexes:
        out.print(f"index    {escape(str(problem))}", soft_wrap=True)
    for problem in report.partial:
        out.print(
            f"partial  {escape(problem.chip_id)}/{escape(problem.run_id)}: not committed "
            "(a save in progress or a killed writer)",
            soft_wrap=True,
        )
    out.print(
        f"{report.checked} run{'s' if report.checked != 1 else ''} checked in "
        f"{escape(results.location)}: {len(report.damaged)} damaged, "
        f"{len(report.partial)} not committed"
    )
    if not report.ok:
        error_console().print("run 'calib store repair' to move damaged runs to the quarantine")
        raise typer.Exit(int(ExitCode.INCOMPLETE))


@store_app.command()
def repair(
    older_than: Annotated[
        float,
        typer.Option(
            "--older-than",
            metavar="HOURS",
            min=0.0,
            max=MAX_AGE_HOURS,
            help="Remove runs never committed and temporary files only when older than this "
            "(a save may still be writing newer ones).",
        ),
    ] = 1.0,
    store: StoreOption = None,
) -> None:
    """Move damaged runs to the store's quarantine and remove leftovers of killed writers.

    Exit 0 when the store is intact afterwards, 1 if damage remains.
    """
    results = open_store(store)
    report = results.repair(older_than=timedelta(hours=older_than))
    out = output_console()
    for problem in report.quarantined:
        out.print(f"quarantined  {escape(str(problem))}", soft_wrap=True)
    for problem in report.removed_partial:
        out.print(
            f"removed      {escape(problem.chip_id)}/{escape(problem.run_id)} (never committed)",
            soft_wrap=True,
        )
    for path in report.removed_temporary:
        out.print(f"removed      {escape(path)} (temporary file)", soft_wrap=True)
    out.print(
        f"{len(report.quarantined)} run(s) quarantined, {len(report.removed_partial)} "
        f"partial run(s) and {len(report.removed_temporary)} temporary file(s) removed"
    )
    if not results.verify().ok:
        raise typer.Exit(int(ExitCode.INCOMPLETE))


def export_history(
    results: ResultsStore,
    chip: str,
    export_format: str,
    run: str | None,
    output: Path | None,
    kind: str,
) -> None:
    """`calib export CHIP --history`: every calibration of the chip as one dataset with
    dimensions (run, neuron), as netCDF or a zarr v3 store."""
    if run is not None:
        raise CLIError("--history exports every run of the chip; it takes no --run")
    if export_format not in ("netcdf", "zarr"):
        raise CLIError(f"--history needs --format netcdf or zarr, not {export_format}")
    output = output or Path(f"{chip}-history.{'nc' if export_format == 'netcdf' else 'zarr'}")
    if output.exists() and (export_format == "zarr" or output.is_dir()):
        raise CLIError(f"--output {output} exists; choose a new path")
    results.export_history(chip, output, format=export_format, kind=kind)  # type: ignore[arg-type]
    error_console().print(
        f"wrote the calibration history of chip {escape(chip)} to {escape(str(output))}"
    )
