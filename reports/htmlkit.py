"""The parts of a report page as data; Jinja2 templates turn them into HTML.

A page is a list of `Section`s, each a list of blocks (tables, key-value tables, images,
notes, preformatted text, headings, grids). The report modules build these from results; the
templates in `reports/templates` (see `reports.templating`) render them, escaping every
string, with the page's CSS inline and images as data URIs, so one file is the whole report.
A lab restyles the reports by putting its own `report.css` or templates in a directory named
by $CALIB_REPORT_TEMPLATES.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BADGE_LEVELS = ("good", "fair", "poor")


@dataclass(frozen=True)
class Badge:
    """A coloured label in a table cell; `level` is 'good', 'fair' or 'poor'."""

    text: str
    level: str
    detail: str = ""
    """Plain text shown after the badge."""

    kind = "badge"

    def __post_init__(self) -> None:
        if self.level not in BADGE_LEVELS:
            raise ValueError(
                f"badge level = {self.level!r} is not one of {', '.join(BADGE_LEVELS)}"
            )


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str | None = None
    class_: str = "data"
    numeric_from: int = 1
    """Columns from this one on are right-aligned numbers."""
    scroll: bool = False
    """Scroll sideways instead of overflowing the page (wide tables)."""

    kind = "table"


@dataclass(frozen=True)
class KeyValues:
    pairs: tuple[tuple[str, Any], ...]
    caption: str | None = None

    kind = "key_values"


@dataclass(frozen=True)
class Image:
    png_base64: str
    alt: str

    kind = "image"


@dataclass(frozen=True)
class Paragraph:
    text: str
    class_: str | None = None

    kind = "paragraph"


@dataclass(frozen=True)
class Preformatted:
    text: str

    kind = "preformatted"


@dataclass(frozen=True)
class Heading:
    text: str

    kind = "heading"


@dataclass(frozen=True)
class Grid:
    """Blocks side by side (two columns on a wide screen)."""

    blocks: tuple[Any, ...]

    kind = "grid"


@dataclass(frozen=True)
class Section:
    title: str
    blocks: tuple[Any, ...] = ()
    anchor: str | None = None

    kind = "section"


Block = Table | KeyValues | Image | Paragraph | Preformatted | Heading | Grid | Section


@dataclass(frozen=True)
class Page:
    title: str
    sections: tuple[Section, ...]
    subtitle: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def join(parts: Iterable[Any]) -> list[Any]:
    """The blocks of `parts`, lists flattened."""
    blocks: list[Any] = []
    for part in parts:
        if isinstance(part, list | tuple):
            blocks.extend(join(part))
        else:
            blocks.append(part)
    return blocks


def table(
    headers: Sequence[object],
    rows: Iterable[Sequence[object]],
    *,
    caption: str | None = None,
    class_: str = "data",
    numeric_from: int = 1,
) -> Table:
    return Table(
        tuple(str(header) for header in headers),
        tuple(tuple(row) for row in rows),
        caption,
        class_,
        numeric_from,
    )


def scrolling(content: Table) -> Table:
    """A wide table that scrolls sideways instead of overflowing the page."""
    return Table(
        content.headers,
        content.rows,
        content.caption,
        content.class_,
        content.numeric_from,
        scroll=True,
    )


def key_value_table(pairs: Mapping[str, object], *, caption: str | None = None) -> KeyValues:
    return KeyValues(tuple(pairs.items()), caption)


def image(png_base64: str, alt: str) -> Image:
    return Image(png_base64, alt)


def section(title: str, *content: Any, anchor: str | None = None) -> Section:
    return Section(title, tuple(join(content)), anchor)


def paragraph(text: object, class_: str | None = None) -> Paragraph:
    return Paragraph(str(text), class_)


def heading(text: object) -> Heading:
    return Heading(str(text))


def grid(blocks: Iterable[Any]) -> Grid:
    return Grid(tuple(join(blocks)))


def preformatted(value: Any) -> Preformatted:
    """JSON-like data shown verbatim (escaped)."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return Preformatted(text)


def status_badge(text: str, level: str, detail: str = "") -> Badge:
    """A coloured label; `level` is 'good' (green), 'fair' (amber) or 'poor' (red)."""
    return Badge(text, level, detail)


def page(
    title: str,
    body: Iterable[Any],
    *,
    subtitle: str | None = None,
    template: str = "page.html.j2",
    **context: Any,
) -> str:
    """The HTML text of a page of `body`'s sections (rendered by `template`)."""
    from reports.templating import render

    sections = tuple(join(body))
    return render(template, page=Page(title, sections, subtitle), **context)


def write_page(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` (parents created) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
