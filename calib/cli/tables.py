"""Tables that fit the console: columns are dropped by priority until the table fits.

Chip ids, run ids and status words are never cut: their columns do not wrap. A column that may
wrap (free text) wraps; when the table is still too wide, the columns of lowest priority are
left out and the caption says which (`--json` always has everything).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    header: str
    justify: str = "left"
    priority: int = 100
    """Higher is kept longer; columns of equal priority go right to left."""
    wrap: bool = False
    """Whether its cells may wrap (free text); others are never cut."""
    min_width: int | None = None


def _width(cell: Any) -> int:
    """Cells of `cell` on one line (markup left out)."""
    if isinstance(cell, Text):
        return cell.cell_len
    return Text.from_markup(str(cell)).cell_len


def _build(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    keep: Sequence[int],
    caption: str | None,
    measuring: bool = False,
    **table_options: Any,
) -> Table:
    """The table of the `keep` columns; `measuring`: free-text cells cut to their column's
    minimum width, since rich measures a cell by its longest word, which folds anyway."""
    options = {
        "header_style": "bold",
        "box": box.SIMPLE_HEAD,
        "pad_edge": False,
        "title_justify": "left",
        "caption_justify": "left",
        **table_options,
    }
    table = Table(caption=caption, **options)
    for index in keep:
        column = columns[index]
        # a column that must not be cut asks for its widest cell: rich keeps it whole
        natural = max([cell_len(column.header), *(_width(row[index]) for row in rows)])
        table.add_column(
            column.header,
            justify=column.justify,  # type: ignore[arg-type]
            no_wrap=not column.wrap,
            min_width=column.min_width if column.wrap else natural,
            overflow="fold" if column.wrap else "ignore",
        )
    for row in rows:
        table.add_row(
            *(_measured(row[index], columns[index]) if measuring else row[index] for index in keep)
        )
    return table


def _measured(cell: Any, column: Column) -> Any:
    if not column.wrap or column.min_width is None:
        return cell
    text = cell.plain if isinstance(cell, Text) else Text.from_markup(str(cell)).plain
    return text[: column.min_width]


def fitted_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    *,
    caption: str | None = None,
    **table_options: Any,
) -> Table:
    """A table of `rows` that fits `console.width`, leaving out low-priority columns."""
    keep = list(range(len(columns)))
    dropped: list[str] = []
    # lowest priority first; among equals the rightmost first
    order = sorted(keep, key=lambda index: (columns[index].priority, -index))
    while True:
        table = _build(columns, rows, keep, caption, measuring=True, **table_options)
        minimum = Measurement.get(console, console.options.update_width(100_000), table).minimum
        if minimum <= console.width or len(keep) <= 1:
            break
        victim = next(index for index in order if index in keep)
        if columns[victim].priority >= 1000:  # essential columns stay, even if too wide
            break
        keep.remove(victim)
        dropped.append(columns[victim].header)
    if dropped:
        note = (
            f"left out for the width of {console.width} columns: "
            f"{', '.join(reversed(dropped))} (see --json)"
        )
        caption = f"{caption}\n{note}" if caption else note
    return _build(columns, rows, keep, caption, **table_options)


ESSENTIAL = 1000
"""Priority of the columns a table never drops (chip id, status)."""
