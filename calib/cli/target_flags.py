"""One command-line flag per registered quantity (`--tau-mem`, `--leak`, ...), from the plans.

`with_target_flags(command)` gives a typer command a flag for every target field that a plan
declares, in command-line units (µs for times, CADC LSB for potentials); the command receives
them together as `target_flags` (name -> value, None where the flag was not given).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_type_hints

import typer

from calib.cli.target_file import cli_range, cli_unit, default_value
from calib.core.plans import PLANS

TARGET_PANEL = "Target (µs for times, CADC LSB for potentials; default: calix's LIF defaults)"
FLAGS_PARAMETER = "target_flags"

F = TypeVar("F", bound=Callable[..., Any])


def flag_name(quantity: str) -> str:
    return f"--{quantity.replace('_', '-')}"


def target_option(name: str) -> Any:
    """The typer option of one target field."""
    unit = cli_unit(name)
    low, high = cli_range(name)
    default = default_value(name)
    shown = "not calibrated" if default is None else f"{default:g}"
    return typer.Option(
        flag_name(name), metavar=unit.label,
        help=f"{name} in {unit.label} ({low:g}..{high:g}; default {shown}).",
        rich_help_panel=TARGET_PANEL, show_default=False,
    )


def with_target_flags(command: F) -> F:
    """`command` with a flag per registered quantity, gathered into its `target_flags`."""
    signature = inspect.signature(command, eval_str=True)
    hints = get_type_hints(command, include_extras=True)
    if FLAGS_PARAMETER not in signature.parameters:
        raise TypeError(f"{command.__name__} needs a {FLAGS_PARAMETER} parameter")
    names = list(PLANS.quantities())
    flags = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                               annotation=Annotated[float | None, target_option(name)])
             for name in names]
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name == FLAGS_PARAMETER:
            parameters.extend(flags)
        else:
            parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in names}
        return command(**kwargs, **{FLAGS_PARAMETER: given})

    wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{name: hint for name, hint in hints.items() if name != FLAGS_PARAMETER},
        **{flag.name: flag.annotation for flag in flags},
    }
    return wrapper  # type: ignore[return-value]
