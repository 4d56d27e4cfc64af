"""Human-friendly units: results hold SI seconds and CADC LSB, people read µs and LSB; each
quantity's display unit comes from its plan."""

from __future__ import annotations

import math

from calib.core.plans import PLANS, DisplayUnit

MICROSECONDS = DisplayUnit("µs", 1e6)
LSB = DisplayUnit("LSB", 1.0)


def display_unit(quantity: str) -> DisplayUnit:
    """The unit a quantity is shown in, from its plan (unknown quantities: as stored)."""
    spec = PLANS.quantities().get(quantity)
    return DisplayUnit("", 1.0) if spec is None else spec.display


def quantity_label(quantity: str) -> str:
    """'tau_mem [µs]', or the bare name when the unit is unknown."""
    unit = display_unit(quantity).label
    return f"{quantity} [{unit}]" if unit else quantity


def format_number(value: float | None, digits: int = 3) -> str:
    """Three significant digits, no exponent for the usual magnitudes; '-' for missing."""
    if value is None or not math.isfinite(value):
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def format_duration(seconds: float | None) -> str:
    """'850 ms', '12.3 s', '4 min 05 s', '2 h 03 min'."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min"
