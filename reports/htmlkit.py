"""A few HTML building blocks for self-contained report pages.

Every string that comes from a result goes through `esc`; only `Markup` (built here from
escaped parts) is inserted verbatim. Pages carry their CSS inline and their images as data
URIs, so one file is the whole report.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any


class Markup(str):
    """Text that is already safe HTML."""

    __slots__ = ()


def esc(value: object) -> Markup:
    return Markup(html.escape(str(value), quote=True))


def join(parts: Iterable[str]) -> Markup:
    return Markup("".join(part if isinstance(part, Markup) else esc(part) for part in parts))


def tag(name: str, content: object = "", **attributes: str) -> Markup:
    """<name attr="...">content</name>; content is escaped unless it is Markup."""
    attrs = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{esc(value)}"' for key, value in attributes.items()
    )
    body = content if isinstance(content, Markup) else esc(content)
    return Markup(f"<{name}{attrs}>{body}</{name}>")


def table(
    headers: Sequence[object],
    rows: Iterable[Sequence[object]],
    *,
    caption: str | None = None,
    class_: str = "data",
    numeric_from: int = 1,
) -> Markup:
    """A table; columns from `numeric_from` on are right-aligned (class 'num')."""
    head = join(tag("th", header) for header in headers)
    body = []
    for row in rows:
        cells = [
            tag("td", value, class_="num") if index >= numeric_from
            else tag("td", value, class_="name") if index == 0 else tag("td", value)
            for index, value in enumerate(row)
        ]
        body.append(tag("tr", join(cells)))
    caption_html = tag("caption", caption) if caption else Markup("")
    return tag(
        "table",
        join([caption_html, tag("thead", tag("tr", head)), tag("tbody", join(body))]),
        class_=class_,
    )


def scrolling(content: Markup) -> Markup:
    """Content (a wide table) that scrolls sideways instead of overflowing the page."""
    return tag("div", content, class_="scroll")


def key_value_table(pairs: Mapping[str, object], *, caption: str | None = None) -> Markup:
    return table(["", ""], pairs.items(), caption=caption, class_="kv", numeric_from=99)


def image(png_base64: str, alt: str) -> Markup:
    return Markup(f'<img src="data:image/png;base64,{png_base64}" alt="{esc(alt)}">')


def section(title: str, *content: Markup, anchor: str | None = None) -> Markup:
    heading = tag("h2", title, id=anchor) if anchor else tag("h2", title)
    return tag("section", join([heading, *content]))


def paragraph(text: object, class_: str | None = None) -> Markup:
    return tag("p", text, class_=class_) if class_ else tag("p", text)


def preformatted(value: Any) -> Markup:
    """JSON-like data shown verbatim (escaped)."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
    return tag("pre", text)


BADGE_LEVELS = ("good", "fair", "poor")


def status_badge(text: str, level: str) -> Markup:
    """A coloured label; `level` is 'good' (green), 'fair' (amber) or 'poor' (red)."""
    if level not in BADGE_LEVELS:
        raise ValueError(f"badge level = {level!r} is not one of {', '.join(BADGE_LEVELS)}")
    return tag("span", text, class_=f"badge {level}")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1240px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 1.5em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.2em; border-bottom: 2px solid #e0e0e0; padding-bottom: 4px;
     margin-top: 1.8em; }
p.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 0.9em; }
caption { text-align: left; color: #555; padding-bottom: 4px; white-space: nowrap; }
h3 { font-size: 1.0em; margin: 1.2em 0 0.3em; }
th, td { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; }
th { background: #f0f0f0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { display: none; }
table.kv td:first-child { font-weight: 600; background: #f7f7f7; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
.grid2 { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr));
         gap: 4px 16px; }
.badge { padding: 1px 8px; border-radius: 8px; font-weight: 600; font-size: 0.9em; }
.badge.good { background: #e3f4e3; color: #1b5e20; }
.badge.fair { background: #fff3d6; color: #8a5a00; }
.badge.poor { background: #fde4e4; color: #b71c1c; }
pre { background: #f5f5f5; padding: 8px; overflow-x: auto; font-size: 0.85em;
      white-space: pre-wrap; word-break: break-word; }
.note { color: #666; font-size: 0.9em; }
nav a { margin-right: 12px; }
.scroll { overflow-x: auto; max-width: 100%; }
table.wide { font-size: 0.82em; }
table.wide th { white-space: normal; }
td.name { white-space: nowrap; }
"""


def page(title: str, body: Markup, *, subtitle: str | None = None) -> str:
    header = join([tag("h1", title), paragraph(subtitle, "sub") if subtitle else Markup("")])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{header}\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_page(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` to `path` (parents created) and return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
