"""Neuron targets as a person writes them: command-line units, TOML target files.

On the command line and in target files potentials are in CADC LSB and times in microseconds
(µs) of hardware time; `NeuronTarget` keeps times in seconds. A target file is a TOML table of
`NeuronTarget` fields, each a number or a list of one number per neuron (512)::

    # target.toml
    leak = 80          # CADC LSB
    threshold = 125
    tau_mem = 10.0     # µs
    refractory_time = 2.0
    membrane_capacitance = 63   # capacitance units 0..63, not calibrated

Fields left out keep their defaults. An unknown key, a value that is not a number, or one out of
the allowed range is an error naming the key, the value and the range (in these units).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from calib.core.plans import PLANS, SettingSpec, TextSettingSpec, quantity_spec
from calib.core.targets import NeuronTarget
from device_model.protocol import N_NEURONS

MICROSECOND = 1e-6
CAPACITANCE_FIELD = "membrane_capacitance"
MAX_TARGET_FILE_BYTES = 1 << 20
"""A target file of 512 values per field is tens of kB; more is no target file."""
MAX_TARGET_FILE_NESTING = 8


def setting_spec(name: str) -> SettingSpec | None:
    """The spec of a target field that is set, not calibrated (None for a quantity)."""
    return PLANS.settings().get(name)


@dataclass(frozen=True)
class CliUnit:
    """How a target field is written on the command line: its unit and factor to SI."""

    label: str
    to_si: float


NOT_CALIBRATED = "not calibrated"
NOT_SET = "not set"


def cli_unit(name: str) -> CliUnit:
    """The command-line unit of a target field (µs for times, CADC LSB for potentials)."""
    if (setting := setting_spec(name)) is not None:
        return CliUnit(setting.unit, 1.0)
    spec = quantity_spec(name)
    return CliUnit("µs", MICROSECOND) if spec.unit == "s" else CliUnit(spec.unit, 1.0)


def cli_range(name: str) -> tuple[float, float]:
    """Allowed target range of a field in command-line units."""
    if (setting := setting_spec(name)) is not None:
        return setting.low, setting.high
    spec = quantity_spec(name)
    scale = cli_unit(name).to_si
    # round away the float noise of the unit conversion (0.3e-6 / 1e-6 = 0.29999999999999993)
    return float(f"{spec.low / scale:.12g}"), float(f"{spec.high / scale:.12g}")


def target_fields() -> list[str]:
    """Every field a target file or the command line may set, in NeuronTarget order."""
    return list(NeuronTarget.field_names())


def default_value(name: str) -> float | None:
    """A field's default, in command-line units (None: not calibrated unless asked for)."""
    if (setting := setting_spec(name)) is not None:
        return None if setting.default is None else float(setting.default)
    default = quantity_spec(name).default
    if default is None:
        return None
    return float(f"{float(default) / cli_unit(name).to_si:.12g}")  # type: ignore[arg-type]


def _range_text(name: str) -> str:
    low, high = cli_range(name)
    return f"{low:g}..{high:g} {cli_unit(name).label}"


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where} = {value!r} is not a number")
    return float(value)


def _checked_scalar(name: str, where: str, value: Any) -> float:
    number = _number(where, value)
    low, high = cli_range(name)
    if not (math.isfinite(number) and low <= number <= high):
        raise ValueError(f"{where} = {number:g} is outside the allowed range {_range_text(name)}")
    return number


def _checked(name: str, where: str, value: Any) -> float | np.ndarray:
    """A field's value in command-line units, checked against its range."""
    if isinstance(setting := setting_spec(name), TextSettingSpec):
        try:
            return setting.check(value)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    if setting is not None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (setting.low <= value <= setting.high)
        ):
            raise ValueError(
                f"{where} = {value!r} is outside the allowed range "
                f"{setting.low}..{setting.high} (an integer, {setting.unit})"
            )
        return value
    if isinstance(value, list | tuple | np.ndarray):
        values = list(value)
        if len(values) != N_NEURONS:
            raise ValueError(
                f"{where}: a per-neuron target needs {N_NEURONS} values, got {len(values)}"
            )
        return np.array(
            [_checked_scalar(name, f"{where}[{index}]", item) for index, item in enumerate(values)]
        )
    return _checked_scalar(name, where, value)


def build_target(values: Mapping[str, Any], source: str | None = None) -> NeuronTarget:
    """A NeuronTarget from field values in command-line units (µs, CADC LSB).

    `source` prefixes error messages (a file name); unknown fields are errors.
    """
    known = target_fields()
    prefix = f"{source}: " if source else ""
    for key in values:
        if key not in known:
            raise ValueError(f"{prefix}unknown key {key!r}; allowed keys: {', '.join(known)}")
    converted: dict[str, Any] = {}
    for name, value in values.items():
        checked = _checked(name, f"{prefix}{name}", value)
        if setting_spec(name) is not None:
            converted[name] = checked
        elif isinstance(value, list | tuple | np.ndarray):
            unit = cli_unit(name)
            converted[name] = np.array([to_stored(item, unit) for item in value])
        else:
            converted[name] = to_stored(value, cli_unit(name))
    return NeuronTarget(**converted)


