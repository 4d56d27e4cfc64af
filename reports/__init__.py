"""Terminal and HTML reports of calibration results, fleet runs and mismatch studies.

Names are loaded on first use, so that a terminal summary does not pay for importing
matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "render_summary": "reports.terminal",
    "build_summary": "reports.terminal",
    "summarize": "reports.summary",
    "RunSummary": "reports.summary",
    "write_html_report": "reports.html",
    "compare_results": "calib.operations.compare",
    "FleetRow": "reports.fleet",
    "write_fleet_report": "reports.fleet",
    "ChipSpread": "reports.study",
    "StudyData": "reports.study",
    "YieldCurve": "reports.study",
    "YieldMap": "reports.study",
    "write_study_report": "reports.study",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reports' has no attribute {name!r}")
    return getattr(import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
