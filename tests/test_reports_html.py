"""HTML report of one calibration: self-contained, complete, escaped."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from fakes import QUANTITIES
from result_factory import make_history, make_result

from reports import write_html_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MALICIOUS = "leak: <script>alert('pwned')</script> & <img src=x onerror=alert(1)>"
VOID_ELEMENTS = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr"}


@dataclass
class ParsedTable:
    headers: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    caption: str = ""


class ReportParser(HTMLParser):
    """Collects tags, images, tables and text; records unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables: list[ParsedTable] = []
        self.text: list[str] = []
        self.unbalanced: list[str] = []
        self._open: list[str] = []
        self._table_stack: list[ParsedTable] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_head = False
        self._in_caption = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attributes = {key: value or "" for key, value in attrs}
        if tag == "img":
            self.images.append(attributes)
        if tag not in VOID_ELEMENTS:
            self._open.append(tag)
        if tag == "table":
            self._table_stack.append(ParsedTable())
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "caption":
            self._in_caption = True

    def handle_endtag(self, tag):
        if not self._open or self._open[-1] != tag:
            self.unbalanced.append(tag)
        else:
            self._open.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table_stack:
            table = self._table_stack[-1]
            if self._in_head:
                table.headers = self._row
            else:
                table.rows.append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "caption":
            self._in_caption = False
        elif tag == "table" and self._table_stack:
            self.tables.append(self._table_stack.pop())

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._in_caption and self._table_stack:
            self._table_stack[-1].caption += data


def parse_report(path: Path) -> ReportParser:
    parser = ReportParser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser


def png_bytes(image: dict[str, str]) -> bytes:
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix)
    return base64.b64decode(image["src"][len(prefix) :], validate=True)


def table_with_header(parser: ReportParser, header: str) -> ParsedTable:
    matches = [table for table in parser.tables if header in table.headers]
    assert len(matches) == 1, f"expected one table with header {header!r}"
    return matches[0]


@pytest.fixture(scope="module")
def result():
    return make_result(
        failures={
            **{n: "tau_mem: i_bias_leak at upper bound 1022" for n in (12, 300)},
            77: MALICIOUS,
        }
    )


@pytest.fixture(scope="module")
def history():
    return make_history(5, drift_per_step={"leak": 0.5}, step=timedelta(days=1))


@pytest.fixture(scope="module")
def report(tmp_path_factory, result, history) -> Path:
    path = tmp_path_factory.mktemp("report") / "nested" / "report.html"
    written = write_html_report(result, path, history=history)
    assert written == path
    return path


@pytest.fixture(scope="module")
def parsed(report) -> ReportParser:
    return parse_report(report)


def test_report_is_one_well_formed_file(parsed):
    assert parsed.tags[0] == "html"
    assert parsed.unbalanced == []


def test_report_needs_no_external_assets(report, parsed):
    text = report.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "link" not in parsed.tags
    assert "script" not in parsed.tags
    assert all(image["src"].startswith("data:") for image in parsed.images)


def test_every_image_is_an_embedded_png(parsed):
    assert parsed.images
    for image in parsed.images:
        try:
            data = png_bytes(image)
        except binascii.Error as error:  # pragma: no cover - the assertion explains
            pytest.fail(f"image {image.get('alt')!r} is not valid base64: {error}")
        assert data.startswith(PNG_SIGNATURE), image.get("alt")


def test_report_holds_histograms_per_quantity_maps_codes_and_drift(parsed, result):
    alts = [image["alt"] for image in parsed.images]
    for name in result.achieved:
        assert f"{name} before and after calibration" in alts
    assert "residual maps" in alts
    assert "code distributions per cell" in alts
    assert "drift over time" in alts


def test_summary_table_has_one_row_per_quantity(parsed, result):
    table = table_with_header(parsed, "std before")
    assert [row[0] for row in table.rows] == list(QUANTITIES)
    tau = next(row for row in table.rows if row[0] == "tau_mem")
    assert tau[1] == "µs"
    expected = np.std(result.achieved["tau_mem"][result.success]) * 1e6
    assert float(tau[5]) == pytest.approx(expected, rel=5e-3)


def test_failed_neuron_table_has_one_row_per_failed_neuron(parsed, result):
    table = table_with_header(parsed, "neuron")
    assert [int(row[0]) for row in table.rows] == sorted(np.flatnonzero(~result.success))
    assert {row[1] for row in table.rows if row[0] == "300"} == {"2"}


def test_failure_groups_count_neurons_per_reason(parsed):
    table = table_with_header(parsed, "e.g. neuron ids")
    group = next(row for row in table.rows if "upper bound 1022" in row[1])
    assert group[0] == "2"
    assert group[2] == "12, 300"


