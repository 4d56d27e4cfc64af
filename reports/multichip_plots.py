"""Figures over many chips: fleet drift, study spreads and yields."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from reports.plots import (
    AFTER_COLOR,
    BEFORE_COLOR,
    RESIDUAL_CMAP,
    axes_grid,
    new_figure,
    report_style,
)
from reports.units import display_unit, quantity_label

if TYPE_CHECKING:
    from reports.study import ChipSpread, YieldCurve, YieldMap

ANNOTATE_MAX_CELLS = 600
"""Heatmaps write their numbers into the cells only up to this many cells (else unreadable)."""
MAX_LABELLED_ROWS = 80


class PlainLogFormatter(ticker.LogFormatter):
    """Labels the ticks LogFormatter would label, as plain numbers ('0.3', '4', '20')."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def drift_heatmap(
    chip_ids: Sequence[str], quantities: Sequence[str], drift: Sequence[Sequence[float | None]]
) -> Figure:
    """Chips x quantities; colour normalised per quantity by its largest |drift| in the fleet."""
    values = np.array(
        [
            [
                np.nan if value is None else display_unit(name)(value)
                for name, value in zip(quantities, row, strict=True)
            ]
            for row in drift
        ],
        dtype=float,
    )
    scale = np.nanmax(np.abs(values), axis=0, initial=0.0)
    scale[~(scale > 0)] = 1.0
    normalised = values / scale
    height = min(30.0, 1.2 + 0.28 * len(chip_ids))
    figure = new_figure(max(6.0, 1.1 * len(quantities) + 2.0), height)
    with report_style():
        ax = figure.subplots()
        image = ax.imshow(
            np.ma.masked_invalid(normalised),
            cmap=RESIDUAL_CMAP,
            vmin=-1,
            vmax=1,
            aspect="auto",
            interpolation="nearest",
        )
        ax.set_xticks(
            range(len(quantities)),
            [quantity_label(name) for name in quantities],
            rotation=30,
            ha="right",
        )
        if len(chip_ids) <= MAX_LABELLED_ROWS:
            ax.set_yticks(range(len(chip_ids)), chip_ids)
        else:
            ax.set_ylabel("chip")
        if values.size <= ANNOTATE_MAX_CELLS:
            for (row, column), value in np.ndenumerate(values):
                if np.isfinite(value):
                    ax.text(
                        column,
                        row,
                        f"{value:+.2g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if abs(normalised[row, column]) > 0.6 else "black",
                    )
        ax.spines[:].set_visible(False)
        colorbar = figure.colorbar(image, ax=ax, shrink=0.8)
        colorbar.set_label("drift / largest drift of the quantity")
    return figure


def spread_boxes(chips: Sequence[ChipSpread], quantities: Sequence[str]) -> Figure:
    """Per quantity: std before and after across chips (box and points, log scale)."""
    columns = min(3, len(quantities))
    figure = new_figure(4.0 * columns, 2.5 * -(-len(quantities) // columns))
    rng = np.random.default_rng(0)  # jitter only; fixed so reports are reproducible
    with report_style():
        axes = axes_grid(figure, len(quantities), columns)
        for ax, name in zip(axes, quantities, strict=False):
            unit = display_unit(name)
            groups = []
            for position, attribute in ((1, "std_before"), (2, "std_after")):
                values = np.array([getattr(chip, attribute).get(name, np.nan) for chip in chips])
                values = unit(values[np.isfinite(values) & (values > 0)])
                groups.append(values)
                jitter = rng.uniform(-0.12, 0.12, values.size)
                color = BEFORE_COLOR if position == 1 else AFTER_COLOR
                ax.scatter(position + jitter, values, s=9, color=color, alpha=0.8, zorder=3)
            ax.boxplot(
                groups,
                positions=[1, 2],
                widths=0.5,
                showfliers=False,
                medianprops={"color": "black"},
            )
            ax.set_xticks([1, 2], ["before", "after"])
            if all(group.size for group in groups):
                ax.set_yscale("log")
                ax.yaxis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
                ax.yaxis.set_minor_formatter(
                    PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5))
                )
            ax.set_title(name)
            ax.set_ylabel(f"std [{unit.label}]" if unit.label else "std")
    return figure


def yield_curves(curves: Sequence[YieldCurve]) -> Figure:
    """Yield against target: mean over chips, band from worst to best chip."""
    columns = min(3, len(curves))
    figure = new_figure(4.0 * columns, 2.5 * -(-len(curves) // columns))
    with report_style():
        axes = axes_grid(figure, len(curves), columns)
        for ax, curve in zip(axes, curves, strict=False):
            unit = display_unit(curve.quantity)
            targets = unit(curve.targets)
            percent = 100 * curve.fraction
            if percent.shape[0] > 1:
                ax.fill_between(
                    targets,
                    np.nanmin(percent, axis=0),
                    np.nanmax(percent, axis=0),
                    color=AFTER_COLOR,
                    alpha=0.2,
                    label="chips min..max",
                )
            ax.plot(
                targets,
                np.nanmean(percent, axis=0),
                marker="o",
                markersize=3,
                color=AFTER_COLOR,
                label="mean",
            )
            ax.set_ylim(min(90.0, float(np.nanmin(percent)) - 2), 100.5)
            ax.set_xlabel(f"target {quantity_label(curve.quantity)}")
            ax.set_ylabel("yield [%]")
            ax.set_title(curve.quantity)
            ax.grid(alpha=0.3)
        if curves:
            axes[0].legend(loc="lower left", frameon=False)
    return figure


def yield_heatmap(yield_map: YieldMap) -> Figure:
    """Mean yield over a 2-d target grid."""
    x_unit, y_unit = display_unit(yield_map.x_quantity), display_unit(yield_map.y_quantity)
    percent = 100 * np.nanmean(yield_map.fraction, axis=0)
    figure = new_figure(6.5, 4.5)
    with report_style():
        ax = figure.subplots()
        image = ax.imshow(
            percent,
            origin="lower",
            aspect="auto",
            cmap="viridis",
            vmin=max(0.0, float(np.nanmin(percent)) - 1),
            vmax=100,
            interpolation="nearest",
        )
        ax.set_xticks(
            range(yield_map.x_targets.size),
            [f"{x_unit(value):.3g}" for value in yield_map.x_targets],
            rotation=45,
        )
        ax.set_yticks(
            range(yield_map.y_targets.size),
            [f"{y_unit(value):.3g}" for value in yield_map.y_targets],
        )
        ax.set_xlabel(f"target {quantity_label(yield_map.x_quantity)}")
        ax.set_ylabel(f"target {quantity_label(yield_map.y_quantity)}")
        if percent.size <= ANNOTATE_MAX_CELLS // 4:
            middle = (float(np.nanmin(percent)) + 100) / 2
            for (row, column), value in np.ndenumerate(percent):
                ax.text(
                    column,
                    row,
                    f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > middle else "white",
                )
        figure.colorbar(image, ax=ax).set_label("yield [%] (mean over chips)")
    return figure
