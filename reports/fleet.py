"""Fleet report: one row per chip of a nightly run, with drift and newly failed neurons."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reports import multichip_plots, plots
from reports.htmlkit import (
    Block,
    heading,
    image,
    join,
    key_value_table,
    page,
    paragraph,
    preformatted,
    scrolling,
    section,
    status_badge,
    table,
    write_page,
)
from reports.summary import ordered_quantities
from reports.units import display_unit, quantity_label

if TYPE_CHECKING:
    from calib.operations.fleet import ChipOutcome

STATUSES = ("ok", "degraded", "failed", "skipped")
"""ok: calibrated and checked; degraded: calibrated with problems (e.g. many newly failed
neurons); failed: no result (see `error`); skipped: not attempted."""

STATUS_LEVELS = {"ok": "good", "degraded": "fair", "failed": "poor", "skipped": "fair"}

EXAMPLE_NEURONS = 6


@dataclass(frozen=True)
class FleetRow:
    """One chip of a fleet run."""

    chip_id: str
    status: str
    success_fraction: float | None = None
    drift: Mapping[str, float | None] = field(default_factory=dict)
    """Quantity -> median shift of achieved values since the previous run (stored units)."""
    newly_failed: tuple[int, ...] = ()
    recovered: tuple[int, ...] = ()
    error: str | None = None
    """What went wrong, for a failed chip (traceback or message)."""
    created: str | None = None
    action: str | None = None
    """What was done to the chip, e.g. 'checked, still holds' or 'recalibrated leak, reset'."""

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(
                f"status = {self.status!r} for chip {self.chip_id!r} is not one of "
                f"{', '.join(STATUSES)}"
            )
        fraction = self.success_fraction
        if fraction is not None and not (0.0 <= fraction <= 1.0):
            raise ValueError(
                f"success_fraction = {float(fraction)!r} for chip {self.chip_id!r} is outside 0..1"
            )
        object.__setattr__(self, "newly_failed", tuple(int(n) for n in self.newly_failed))
        object.__setattr__(self, "recovered", tuple(int(n) for n in self.recovered))
        object.__setattr__(
            self,
            "drift",
            {
                str(name): None if value is None else float(value)
                for name, value in self.drift.items()
            },
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FleetRow:
        known = {item.name for item in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown fleet row fields: {', '.join(sorted(unknown))}; known: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**dict(data))

    @classmethod
    def from_comparison(cls, comparison: Mapping[str, Any], status: str = "ok") -> FleetRow:
        """A row from `compare_results(previous, current)`."""
        return cls(
            chip_id=str(comparison["chip_id"]),
            status=status,
            success_fraction=comparison["success_current"],
            drift={
                name: values["median_shift"] for name, values in comparison["quantities"].items()
            },
            newly_failed=tuple(comparison["newly_failed"]),
            recovered=tuple(comparison["recovered"]),
            created=comparison.get("current_created"),
        )


def _as_row(row: FleetRow | Mapping[str, Any], index: int) -> FleetRow:
    if isinstance(row, FleetRow):
        return row
    if isinstance(row, Mapping):
        return FleetRow.from_mapping(row)
    raise ValueError(f"rows[{index}] is a {type(row).__name__}, expected FleetRow or a mapping")


def _neuron_list(neurons: tuple[int, ...]) -> str:
    if not neurons:
        return "0"
    shown = ", ".join(str(n) for n in neurons[:EXAMPLE_NEURONS])
    more = ", ..." if len(neurons) > EXAMPLE_NEURONS else ""
    return f"{len(neurons)} ({shown}{more})"


def _drift_text(value: float | None, quantity: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{display_unit(quantity)(value):+.3g}"


def _chip_table(rows: Sequence[FleetRow], quantities: Sequence[str]) -> Block:
    body = []
    for row in rows:
        fraction = "-" if row.success_fraction is None else f"{100 * row.success_fraction:.1f} %"
        body.append(
            [
                row.chip_id,
                status_badge(row.status, STATUS_LEVELS[row.status]),
                row.action or "-",
                fraction,
                _neuron_list(row.newly_failed),
                str(len(row.recovered)),
                *(_drift_text(row.drift.get(name), name) for name in quantities),
            ]
        )
    headers = [
        "chip",
        "status",
        "action",
        "success",
        "newly failed",
        "recovered",
        *(f"Δ {quantity_label(name)}" for name in quantities),
    ]
    return scrolling(
        table(
            headers,
            body,
            numeric_from=3,
            class_="data wide",
            caption="Drift: median shift of achieved values since the previous run.",
        )
    )


def _error_list(rows: Sequence[FleetRow]) -> Block | list[Block]:
    failed = [row for row in rows if row.error]
    if not failed:
        return paragraph("No chip reported an error.")
    return join([heading(row.chip_id), preformatted(row.error)] for row in failed)


def write_fleet_report(
    rows: Sequence[FleetRow | Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    title: str = "Fleet calibration report",
) -> Path:
    """Write the fleet report (one row per chip; mappings take FleetRow's field names)."""
    checked = [_as_row(row, index) for index, row in enumerate(rows)]
    quantities = ordered_quantities({name for row in checked for name in row.drift})
    counts = {status: sum(row.status == status for row in checked) for status in STATUSES}
    overview = key_value_table(
        {
            "chips": str(len(checked)),
            **{status: str(count) for status, count in counts.items() if count},
            "neurons newly failed (all chips)": str(sum(len(r.newly_failed) for r in checked)),
            "neurons recovered (all chips)": str(sum(len(r.recovered) for r in checked)),
        }
    )
    parts = [section("Overview", overview, _chip_table(checked, quantities), anchor="overview")]
    with_drift = [row for row in checked if any(v is not None for v in row.drift.values())]
    if with_drift and quantities:
        figure = multichip_plots.drift_heatmap(
            [row.chip_id for row in with_drift],
            quantities,
            [[row.drift.get(name) for name in quantities] for row in with_drift],
        )
        parts.append(
            section(
                "Drift per chip",
                paragraph(
                    "Colour: drift relative to the largest drift of that quantity in the "
                    "fleet; numbers: drift in the column's unit.",
                    "note",
                ),
                image(plots.png_base64(figure), "drift per chip and quantity"),
                anchor="drift",
            )
        )
    parts.append(section("Errors", _error_list(checked), anchor="errors"))
    subtitle = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    return write_page(path, page(title, join(parts), subtitle=subtitle or "no chips"))


def fleet_row(outcome: ChipOutcome) -> FleetRow:
    """One chip of a nightly run as a row of the fleet report."""
    return FleetRow(
        chip_id=outcome.chip_id,
        status=outcome.report_status,
        success_fraction=outcome.success_fraction,
        drift=outcome.drift,
        newly_failed=outcome.newly_failed,
        recovered=outcome.recovered,
        error=outcome.error,
        action=outcome.action,
    )


def write_nightly_report(
    outcomes: Sequence[ChipOutcome],
    path: str | os.PathLike[str],
    *,
    title: str = "Nightly calibration",
) -> Path:
    """The fleet HTML report of one night."""
    return write_fleet_report([fleet_row(outcome) for outcome in outcomes], path, title=title)
