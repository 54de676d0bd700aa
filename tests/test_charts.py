"""The report's SVG charts: well-formed, right bar sizes and counts, student text shown
literally (never markup, never math)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from mlmcourse.grading.outputs import charts

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
