"""The class report's charts as SVG, drawn directly (no plotting library to import).

Two kinds: horizontal bars (a value per label: pass rates, option shares, misconceptions) and
histograms (counts of numbers in equal bins: scores, numeric answers). Labels are often student
text; they are drawn as escaped XML text, so nothing in them is parsed as markup or math, and
the report shows the files through ``<img>``, where an SVG runs no script.
"""

from __future__ import annotations

import html
import math
import unicodedata

WIDTH = 640
ROW = 22  # height of one bar's row
LABEL_WIDTH = 250
RIGHT = 60  # room for the value printed after the longest bar
TOP, BOTTOM = 34, 44  # title above the plot; axis and its label below
COLOUR = "#4c72b0"


def plain_label(text: str, width: int = 40) -> str:
    """Student text as a chart label: printable characters only (controls, separators and
    other invisible characters become spaces), shortened to ``width`` characters."""
    shown = "".join(c if unicodedata.category(c)[0] not in "CZ" or c == " " else " "
                    for c in text)
    return shown[: width - 1] + "…" if len(shown) > width else shown


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 12,
          weight: str = "normal") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'font-weight="{weight}">{html.escape(text)}</text>')


def _svg(height: float, title: str, parts: list[str]) -> str:
    body = "\n".join([_text(WIDTH / 2, 20, title, "middle", 14, "bold"), *parts])
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {WIDTH} {height:.0f}" font-family="system-ui, sans-serif" '
            f'role="img">\n<title>{html.escape(title)}</title>\n{body}\n</svg>\n')


def _ticks(maximum: float) -> list[float]:
    """About five round tick values from 0 to at least ``maximum``."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / 5
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    return [i * step for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def bar_chart(labels: list[str], values: list[float], title: str, xlabel: str,
              maximum: float | None = None) -> str:
    """Horizontal bars, one per label, top to bottom in the order given; the axis runs from 0
    to ``maximum`` (default: the largest value)."""
    rows = max(len(labels), 1)
    ticks = _ticks(maximum if maximum is not None else max(values, default=0.0))
    top_value = ticks[-1]
    plot = WIDTH - LABEL_WIDTH - RIGHT
    bottom = TOP + rows * ROW
    parts = [f'<line x1="{LABEL_WIDTH}" y1="{TOP}" x2="{LABEL_WIDTH}" y2="{bottom}" '
             f'stroke="#333"/>']
    for tick in ticks:
        x = LABEL_WIDTH + plot * tick / top_value
        parts += [f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>',
                  _text(x, bottom + 14, f"{tick:g}", "middle", 11)]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * ROW
        length = plot * max(value, 0.0) / top_value
        parts += [f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{length:.1f}" '
                  f'height="{ROW - 6}" fill="{COLOUR}"/>',
                  _text(LABEL_WIDTH - 6, y + ROW / 2 + 4, plain_label(label), "end"),
                  _text(LABEL_WIDTH + length + 4, y + ROW / 2 + 4, f"{value:.3g}", size=11)]
    if not labels:
        parts.append(_text(LABEL_WIDTH + 8, TOP + ROW / 2 + 4, "(none)"))
    parts.append(_text(LABEL_WIDTH + plot / 2, bottom + 34, xlabel, "middle"))
    return _svg(bottom + BOTTOM, title, parts)


def bins(values: list[float], low: float, high: float, count: int) -> list[int]:
    """How many values fall in each of ``count`` equal bins from ``low`` to ``high`` (the last
    bin includes ``high``; values outside are left out)."""
    counts = [0] * count
    span = high / 2 - low / 2  # halves: the full span of two finite floats may overflow
    for value in values:
        if low <= value <= high and span > 0:
            counts[min(int((value / 2 - low / 2) / span * count), count - 1)] += 1
        elif low == value == high:
            counts[0] += 1
    return counts


def histogram(values: list[float], low: float, high: float, count: int, title: str,
              xlabel: str) -> str:
    """Vertical bars: how many values fall in each of ``count`` equal bins of [low, high]."""
    if not high > low:
        low, high = low - 0.5, high + 0.5
    counts = bins(values, low, high, count)
    left, plot, height = 60, WIDTH - 60 - 20, 180
    ticks = _ticks(max(counts, default=0))
    top_count = ticks[-1]
    bottom = TOP + height
    parts = [f'<line x1="{left}" y1="{bottom}" x2="{left + plot}" y2="{bottom}" stroke="#333"/>']
    for tick in ticks:
        y = bottom - height * tick / top_count
        parts += [f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot}" y2="{y:.1f}" '
                  f'stroke="#ddd"/>', _text(left - 6, y + 4, f"{tick:g}", "end", 11)]
    width = plot / count
    for i, n in enumerate(counts):
        bar = height * n / top_count
        parts.append(f'<rect x="{left + i * width + 1:.1f}" y="{bottom - bar:.1f}" '
                     f'width="{max(width - 2, 1):.1f}" height="{bar:.1f}" fill="{COLOUR}"/>')
    for value, anchor, x in ((low, "start", left), (high, "end", left + plot)):
        parts.append(_text(x, bottom + 14, f"{value:.4g}", anchor, 11))
    middle = TOP + height / 2
    parts += [_text(left + plot / 2, bottom + 34, xlabel, "middle"),
              f'<g transform="rotate(-90 16 {middle:.1f})">'
              f'{_text(16, middle, "students", "middle", 11)}</g>']
    return _svg(bottom + BOTTOM, title, parts)