def test_malicious_reason_is_escaped(report, parsed):
    raw = report.read_text(encoding="utf-8")
    assert "<script>" not in raw
    assert "onerror=alert(1)>" not in raw
    assert "&lt;script&gt;" in raw
    # The browser shows the original text, unchanged.
    assert any(MALICIOUS in "".join(row) for table in parsed.tables for row in table.rows)
    assert all(image.get("onerror") is None for image in parsed.images)


def test_chip_id_and_title_are_escaped(tmp_path):
    result = make_result(chip_id='chip"<b>', failures=0, quantities=["leak"])
    path = write_html_report(result, tmp_path / "r.html", title="<i>night</i>")
    raw = path.read_text(encoding="utf-8")
    parsed = parse_report(path)
    assert "<b>" not in raw and "<i>" not in raw
    assert "b" not in parsed.tags and "i" not in parsed.tags
    assert "<i>night</i>" in "".join(parsed.text)


def test_codes_section_lists_quadrant_and_constant_cells(parsed, result):
    quadrant = table_with_header(parsed, "codes (Q0, Q1, Q2, Q3)")
    ramp = next(row for row in quadrant.rows if row[0] == "cadc_ramp_offset")
    assert ramp[1] == ", ".join(str(code) for code in result.codes["cadc_ramp_offset"])
    constant = table_with_header(parsed, "code")
    assert ["membrane_capacitance", "63"] in constant.rows


def test_provenance_lists_versions_and_device_statistics(parsed, result):
    versions = table_with_header(parsed, "package")
    assert ["numpy", result.provenance.versions["numpy"]] in versions.rows
    stats = table_with_header(parsed, "statistic")
    assert ["runs", "3120"] in stats.rows


def test_report_without_history_has_no_drift_plot(tmp_path):
    result = make_result(failures=2, quantities=["leak", "tau_mem"])
    parsed = parse_report(write_html_report(result, tmp_path / "r.html"))
    alts = [image["alt"] for image in parsed.images]
    assert "drift over time" not in alts
    assert len(table_with_header(parsed, "std before").rows) == 2


def test_history_accepts_plain_results_timed_by_provenance(tmp_path, history):
    result = history[-1][1]
    results = [entry for _, entry in history]
    parsed = parse_report(write_html_report(result, tmp_path / "r.html", history=results))
    assert "drift over time" in [image["alt"] for image in parsed.images]


def test_history_entries_of_the_wrong_kind_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"history\[1\]"):
        write_html_report(
            make_result(quantities=["leak"]),
            tmp_path / "r.html",
            history=[make_result(quantities=["leak"]), ("yesterday", 3)],
        )


def test_report_without_history_says_there_is_nothing_to_compare_with(tmp_path):
    parsed = parse_report(write_html_report(make_result(), tmp_path / "alone.html"))
    text = " ".join("".join(parsed.text).split())
    assert "nothing to compare with" in text


def test_report_plots_stored_checks_in_the_drift(tmp_path, result):
    from calib.core.checks import CheckRecord, QuantityDrift

    measured = np.asarray(result.achieved["leak"]) + 0.7
    check = CheckRecord(
        chip_id=result.chip_id,
        checked_run=None,
        target_fingerprint=result.target.fingerprint(),
        created="2025-03-03T02:00:00+00:00",
        runs=5,
        quantities={"leak": QuantityDrift(0.7, 0.8, 0.01, 2.0, 500, False)},
        measured={"leak": measured},
    )
    created = result.provenance.created
    path = write_html_report(
        result,
        tmp_path / "checked.html",
        checks=[("2025-03-03T02:00:00+00:00", check)],
        history=[(created, result)],
    )
    parsed = parse_report(path)
    assert "drift over time" in [image["alt"] for image in parsed.images]
    assert "1 checks" in " ".join("".join(parsed.text).split())


def test_after_histogram_zooms_to_the_tolerance_band(result):
    from reports.plots import ZOOM_LIMIT, quantity_histograms

    figure = quantity_histograms(result, "leak")
    after = figure.axes[1]
    low, high = after.get_xlim()
    target = float(np.median(result.target.quantities()["leak"]))
    tolerance = float(QUANTITIES["leak"].tolerance_for(np.array([target]))[0])
    assert low < target < high
    assert high - target <= ZOOM_LIMIT * tolerance + 1e-9
    good = result.achieved["leak"][result.success]
    inside = int(np.sum(np.abs(good - target) <= tolerance))
    assert f"{inside}/{good.size} in tolerance" in after.get_title()
