"""Matplotlib figures of calibration results, rendered off-screen (Agg) to PNG.

Figures are built with `matplotlib.figure.Figure`, never pyplot: no figure registry to leak
into, no interactive backend to pick, nothing to close. The style is applied with an rc context
around creation and rendering (matplotlib's rc settings are process-global, so render reports
from one thread at a time).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from calib.core.checks import CheckRecord
from calib.core.plans import quantity_spec
from calib.core.results import NeuronResult
from device_model.protocol import CELLS, N_NEURONS, N_QUADRANTS, NEURONS_PER_QUADRANT
from reports.summary import ordered_quantities
from reports.units import display_unit, quantity_label

DPI = 96
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
BEFORE_COLOR = "#9e9e9e"
AFTER_COLOR = "#1f77b4"
TARGET_COLOR = "#d62728"
CHECK_COLOR = "#ff7f0e"
FAILED_COLOR = "#000000"
RESIDUAL_CMAP = colormaps["RdBu_r"].with_extremes(bad="#d0d0d0")
"""Diverging around zero residual; grey where a neuron has no value."""

MAP_ROWS_PER_QUADRANT = 8
MAP_COLUMNS_PER_QUADRANT = 16
"""A quadrant's 128 neurons drawn as 8 rows of 16; quadrants 0 1 on top, 2 3 below."""


@contextmanager
def report_style() -> Iterator[None]:
    with rc_context(STYLE):
        yield


def png_base64(figure: Figure, *, tight: bool = False) -> str:
    """The figure as a base64-encoded PNG (for a data: URI).

    `tight` crops to the drawn content (one more layout pass): for figures whose colour bars
    constrained layout cannot fit next to fixed-aspect images.
    """
    buffer = io.BytesIO()
    extra = {"bbox_inches": "tight", "pad_inches": 0.05} if tight else {}
    with report_style():
        figure.savefig(buffer, format="png", dpi=DPI, **extra)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def new_figure(width: float, height: float, *, constrained: bool = True) -> Figure:
    """A figure; `constrained=False` skips the layout pass (about a third of the rendering time
    of a small figure) for figures that set their own margins."""
    with report_style():
        return Figure(figsize=(width, height), layout="constrained" if constrained else None)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return values[np.isfinite(values)]


def _hide_unused(axes: np.ndarray, used: int) -> None:
    for ax in axes.ravel()[used:]:
        ax.set_visible(False)


