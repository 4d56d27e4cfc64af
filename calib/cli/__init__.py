"""The `calib` command line (typer + rich); the console script runs `main()`.

How a command module registers itself: it imports `app` from `calib.cli.app` and decorates
functions with `@app.command()`; importing the module runs the decorators. COMMAND_MODULES below
lists every such module; a new one adds one line there. For example:

    # calib/cli/fleet_commands.py
    from calib.cli.app import CLIError, ExitCode, StoreOption, app, open_store

    @app.command(rich_help_panel="Fleet")
    def nightly(store: StoreOption = None) -> None:
        '''One line of help.'''
        ...

A command raises `CLIError` (or ValueError, a StoreError, OSError) for a usage error: the app
prints one `error: ...` line and exits 2; `raise typer.Exit(int(ExitCode.INCOMPLETE))` ends with
exit 1; any other exception prints one line and exits 3 (`calib --debug` shows the traceback).
Shared pieces in `calib.cli.app`: `StoreOption`/`open_store` (the store from --store,
$CALIB_STORE or the per-user default), `RunOption`, `check_chip`, `output_console`,
`error_console`, `ExitCode`.
"""

from importlib import import_module

from calib.cli.app import ExitCode, app

COMMAND_MODULES = (
    "calib.cli.commands",  # calibrate, targets, show, history, export, check, report, chips
    "calib.cli.fleet_commands",  # nightly, study
    "calib.cli.store_commands",  # store verify, store repair
    "calib.cli.serve_commands",  # serve
)
"""Modules whose import registers their commands on `app`."""

for _module in COMMAND_MODULES:
    import_module(_module)


def main() -> None:
    """Entry point of the `calib` console script."""
    app(prog_name="calib")


__all__ = ["ExitCode", "app", "main"]
