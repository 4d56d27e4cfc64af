"""One command-line flag per registered quantity (`--tau-mem`, `--leak`, ...), from the plans.

A command with target flags is declared with `cls=TargetFlagsCommand` and a `target_flags`
parameter, which `with_target_flags` hides from typer::

    @app.command(cls=TargetFlagsCommand)
    @with_target_flags
    def calibrate(..., target_flags: dict[str, float | None] | None = None) -> None: ...

The command receives the flags together as `target_flags` (name -> value in command-line
units, µs for times and CADC LSB for potentials; None where the flag was not given).

The flags are built from the registered plans when the command's options are first asked for
(its `--help`, or parsing its arguments), not when the command line is built: `calib --help`
and the other commands never import the plans, the routines or numpy.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from importlib import import_module
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

TARGET_PANEL = "Target (µs for times, CADC LSB for potentials; default: calix's LIF defaults)"
FLAGS_PARAMETER = "target_flags"
FLAGS_KEY = "calib.target_flags"
"""Key of the given flags in click's context meta, from the command to its function."""

F = TypeVar("F", bound=Callable[..., Any])


def flag_name(quantity: str) -> str:
    return f"--{quantity.replace('_', '-')}"


def target_option(name: str) -> Any:
    """The typer option of one target field."""
    from calib.cli.target_file import cli_range, cli_unit, default_value
    from calib.core.plans import PLANS

    unit = cli_unit(name)
    low, high = cli_range(name)
    default = default_value(name)
    spec = PLANS.quantities().get(name)
    shown = (spec.unset if spec is not None else "unset") if default is None else f"{default:g}"
    setting = PLANS.settings().get(name)
    text = f"{name} in {unit.label} ({low:g}..{high:g}; default {shown})."
    if _flag_type(setting) is str:
        text = f"{name}: {setting.description} (default {shown})."  # type: ignore[union-attr]
    return typer.Option(
        flag_name(name),
        metavar=unit.label,
        help=text,
        rich_help_panel=TARGET_PANEL,
        show_default=False,
    )


def quantity_names() -> list[str]:
    """The registered target fields: the quantities, then the settings (importing the plans)."""
    from calib.core.plans import PLANS

    return [*PLANS.quantities(), *PLANS.settings()]


def _flag_signature(names: tuple[str, ...]) -> Callable[..., None]:
    """A function whose signature is one keyword option per field (typer reads it): a number
    per quantity, an integer per setting."""
    from calib.core.plans import PLANS

    def target_flags(**kwargs: Any) -> None:
        raise NotImplementedError("only the signature is used")

    settings = PLANS.settings()
    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[_flag_type(settings.get(name)) | None, target_option(name)],
        )
        for name in names
    ]
    target_flags.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    target_flags.__annotations__ = {
        parameter.name: parameter.annotation for parameter in parameters
    }
    return target_flags


def _flag_type(setting: Any) -> type:
    """A quantity's flag takes a number, a setting's an integer, a text setting's text."""
    from calib.core.plans import TextSettingSpec

    if setting is None:
        return float
    return str if isinstance(setting, TextSettingSpec) else int


@functools.lru_cache(maxsize=8)
def _flag_params(names: tuple[str, ...]) -> tuple[Any, ...]:
    """The click options of `names`, built by typer from a signature (cached per set)."""
    probe = typer.Typer()
    probe.command()(_flag_signature(names))
    return tuple(typer.main.get_command(probe).params)


def flag_params() -> list[Any]:
    """The click options of every registered quantity (plans registered later included)."""
    return list(_flag_params(tuple(quantity_names())))


class TargetFlagsCommand(TyperCommand):
    """A command with a flag per registered quantity, added when its options are first read."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        own = {param.name for param in params}
        flags = [param for param in flag_params() if param.name not in own]
        help_options = [param for param in params if getattr(param, "name", None) == "help"]
        others = [param for param in params if param not in help_options]
        return [*others, *flags, *help_options]

    def invoke(self, ctx: Any) -> Any:
        names = quantity_names()
        ctx.meta[FLAGS_KEY] = {name: ctx.params.pop(name, None) for name in names}
        return super().invoke(ctx)


class _WithTargetFlags:
    """`command` with its `target_flags` parameter hidden from typer and filled at call time."""

    def __init__(self, command: Callable[..., Any]) -> None:
        functools.update_wrapper(
            self, command, assigned=("__module__", "__name__", "__qualname__", "__doc__")
        )
        self.command = command
        signature = inspect.signature(command)
        if FLAGS_PARAMETER not in signature.parameters:
            raise TypeError(f"{command.__name__} needs a {FLAGS_PARAMETER} parameter")

    @property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self.command, eval_str=True)
        return signature.replace(
            parameters=[
                parameter
                for parameter in signature.parameters.values()
                if parameter.name != FLAGS_PARAMETER
            ]
        )

    @property  # type: ignore[override]
    def __annotations__(self) -> dict[str, Any]:
        from typing import get_type_hints

        hints = get_type_hints(self.command, include_extras=True)
        hints.pop(FLAGS_PARAMETER, None)
        return hints

    def __call__(self, **kwargs: Any) -> Any:
        context = _click_globals().get_current_context(silent=True)
        given = dict((context.meta.get(FLAGS_KEY) if context is not None else None) or {})
        return self.command(**kwargs, **{FLAGS_PARAMETER: given})


def _click_globals() -> Any:
    """click's context globals as typer uses them (typer >= 0.22 bundles its own click)."""
    core = next(
        base
        for base in typer.Context.__mro__
        if base.__name__ == "Context" and base is not typer.Context
    ).__module__
    return import_module(core.rsplit(".", 1)[0] + ".globals")


def with_target_flags(command: F) -> F:
    """`command` (declared with `cls=TargetFlagsCommand`) receiving its `target_flags`."""
    return _WithTargetFlags(command)  # type: ignore[return-value]