def axes_grid(figure: Figure, count: int, columns: int) -> np.ndarray:
    rows = max(1, -(-count // columns))
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    _hide_unused(axes, count)
    return axes


# -- one calibration -------------------------------------------------------------------------


def _bins(values: np.ndarray, target: float | None, count: int = 40) -> np.ndarray:
    """Bins over the data and the target, so a narrow distribution far from its target still
    shows as a visible bar instead of sub-pixel slivers."""
    low, high = float(values.min()), float(values.max())
    if target is not None:
        low, high = min(low, target), max(high, target)
    if high <= low:
        half = abs(low) * 0.01 or 1.0
        low, high = low - half, high + half
    return np.linspace(low, high, count + 1)


def quantity_histograms(result: NeuronResult, name: str) -> Figure:
    """Before (every neuron) and after (successful neurons) with target and tolerance."""
    unit = display_unit(name)
    success = np.asarray(result.success, dtype=bool)
    achieved = unit(np.asarray(result.achieved[name], dtype=float))
    goals = result.goals()
    target = unit(float(np.median(goals[name]))) if name in goals else None
    figure = new_figure(6.4, 2.4, constrained=False)
    with report_style():
        before_ax, after_ax = figure.subplots(1, 2)
        figure.subplots_adjust(left=0.085, right=0.985, bottom=0.2, top=0.8, wspace=0.3)
        before = result.before.get(name)
        before = _finite(unit(np.asarray(before))) if before is not None else np.array([])
        if before.size:
            before_ax.hist(
                before, bins=_bins(before, target), color=BEFORE_COLOR, histtype="stepfilled"
            )
        else:
            before_ax.text(
                0.5, 0.5, "not measured", ha="center", va="center", transform=before_ax.transAxes
            )
        before_ax.set_title("before calibration")
        good = _finite(achieved[success])
        failed = int((~success).sum())
        for ax in (before_ax, after_ax):
            ax.set_xlabel(quantity_label(name))
            ax.set_ylabel("neurons")
            if target is not None:
                ax.axvline(target, color=TARGET_COLOR, linestyle="--", linewidth=1, label="target")
        if target is not None:
            tolerance = float(quantity_spec(name).tolerance_for(np.array([target]))[0])
            _zoomed_after(after_ax, good, target, tolerance, failed)
        else:
            if good.size:
                after_ax.hist(
                    good, bins=_bins(good, None), color=AFTER_COLOR, histtype="stepfilled"
                )
            after_ax.set_title(f"after ({failed} failed not shown)" if failed else "after")
        figure.suptitle(name, fontweight="bold")
    return figure


ZOOM_TOLERANCES = 3.0
"""The "after" histogram spans the target ± this many tolerances when no neuron was measured."""
ZOOM_MIN_TOLERANCES = 1.25
"""... else ± 1.2 times the 1..99 % extent of the data, at least this many tolerances (the band
fills most of the axis, its edges visible) and at most ZOOM_LIMIT (neurons further out are
counted at the edges)."""
ZOOM_LIMIT = 6.0
ZOOM_BINS = 48


def _zoomed_after(ax: Axes, good: np.ndarray, target: float, tolerance: float, failed: int) -> None:
    """The successful neurons on an axis zoomed to the tolerance band: the band, how many
    neurons it holds, and how many lie off the axis (drawn as arrows at its edges)."""
    if not np.isfinite(tolerance) or tolerance <= 0:
        tolerance = abs(target) * 0.01 or 1.0
    inside = int(np.sum(np.abs(good - target) <= tolerance))
    reach = ZOOM_TOLERANCES
    if good.size:
        extent = float(np.max(np.abs(np.percentile(good, [1, 99]) - target))) / tolerance
        reach = min(max(ZOOM_MIN_TOLERANCES, 1.2 * extent), ZOOM_LIMIT)
    low, high = target - reach * tolerance, target + reach * tolerance
    ax.axvspan(
        target - tolerance,
        target + tolerance,
        color=TARGET_COLOR,
        alpha=0.12,
        label=f"tolerance ±{tolerance:.3g}",
    )
    below, above = int(np.sum(good < low)), int(np.sum(good > high))
    shown = good[(good >= low) & (good <= high)]
    if shown.size:
        ax.hist(
            shown,
            bins=np.linspace(low, high, ZOOM_BINS + 1),
            color=AFTER_COLOR,
            histtype="stepfilled",
        )
    ax.set_xlim(low, high)
    for count, edge, align in ((below, low, "left"), (above, high, "right")):
        if count:
            ax.annotate(
                f"{'← ' if align == 'left' else ''}{count} off axis"
                f"{' →' if align == 'right' else ''}",
                xy=(edge, 0),
                xycoords=("data", "axes fraction"),
                xytext=(4 if align == "left" else -4, 18),
                textcoords="offset points",
                ha=align,
                fontsize=7,
                color="#b71c1c",
            )
    title = f"after: {inside}/{good.size} in tolerance"
    if failed:
        title += f", {failed} failed not shown"
    ax.set_title(title, fontsize=8)
    if good.size > 1:
        sigma = float(np.std(good))
        ax.text(
            0.02,
            0.95,
            f"σ {sigma:.3g}\n= {100 * sigma / tolerance:.0f} % of tol.",
            transform=ax.transAxes,
            ha="left",
            va="top",
            fontsize=7,
            color=AFTER_COLOR,
        )
    ax.legend(loc="upper right", frameon=False, fontsize=7)


def neuron_grid(values: np.ndarray) -> np.ndarray:
    """Per-neuron values laid out as the quadrant map (16 x 32 for 512 neurons)."""
    values = np.asarray(values, dtype=float)
    if values.shape == (N_NEURONS,):
        quadrants = values.reshape(2, 2, MAP_ROWS_PER_QUADRANT, MAP_COLUMNS_PER_QUADRANT)
        return quadrants.transpose(0, 2, 1, 3).reshape(
            2 * MAP_ROWS_PER_QUADRANT, 2 * MAP_COLUMNS_PER_QUADRANT
        )
    width = 2 * MAP_COLUMNS_PER_QUADRANT
    padded = np.full(-(-values.size // width) * width, np.nan)
    padded[: values.size] = values
    return padded.reshape(-1, width)


def neuron_positions(neurons: np.ndarray, n_neurons: int) -> tuple[np.ndarray, np.ndarray]:
    """(column, row) of neurons in `neuron_grid`'s layout."""
    neurons = np.asarray(neurons, dtype=int)
    if n_neurons != N_NEURONS:
        width = 2 * MAP_COLUMNS_PER_QUADRANT
        return neurons % width, neurons // width
    quadrant, local = np.divmod(neurons, NEURONS_PER_QUADRANT)
    row = (quadrant // 2) * MAP_ROWS_PER_QUADRANT + local // MAP_COLUMNS_PER_QUADRANT
    column = (quadrant % 2) * MAP_COLUMNS_PER_QUADRANT + local % MAP_COLUMNS_PER_QUADRANT
    return column, row


def _residual_scale(residuals: np.ndarray, success: np.ndarray) -> float:
    """Colour range: the 99th percentile of successful neurons, so failures do not swamp it."""
    good = _finite(np.abs(residuals[success])) if success.any() else _finite(np.abs(residuals))
    scale = float(np.percentile(good, 99)) if good.size else 0.0
    return scale if scale > 0 else 1.0


def _draw_quadrant_frame(ax: Axes, n_neurons: int) -> None:
    if n_neurons != N_NEURONS:
        return
    ax.axhline(MAP_ROWS_PER_QUADRANT - 0.5, color="black", linewidth=1.2)
    ax.axvline(MAP_COLUMNS_PER_QUADRANT - 0.5, color="black", linewidth=1.2)
    # Quadrant names sit outside the map, so no neuron is hidden behind a label.
    centres = [(column + 0.5) * MAP_COLUMNS_PER_QUADRANT - 0.5 for column in range(2)]
    top = ax.secondary_xaxis("top")
    top.set_xticks(centres, [f"Q{quadrant}" for quadrant in range(2)])
    ax.set_xticks(centres, [f"Q{quadrant}" for quadrant in range(2, N_QUADRANTS)])
    for axis in (top, ax):
        axis.tick_params(length=0, labelsize=7, pad=1)


def residual_maps(result: NeuronResult) -> Figure:
    """Achieved minus target per neuron over the four quadrants; failed neurons crossed."""
    targets = result.goals()
    names = [name for name in ordered_quantities(result.achieved) if name in targets]
    residuals = {
        name: np.asarray(result.achieved[name], dtype=float) - targets[name] for name in names
    }
    success = np.asarray(result.success, dtype=bool)
    columns = min(3, max(1, len(names)))
    rows = max(1, -(-len(names) // columns))
    figure = new_figure(4.1 * columns, 2.45 * rows)
    with report_style():
        axes = axes_grid(figure, len(names), columns)
        failed = np.flatnonzero(~success)
        fail_x, fail_y = neuron_positions(failed, success.size)
        for ax, name in zip(axes, names, strict=False):
            unit = display_unit(name)
            values = unit(np.asarray(residuals[name], dtype=float))
            scale = _residual_scale(values, success)
            image = ax.imshow(
                neuron_grid(values),
                cmap=RESIDUAL_CMAP,
                vmin=-scale,
                vmax=scale,
                interpolation="nearest",
                aspect="equal",
            )
            ax.scatter(fail_x, fail_y, marker="x", s=14, color=FAILED_COLOR, linewidths=1)
            ax.set_xticks([])
            ax.set_yticks([])
            _draw_quadrant_frame(ax, success.size)
            ax.set_title(name)
            colorbar = figure.colorbar(image, ax=ax, shrink=0.85, pad=0.02)
            colorbar.set_label(f"residual [{unit.label}]" if unit.label else "residual")
    return figure


def code_histograms(result: NeuronResult, cells: Sequence[str]) -> Figure:
    """Distribution of per-neuron codes of each cell; bounds of the cell's range marked."""
    columns = min(4, max(1, len(cells)))
    rows = max(1, -(-len(cells) // columns))
    figure = new_figure(3.2 * columns, 2.1 * rows)
    with report_style():
        axes = axes_grid(figure, len(cells), columns)
        for ax, cell in zip(axes, cells, strict=False):
            codes = np.asarray(result.codes[cell]).ravel()
            values, counts = np.unique(codes, return_counts=True)
            if values.size <= 24:
                ax.bar(values, counts, width=0.8 if values.size > 1 else 0.5, color=AFTER_COLOR)
            else:
                # Integer-aligned bins: equal-width float bins over integer codes alias into
                # a comb of alternately full and empty bins.
                width = max(1, -(-int(values[-1] - values[0] + 1) // 40))
                edges = np.arange(values[0] - 0.5, values[-1] + width, width)
                ax.hist(codes, bins=edges, color=AFTER_COLOR, histtype="stepfilled")
            spec = CELLS.get(cell)
            title = cell
            if spec is not None:
                at_bound = int(np.sum((codes <= spec.low) | (codes >= spec.high)))
                if at_bound:
                    title += f"  ({at_bound} at range bound)"
                for bound in (spec.low, spec.high):
                    if values.min() - 0.05 * spec.high <= bound <= values.max() + 0.05 * spec.high:
                        ax.axvline(bound, color=TARGET_COLOR, linestyle=":", linewidth=1)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("code")
            ax.set_ylabel("neurons")
    return figure


def _plottable_time(time: object) -> datetime | float:
    if isinstance(time, datetime):
        return time
    if isinstance(time, str):
        return datetime.fromisoformat(time.replace("Z", "+00:00"))
    if isinstance(time, int | float | np.integer | np.floating):
        return float(time)
    raise ValueError(f"history time {time!r} is not a datetime, ISO 8601 string or number")


def _successful_percentiles(result: NeuronResult, name: str) -> tuple[float, float, float]:
    values = np.asarray(result.achieved[name], dtype=float)
    success = np.asarray(result.success, dtype=bool)
    good = _finite(values[success] if success.any() else values)
    if not good.size:
        return (float("nan"),) * 3
    low, median, high = np.percentile(good, [10, 50, 90])
    return float(low), float(median), float(high)


def _check_percentiles(check: CheckRecord, name: str) -> tuple[float, float, float]:
    values = check.measured.get(name)
    good = _finite(np.asarray(values, dtype=float)) if values is not None else np.array([])
    if not good.size:
        return (float("nan"),) * 3
    low, median, high = np.percentile(good, [10, 50, 90])
    return float(low), float(median), float(high)


def drift_figure(
    history: Sequence[tuple[object, NeuronResult]],
    *,
    checks: Sequence[tuple[object, CheckRecord]] = (),
) -> Figure:
    """Median (band: 10th..90th percentile) of each quantity over time, and success; the
    stored checks between calibrations as squares with their 10..90 % range."""
    times = [_plottable_time(time) for time, _ in history]
    check_times = [_plottable_time(time) for time, _ in checks]
    if len({type(time) for time in [*times, *check_times]}) > 1:
        raise ValueError("history times mix datetimes and numbers")
    order = sorted(range(len(times)), key=lambda index: times[index])
    times = [times[index] for index in order]
    results = [history[index][1] for index in order]
    names = ordered_quantities(set().union(*(result.achieved for result in results)))
    panels = [*names, "success"]
    columns = 3
    figure = new_figure(4.0 * columns, 2.2 * (-(-len(panels) // columns)))
    with report_style():
        axes = axes_grid(figure, len(panels), columns)
        for ax, name in zip(axes, names, strict=False):
            unit = display_unit(name)
            rows = np.array(
                [
                    _successful_percentiles(result, name)
                    if name in result.achieved
                    else (np.nan,) * 3
                    for result in results
                ]
            )
            rows = unit(rows)
            ax.fill_between(
                times, rows[:, 0], rows[:, 2], color=AFTER_COLOR, alpha=0.2, label="10..90 %"
            )
            ax.plot(times, rows[:, 1], marker="o", markersize=3, color=AFTER_COLOR, label="median")
            checked = [
                (time, _check_percentiles(record, name))
                for time, record in zip(check_times, (c for _, c in checks), strict=True)
                if name in record.measured
            ]
            if checked:
                values = unit(np.array([row for _, row in checked]))
                ax.errorbar(
                    [time for time, _ in checked],
                    values[:, 1],
                    yerr=[values[:, 1] - values[:, 0], values[:, 2] - values[:, 1]],
                    fmt="s",
                    markersize=4,
                    color=CHECK_COLOR,
                    ecolor=CHECK_COLOR,
                    elinewidth=0.8,
                    capsize=2,
                    label="check",
                )
            if all(name in r.goals() for r in results):
                targets = unit(np.array([np.median(r.goals()[name]) for r in results]))
                ax.plot(
                    times, targets, color=TARGET_COLOR, linestyle="--", linewidth=1, label="target"
                )
            ax.set_title(quantity_label(name))
        success_ax = axes[len(names)]
        fractions = [100 * float(np.mean(result.success)) for result in results]
        success_ax.plot(times, fractions, marker="o", markersize=3, color="#2ca02c")
        success_ax.set_title("successful neurons [%]")
        handles: dict[str, object] = {}
        for ax in axes[: len(names)]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(label, handle)
        # one legend for every panel, in the grid's empty corner (or beside the first panel)
        if len(panels) % columns:
            figure.legend(
                list(handles.values()),
                list(handles),
                loc="lower right",
                frameon=False,
                bbox_to_anchor=(0.95, 0.08),
            )
        else:
            axes[0].legend(list(handles.values()), list(handles), loc="best", frameon=False)
        every_time = [*times, *check_times]
        if len(set(every_time)) > 1:  # one time axis for every panel
            first, last = min(every_time), max(every_time)
            margin = (last - first) * 0.04
            for ax in axes[: len(panels)]:
                ax.set_xlim(first - margin, last + margin)
        for ax in axes[: len(panels)]:
            if isinstance(times[0], datetime):
                locator = mdates.AutoDateLocator()
                ax.xaxis.set_major_locator(locator)
                ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
            else:
                ax.set_xlabel("time")
    return figure