class _FileNumber(float):
    """A number read from a TOML file that remembers how it was written."""

    text: str


def _parse_float(text: str) -> float:
    number = _FileNumber(text.replace("_", ""))
    number.text = text.replace("_", "")
    return number


def to_stored(value: float, unit: CliUnit) -> float:
    """`value` (command-line units) in the stored unit, correctly rounded: the decimal the
    user wrote (or the shortest one of a float) is scaled exactly, then rounded once, so a
    target file written by `target_to_toml` loads back bit for bit."""
    if unit.to_si == 1.0:
        return float(value)
    text = getattr(value, "text", None) or repr(float(value))
    return float(Decimal(text) * Decimal(repr(unit.to_si)))


def read_target_file(path: str | Path) -> dict[str, Any]:
    """The field values of a TOML target file (command-line units), keys not yet checked."""
    path = Path(path)
    with path.open("rb") as handle:
        raw = handle.read(MAX_TARGET_FILE_BYTES + 1)
    if len(raw) > MAX_TARGET_FILE_BYTES:
        raise ValueError(f"{path}: a target file is at most {MAX_TARGET_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {error.start}); a target file is TOML in UTF-8"
        ) from None
    depth = _nesting(text)
    if depth > MAX_TARGET_FILE_NESTING:
        raise ValueError(
            f"{path}: values nested {depth} deep; a target file holds numbers and "
            f"lists of numbers (at most {MAX_TARGET_FILE_NESTING} levels)"
        )
    try:
        data = tomllib.loads(text, parse_float=_parse_float)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not a valid TOML target file: {error}") from None
    for key, value in data.items():
        if isinstance(value, dict):
            raise ValueError(
                f"{path}: unknown key {key!r} (a table); a target file holds "
                f"only the fields {', '.join(target_fields())}"
            )
    return data


def _nesting(text: str) -> int:
    """Deepest nesting of brackets and braces outside strings and comments (a bound checked
    before the parser recurses into it)."""
    depth = deepest = 0
    quote: str | None = None
    comment = False
    for char in text:
        if comment:
            comment = char != "\n"
        elif quote is not None:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            comment = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def load_target_file(path: str | Path) -> NeuronTarget:
    """The NeuronTarget a TOML target file describes."""
    return build_target(read_target_file(path), source=str(path))


def target_as_cli_values(target: NeuronTarget) -> dict[str, float | str]:
    """A target's fields in command-line units; per-neuron fields as 'median (per neuron)',
    optional fields left out as 'not calibrated'."""
    shown: dict[str, float | str] = {}
    for name in target_fields():
        value = getattr(target, name)
        if value is None:
            setting = setting_spec(name)
            shown[name] = NOT_SET if setting is not None else quantity_spec(name).unset
            continue
        if setting_spec(name) is not None:
            shown[name] = value
            continue
        scale = cli_unit(name).to_si
        if isinstance(value, np.ndarray):
            shown[name] = f"{float(np.median(value)) / scale:.4g} (median, per neuron)"
        else:
            shown[name] = float(f"{value / scale:.6g}")
    return shown


def _exact_cli_text(value: float, to_si: float) -> str:
    """`value` (stored unit) as a TOML number in command-line units that `to_stored` turns
    back into `value` exactly: its shortest decimal, shifted by the unit."""
    number = Decimal(repr(float(value)))
    if to_si != 1.0:
        number = number / Decimal(repr(to_si))
    text = str(number)
    return (
        text
        if any(mark in text for mark in ".eE") or "inf" in text or "nan" in text
        else f"{text}.0"
    )


def target_to_toml(target: NeuronTarget, *, header: str | None = None) -> str:
    """`target` as a TOML target file (command-line units: µs, CADC LSB) that
    `load_target_file` reads back as an equal target, per-neuron arrays included."""
    lines = [f"# {line}" for line in (header or "").splitlines()]
    for name in target_fields():
        value = getattr(target, name)
        if value is None:
            continue
        if isinstance(setting := setting_spec(name), TextSettingSpec):
            lines.append(f"{name} = {json.dumps(value)}  # {setting.unit}, not calibrated")
            continue
        if setting is not None:
            lines.append(f"{name} = {int(value)}  # {setting.unit}, not calibrated")
            continue
        unit = cli_unit(name)
        if isinstance(value, np.ndarray):
            items = [_exact_cli_text(float(item), unit.to_si) for item in value]
            rows = [", ".join(items[start : start + 8]) for start in range(0, len(items), 8)]
            lines.append(f"{name} = [  # {unit.label}, one value per neuron")
            lines.extend(f"    {row}," for row in rows)
            lines.append("]")
        else:
            lines.append(f"{name} = {_exact_cli_text(float(value), unit.to_si)}  # {unit.label}")
    return "\n".join(lines) + "\n"
