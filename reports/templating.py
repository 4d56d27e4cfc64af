"""The Jinja2 environment of the HTML reports.

Templates come from `reports/templates` (installed with the package); a directory named by
$CALIB_REPORT_TEMPLATES is searched first, so a lab restyles its reports by copying
`report.css` (or any template) there and editing it. Every value is escaped (autoescape).
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

TEMPLATES_ENV = "CALIB_REPORT_TEMPLATES"
TEMPLATE_DIR = Path(__file__).with_name("templates")


@cache
def _environment(override: str | None) -> Any:
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if override:
        directory = Path(override).expanduser()
        if not directory.is_dir():
            raise ValueError(
                f"${TEMPLATES_ENV} = {override!r} is not a directory of report templates"
            )
        loaders.append(jinja2.FileSystemLoader(directory))
    loaders.append(jinja2.FileSystemLoader(TEMPLATE_DIR))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return environment


def environment() -> Any:
    """The environment for the current $CALIB_REPORT_TEMPLATES."""
    return _environment(os.environ.get(TEMPLATES_ENV) or None)


def render(template: str, **context: Any) -> str:
    """`template` rendered with `context`."""
    return environment().get_template(template).render(**context)
