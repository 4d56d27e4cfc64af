"""The `calib` typer app: global options, store resolution, error handling and exit codes.

Every command module registers its commands on `app` (see `calib.cli`). Commands raise
ordinary exceptions; `CalibGroup` turns them into one `error: ...` line on stderr and an exit
code, so no command needs its own try/except:

- 0  success
- 1  calibration incomplete (too many failed neurons) or a stored result that drifted
- 2  usage error: bad option, chip id, target, file, run id, or a missing store
- 3  the command could not finish for another reason (device or internal error)

`calib --debug COMMAND ...` (or CALIB_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from enum import IntEnum
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

if TYPE_CHECKING:
    from results_store import ResultsStore

# Only typer and rich are imported here: `calib --help`, `calib --version` and every
# `calib COMMAND --help` start at once. The store, numpy and the calibration code are
# imported by the commands that use them.

APP_NAME = "analog-calib"
STORE_ENV = "CALIB_STORE"
DEBUG_ENV = "CALIB_DEBUG"
PIPE_WIDTH = 120
DEBUG_KEY = "calib.debug"
"""Key of the --debug flag in click's context meta (shared by every nested context)."""

_click_errors = import_module(typer.BadParameter.__module__)
"""click's exceptions as typer uses them (typer >= 0.22 bundles its own copy of click)."""
ClickException: type[Exception] = _click_errors.ClickException
UsageError: type[Exception] = _click_errors.UsageError
NoArgsIsHelpError: type[Exception] = getattr(_click_errors, "NoArgsIsHelpError", ())


class ExitCode(IntEnum):
    OK = 0
    INCOMPLETE = 1
    """Failed neurons above --max-failed, or a check that found the chip drifted."""
    USAGE = 2
    FAILED = 3
    """Anything else that stopped a command: a device or internal error."""


class CLIError(Exception):
    """An error the user can act on; printed as one line, exit code `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


class CommandFailed(CLIError):
    """A command that could not finish through no fault of its input (exit 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, ExitCode.FAILED)


def usage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix (exit 2)."""
    from results_store.errors import StoreError

    return (
        ValueError,  # bad chip ids, targets out of range, malformed TOML and NIR files
        StoreError,  # missing store, unknown run, damaged or unreadable runs
        LookupError,
        OSError,  # files that cannot be read or written
    )


def _console(stderr: bool) -> Console:
    """A console; written to a file or a pipe, lines are PIPE_WIDTH wide instead of rich's 80
    columns, so run ids and table rows stay whole ($COLUMNS wins)."""
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(stderr=stderr, highlight=False, width=PIPE_WIDTH)


def error_console() -> Console:
    """Where errors, notes and progress go: stderr, so stdout stays clean for data."""
    return _console(stderr=True)


def output_console() -> Console:
    """Where results go: stdout."""
    return _console(stderr=False)


def one_line(message: str) -> str:
    """`message` with its line breaks and indentation folded into single spaces."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def print_error(message: str) -> None:
    error_console().print(f"[bold red]error:[/] {escape(one_line(message))}", soft_wrap=True)


def describe(error: BaseException) -> tuple[str, ExitCode]:
    """The one line shown for `error`, and the exit code it ends the command with."""
    import tomllib

    from results_store.errors import StoreError

    if isinstance(error, CLIError):
        return str(error), error.code
    if isinstance(error, tomllib.TOMLDecodeError):
        return f"not a valid TOML file: {error}", ExitCode.USAGE
    if (
        isinstance(error, FileNotFoundError)
        and error.filename
        and not isinstance(error, StoreError)
    ):
        return f"no such file: {error.filename}", ExitCode.USAGE
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}", ExitCode.USAGE
    if isinstance(error, usage_errors()):
        return str(error) or type(error).__name__, ExitCode.USAGE
    return (
        f"{type(error).__name__}: {error} (run 'calib --debug ...' for the traceback)",
        ExitCode.FAILED,
    )


class CalibGroup(TyperGroup):
    """The root command group: one-line errors and the exit codes of this CLI."""

    def get_help_option(self, ctx: Any) -> Any:
        """The --help option, defaulting to False: typer would otherwise build a pydantic
        validator for its missing value on every `calib COMMAND ...` (a tenth of a second)."""
        option = super().get_help_option(ctx)
        if option is not None and option.default is None:
            option.default = False
        return option

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except Exception as error:
            if ctx.meta.get(DEBUG_KEY):
                raise
            message, code = describe(error)
            print_error(message)
            raise typer.Exit(int(code)) from error

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            value = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as error:
            error.show()  # the help text
            sys.exit(int(ExitCode.OK))
        except UsageError as error:
            context = getattr(error, "ctx", None)
            where = context.command_path if context is not None else "calib"
            print_error(f"{error.format_message()} (see '{where} --help')")  # type: ignore[attr-defined]
            sys.exit(int(ExitCode.USAGE))
        except ClickException as error:
            print_error(error.format_message())  # type: ignore[attr-defined]
            sys.exit(error.exit_code)  # type: ignore[attr-defined]
        except typer.Abort:
            print_error("aborted")
            sys.exit(130)
        sys.exit(value if isinstance(value, int) else int(ExitCode.OK))


