"""The report's SVG charts: well-formed, right bar sizes and counts, student text shown
literally (never markup, never math); any answers a class gives (numbers too large for a float,
infinities, NaN) make a report, with only finite numbers summarised."""

from __future__ import annotations

import math
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from mlmcourse.grading.model import Result, Status
from mlmcourse.grading.outputs import charts, report

SVG = "{http://www.w3.org/2000/svg}"


def _rects(svg: str) -> list[ET.Element]:
    return list(ET.fromstring(svg).iter(f"{SVG}rect"))


def _texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_bar_lengths_are_proportional_to_the_values() -> None:
    svg = charts.bar_chart(["a", "b", "c"], [100.0, 50.0, 0.0], "Pass rate", "%", maximum=100)
    widths = [float(r.get("width")) for r in _rects(svg)]
    assert widths[0] == 2 * widths[1] > 0 and widths[2] == 0
    assert {"a", "b", "c", "Pass rate", "%"} <= set(_texts(svg))


def test_hostile_labels_are_escaped_text() -> None:
    hostile = ['<script>alert(1)</script>', '$\\frac{a}{b}$', '"><img src=x onerror=alert(1)>',
               "]]><!ENTITY x>", "ab\x00\u202ecd\nef"]
    svg = charts.bar_chart(hostile, [1, 2, 3, 4, 5], "t", "x")
    root = ET.fromstring(svg)  # well-formed XML whatever the labels hold
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter(f"{SVG}img"))
    assert "<script" not in svg and "onerror=alert" in svg.replace("&quot;", '"')
    assert "$\\frac{a}{b}$" in _texts(svg)  # math notation shown as typed
    assert "ab  cd ef" in _texts(svg)  # control and direction characters become spaces
    assert charts.plain_label("x" * 100).endswith("…") and len(charts.plain_label("x" * 100)) == 40


def test_histogram_counts_every_value_in_its_bin() -> None:
    assert charts.bins([0, 1, 1.5, 4, 4, 5], 0, 5, 5) == [1, 2, 0, 0, 3]
    assert charts.bins([2.0, 2.0], 2.0, 2.0, 1) == [2]
    assert charts.bins([-1, 6], 0, 5, 5) == [0] * 5
    svg = charts.histogram([0, 1, 1.5, 4, 4, 5], 0, 5, 5, "Scores", "score")
    heights = [float(r.get("height")) for r in _rects(svg)]
    assert heights[4] == 3 * heights[0] > 0 and heights[1] == 2 * heights[0]
    assert charts.histogram([], 0, 0, 1, "none", "x").startswith("<svg")


def test_ticks_are_round_and_cover_the_maximum() -> None:
    assert charts._ticks(100) == [0, 20, 40, 60, 80, 100]
    assert charts._ticks(7)[-1] >= 7 and charts._ticks(0) == [0.0, 1.0]


def test_histogram_of_the_widest_finite_range() -> None:
    big = 1.7e308  # the span from -big to big is larger than the largest float
    assert charts.bins([-big, 0.0, big], -big, big, 4) == [1, 0, 1, 1]
    ET.fromstring(charts.histogram([-big, big], -big, big, 30, "t", "x"))


ANSWERS = st.one_of(
    st.none(), st.booleans(), st.text(max_size=20),
    st.floats(),  # infinities and NaN included
    st.integers(min_value=-10**4299, max_value=10**4299),  # as large as the protocol allows
)


@settings(max_examples=80, deadline=None)
@given(values=st.lists(ANSWERS, min_size=1, max_size=6))
def test_the_report_summarises_any_answers_and_only_finite_numbers(values: list) -> None:
    rows = [Result(f"s{i}", "a", 1.0, Status.GRADED, answers={"answer_x": value})
            for i, value in enumerate(values)]
    with tempfile.TemporaryDirectory() as out:
        report.write_report(Path(out), "a", [], rows)
        assert (Path(out) / "report.html").exists()
    summary = report.numeric_summary("answer_x", rows)
    shown = [summary[k] for k in ("min", "q1", "median", "q3", "max") if summary[k] is not None]
    finite = [v for v in values if report.finite(v) is not None]
    assert summary["answered"] == len(finite)
    assert all(math.isfinite(x) for x in shown[:1] + shown[-1:])  # the range: given values
