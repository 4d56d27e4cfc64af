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
from calib.core.plans import PLANS, quantity_spec

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
    shown = quantity_spec(name).unset if default is None else f"{default:g}"
    return typer.Option(
        flag_name(name), metavar=unit.label,
        help=f"{name} in {unit.label} ({low:g}..{high:g}; default {shown}).",
        rich_help_panel=TARGET_PANEL, show_default=False,
    )


class TargetFlagsCommand:
    """A typer command with a flag per registered quantity, gathered into `target_flags`.

    The signature typer reads is built from the plans when the command line is built, so a plan
    registered later (an experiment's own quantity) gets its flag too.
    """

    def __init__(self, command: Callable[..., Any]) -> None:
        functools.update_wrapper(self, command, assigned=("__module__", "__name__",
                                                          "__qualname__", "__doc__"))
        self.command = command
        if FLAGS_PARAMETER not in inspect.signature(command).parameters:
            raise TypeError(f"{command.__name__} needs a {FLAGS_PARAMETER} parameter")

    @staticmethod
    def _flags() -> list[inspect.Parameter]:
        quantities = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[float | None, target_option(name)])
                      for name in PLANS.quantities()]
        settings = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                      annotation=Annotated[int | None, target_option(name)])
                    for name in PLANS.settings()]
        return quantities + settings

    @property
    def __signature__(self) -> inspect.Signature:
        signature = inspect.signature(self.command, eval_str=True)
        parameters: list[inspect.Parameter] = []
        for parameter in signature.parameters.values():
            if parameter.name == FLAGS_PARAMETER:
                parameters.extend(self._flags())
            else:
                parameters.append(parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        return signature.replace(parameters=parameters)

    @property  # type: ignore[override]
    def __annotations__(self) -> dict[str, Any]:
        hints = get_type_hints(self.command, include_extras=True)
        hints.pop(FLAGS_PARAMETER, None)
        return {**hints, **{flag.name: flag.annotation for flag in self._flags()}}

    def __call__(self, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in (*PLANS.quantities(), *PLANS.settings())}
        return self.command(**kwargs, **{FLAGS_PARAMETER: given})


def with_target_flags(command: F) -> F:
    """`command` with a flag per registered quantity (see `TargetFlagsCommand`)."""
    return TargetFlagsCommand(command)  # type: ignore[return-value]
