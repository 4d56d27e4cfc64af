"""Mismatch-study report: spread of every quantity before/after across chips, and yield."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from calib.core.results import NeuronResult
from calib.operations.study import MismatchStudy
from reports import multichip_plots, plots
from reports.htmlkit import (
    Block,
    image,
    join,
    key_value_table,
    page,
    paragraph,
    section,
    table,
    write_page,
)
from reports.summary import ordered_quantities, quantity_rows
from reports.units import display_unit, format_number, quantity_label


@dataclass(frozen=True)
class ChipSpread:
    """One chip of a study: spread (std over its successful neurons) before and after."""

    chip_id: str
    std_before: Mapping[str, float]
    std_after: Mapping[str, float]
    success_fraction: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.success_fraction <= 1.0:
            raise ValueError(
                f"success_fraction = {float(self.success_fraction)!r} for chip {self.chip_id!r} "
                "is outside 0..1"
            )

    @classmethod
    def from_result(cls, result: NeuronResult) -> ChipSpread:
        rows = quantity_rows(result)
        return cls(
            chip_id=result.chip_id,
            std_before={row.name: row.std_before for row in rows},
            std_after={row.name: row.std_after for row in rows},
            success_fraction=float(np.mean(result.success)),
        )


def _fractions(name: str, values: Any, shape_tail: tuple[int, ...]) -> np.ndarray:
    """Yield fractions as (n_chips, *shape_tail), checked to lie in 0..1."""
    array = np.asarray(values, dtype=float)
    if array.shape == shape_tail:
        array = array[np.newaxis]
    if array.ndim != len(shape_tail) + 1 or array.shape[1:] != shape_tail:
        raise ValueError(
            f"{name}: fraction has shape {array.shape}, expected {shape_tail} or "
            f"(n_chips, {', '.join(str(n) for n in shape_tail)})"
        )
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        bad = finite[(finite < 0) | (finite > 1)][0]
        raise ValueError(f"{name}: fraction {float(bad)!r} is outside 0..1")
    array.flags.writeable = False
    return array


def _targets(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name}: targets must be a non-empty 1-d grid, got shape {array.shape}")
    array.flags.writeable = False
    return array


@dataclass(frozen=True, eq=False)
class YieldCurve:
    """Fraction of neurons reaching each target of a 1-d grid, per chip (stored units)."""

    quantity: str
    targets: np.ndarray
    """(n_targets,)"""
    fraction: np.ndarray
    """(n_chips, n_targets), or (n_targets,) for one chip or a pooled figure."""

    def __post_init__(self) -> None:
        targets = _targets(f"yield curve {self.quantity!r}", self.targets)
        object.__setattr__(self, "targets", targets)
        object.__setattr__(
            self,
            "fraction",
            _fractions(f"yield curve {self.quantity!r}", self.fraction, targets.shape),
        )


@dataclass(frozen=True, eq=False)
class YieldMap:
    """Fraction of neurons reaching a pair of targets over a 2-d grid (e.g. leak x threshold)."""

    x_quantity: str
    x_targets: np.ndarray
    y_quantity: str
    y_targets: np.ndarray
    fraction: np.ndarray
    """(n_y, n_x), or (n_chips, n_y, n_x): averaged over chips in the report."""

    def __post_init__(self) -> None:
        label = f"yield map {self.x_quantity!r} x {self.y_quantity!r}"
        x = _targets(f"{label} x", self.x_targets)
        y = _targets(f"{label} y", self.y_targets)
        object.__setattr__(self, "x_targets", x)
        object.__setattr__(self, "y_targets", y)
        object.__setattr__(self, "fraction", _fractions(label, self.fraction, (y.size, x.size)))


@dataclass(frozen=True)
class StudyData:
    """Everything a mismatch-study report shows."""

    chips: Sequence[ChipSpread]
    yields: Sequence[YieldCurve] = ()
    yield_maps: Sequence[YieldMap] = ()
    parameters: Mapping[str, Any] = field(default_factory=dict)
    """How the study was run (e.g. mismatch_scale, number of chips, seeds)."""
    title: str = "Mismatch study"


def study_data(study: MismatchStudy) -> StudyData:
    """What the report of a finished mismatch study shows."""
    return StudyData(
        chips=[ChipSpread.from_result(chip.result) for chip in study.chips],
        yields=[
            YieldCurve(name, study.grid[name], fractions)
            for name, fractions in study.yield_fractions().items()
        ],
        parameters=study.parameters(),
        title=f"Mismatch study {study.name!r}",
    )


def write_mismatch_study_report(study: MismatchStudy, path: str | os.PathLike[str]) -> Path:
    return write_study_report(study_data(study), path)


def _nanmedian(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    return float(np.median(array)) if array.size else float("nan")


def _nanmax(values: Sequence[float]) -> float:
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    return float(array.max()) if array.size else float("nan")


def spread_table(chips: Sequence[ChipSpread], quantities: Sequence[str]) -> Block:
    rows = []
    for name in quantities:
        unit = display_unit(name)
        before = [chip.std_before.get(name, float("nan")) for chip in chips]
        after = [chip.std_after.get(name, float("nan")) for chip in chips]
        median_before, median_after = _nanmedian(before), _nanmedian(after)
        ratio = median_before / median_after if median_after > 0 else float("nan")
        rows.append(
            [
                name,
                unit.label,
                format_number(unit(median_before)),
                format_number(unit(median_after)),
                format_number(ratio),
                format_number(unit(_nanmax(after))),
            ]
        )
    return table(
        [
            "quantity",
            "unit",
            "std before (median over chips)",
            "std after (median over chips)",
            "reduction",
            "std after (worst chip)",
        ],
        rows,
        numeric_from=2,
        caption="Standard deviation over each chip's successful neurons.",
    )


def _yield_table(curves: Sequence[YieldCurve]) -> Block:
    rows = []
    for curve in curves:
        unit = display_unit(curve.quantity)
        mean = np.nanmean(curve.fraction, axis=0)
        best = int(np.nanargmax(mean))
        rows.append(
            [
                curve.quantity,
                f"{format_number(unit(curve.targets.min()))}..{format_number(unit(curve.targets.max()))}"
                f" {unit.label}",
                str(curve.fraction.shape[0]),
                f"{100 * np.nanmin(mean):.1f} %",
                f"{100 * mean[best]:.1f} % at {format_number(unit(curve.targets[best]))}",
            ]
        )
    return table(
        ["quantity", "target grid", "chips", "lowest mean yield", "highest mean yield"],
        rows,
        numeric_from=2,
    )


def write_study_report(study_data: StudyData, path: str | os.PathLike[str]) -> Path:
    """Write the mismatch-study report to `path` as one self-contained HTML file."""
    chips = list(study_data.chips)
    quantities = ordered_quantities(
        {name for chip in chips for name in chip.std_before}
        | {name for chip in chips for name in chip.std_after}
    )
    success = np.array([chip.success_fraction for chip in chips])
    overview = {
        "chips": str(len(chips)),
        "successful neurons (mean over chips)": f"{100 * success.mean():.2f} %" if chips else "-",
        "successful neurons (worst chip)": f"{100 * success.min():.2f} %" if chips else "-",
        **{str(key): str(value) for key, value in study_data.parameters.items()},
    }
    parts = [section("Overview", key_value_table(overview), anchor="overview")]
    if chips and quantities:
        parts.append(
            section(
                "Spread before and after calibration",
                spread_table(chips, quantities),
                image(
                    plots.png_base64(multichip_plots.spread_boxes(chips, quantities)),
                    "spread per quantity across chips",
                ),
                anchor="spread",
            )
        )
    if study_data.yields:
        parts.append(
            section(
                "Yield over targets",
                paragraph(
                    "Fraction of neurons that reach each target; line: mean over chips, "
                    "band: lowest..highest chip.",
                    "note",
                ),
                _yield_table(study_data.yields),
                image(
                    plots.png_base64(multichip_plots.yield_curves(study_data.yields)),
                    "yield curves",
                ),
                anchor="yield",
            )
        )
    for index, yield_map in enumerate(study_data.yield_maps):
        parts.append(
            section(
                f"Yield map: {quantity_label(yield_map.x_quantity)} x "
                f"{quantity_label(yield_map.y_quantity)}",
                image(plots.png_base64(multichip_plots.yield_heatmap(yield_map)), "yield map"),
                anchor=f"yield-map-{index}",
            )
        )
    if chips:
        parts.append(
            section(
                "Chips",
                table(
                    ["chip", "successful neurons"],
                    [[chip.chip_id, f"{100 * chip.success_fraction:.1f} %"] for chip in chips],
                ),
                anchor="chips",
            )
        )
    return write_page(path, page(study_data.title, join(parts), subtitle=f"{len(chips)} chips"))