app = typer.Typer(
    name="calib",
    cls=CalibGroup,
    help=(
        "Calibrate analog neuromorphic chips (BrainScaleS-2-like, 512 neurons) and inspect "
        "the stored results. The default backend is a simulated chip.\n\n"
        "Units: potentials in CADC LSB, times in microseconds (µs) of hardware time.\n\n"
        "Exit codes: 0 success; 1 calibration incomplete or the chip drifted; 2 usage error; "
        "3 the command could not finish (device or internal error)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib import metadata

        try:
            version = metadata.version(APP_NAME)
        except metadata.PackageNotFoundError:
            version = "unknown"
        output_console().print(f"calib ({APP_NAME}) {version}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="Show the full traceback of an error instead of one line.",
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Calibrate analog neuromorphic chips and inspect the stored results."""
    ctx.meta[DEBUG_KEY] = debug


# -- shared options and their resolution ------------------------------------------------------


def default_store_location() -> Path:
    """The per-user default store: <user data dir of 'analog-calib'>/store."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME)) / "store"


STORE_HELP = (
    "Results store: a directory or an fsspec URL. Default: $CALIB_STORE if set, else the "
    "per-user data directory (on Linux ~/.local/share/analog-calib/store)."
)
StoreOption = Annotated[
    str | None,
    typer.Option("--store", envvar=STORE_ENV, show_envvar=False, metavar="PATH", help=STORE_HELP),
]
RunOption = Annotated[
    str | None,
    typer.Option(
        "--run", metavar="RUN", help="A run id (see 'calib history'); default: the newest run."
    ),
]


def check_chip(value: str) -> str:
    """A chip id the store accepts (checked before anything is simulated or stored)."""
    from results_store.ids import CHIP_ID_MAX_LENGTH, check_chip_id

    try:
        return check_chip_id(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a chip id: use letters, digits, '.', '_' and '-', starting with "
            f"a letter or digit, no '..', at most {CHIP_ID_MAX_LENGTH} characters"
        ) from None


def check_output_file(path: Path | None, flag: str) -> None:
    """Fail before the work, not after it, when an output file cannot be written."""
    if path is None:
        return
    if not str(path).strip():
        raise CLIError(f"{flag} is empty: give a file path")
    if path.is_dir():
        raise CLIError(f"{flag} {path}: is a directory, give a file path")
    parent = path.parent
    if not parent.is_dir():
        raise CLIError(f"{flag} {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise CLIError(f"{flag} {path}: directory {parent} is not writable")


def store_location(store: str | None) -> str:
    """The store to use: --store / $CALIB_STORE, else the per-user default."""
    if store is None:
        return str(default_store_location())
    if not store.strip():
        raise CLIError(
            "--store (or $CALIB_STORE) is empty: give a store path, or leave it "
            "unset for the per-user default"
        )
    if "://" in store:
        return store
    return str(Path(store).expanduser())


def open_store(store: str | None, *, create: bool = False) -> ResultsStore:
    """The results store; reading commands (create=False) never make one."""
    from results_store import ResultsStore, StoreNotFoundError

    location = store_location(store)
    if not create and "://" not in location and not Path(location).exists():
        raise CLIError(
            f"no results store at {location} (calibrate a chip first, or point "
            f"--store / ${STORE_ENV} at an existing store)"
        )
    try:
        return ResultsStore(location, create=create)
    except StoreNotFoundError as error:
        raise CLIError(f"no results store at {location}: {error}") from None


JSON_HELP = "Print one JSON document on stdout instead of tables (values in stored units)."
JsonOption = Annotated[bool, typer.Option("--json", help=JSON_HELP)]


def plain_json(value: Any) -> Any:
    """`value` with numpy numbers and arrays as Python ones, NaN and infinities as None."""
    import math

    if isinstance(value, dict):
        return {str(key): plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [plain_json(item) for item in items]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return plain_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def print_json(document: Any) -> None:
    """One JSON document on stdout (strict JSON: no NaN)."""
    import json

    typer.echo(json.dumps(plain_json(document), indent=2, ensure_ascii=False, allow_nan=False))
