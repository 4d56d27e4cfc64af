"""The `calib` command line (typer + rich); the console script runs `main()`.

How a command module registers itself: it imports `app` from `calib.cli.app` and decorates
functions with `@app.command()`; this package imports every command module once, below, so
that their decorators run before the app is called. To add commands (e.g. `calib nightly`):

    # calib/cli/fleet_commands.py
    from calib.cli.app import CLIError, ExitCode, StoreOption, app, open_store

    @app.command(rich_help_panel="Fleet")
    def nightly(store: StoreOption = None) -> None:
        \"\"\"One line of help.\"\"\"
        ...

and add `from calib.cli import fleet_commands` next to the import of `commands` below. A command
raises `CLIError` (or ValueError, a StoreError, OSError) for a usage error: the app prints one
`error: ...` line and exits 2; `raise typer.Exit(int(ExitCode.INCOMPLETE))` ends with exit 1.
Shared pieces in `calib.cli.app`: `StoreOption`/`open_store` (the store from --store,
$CALIB_STORE or the per-user default), `RunOption`, `check_chip`, `output_console`,
`error_console`, `ExitCode`.
"""

from calib.cli import commands  # noqa: F401  (registers the chip commands on `app`)
from calib.cli import fleet_commands  # noqa: F401  (registers nightly and study on `app`)
from calib.cli.app import ExitCode, app


def main() -> None:
    """Entry point of the `calib` console script."""
    app(prog_name="calib")


__all__ = ["ExitCode", "app", "main"]
