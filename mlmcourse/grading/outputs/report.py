"""The class-level outputs: ``grades.csv`` and ``report.html`` with its SVG charts.

Charts: the score histogram, each question's pass rate, each multiple-choice option's share
(answer variables are the names starting with ``answer_``), the distribution of each numeric
answer (with the share within the test's tolerance: the share passing ``test_<answer>``) and the
most frequent misconceptions. Late submissions are counted, with their penalties.
"""

from __future__ import annotations

import csv
import html
import io
import math
import statistics
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from mlmcourse.grading.model import Failure, Result, Status
from mlmcourse.grading.outputs import charts
from mlmcourse.grading.outputs.atomic import write_atomic

FIXED_COLUMNS = ["student_id", "status", "reason", "score", "max_score"]
# after the per-cell columns: when it was handed in and what lateness cost (as nbgrader export),
# then the kind of problem of a failed submission (records.Failure; its detail is ``reason``)
LATE_COLUMNS = ["submitted_at", "seconds_late", "late_penalty", "final_score", "failure"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A CSV cell that no spreadsheet reads as a formula (a leading ``'`` neutralises it)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_csv(out: Path, grade_ids: list[str], rows: list[Result]) -> Path:
    """``grades.csv``: fixed columns, one per graded cell (its points; empty if ungraded), then
    the submission time (UTC), seconds late, the late penalty, the score after it and, for a
    failed submission, the kind of problem."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(FIXED_COLUMNS + grade_ids + LATE_COLUMNS)
    for row in sorted(rows, key=lambda r: r.student_id):
        scores = []
        for grade_id in grade_ids:
            cell = row.cells.get(grade_id)
            scores.append("" if cell is None or cell.points is None else f"{cell.points:g}")
        submitted = row.status != Status.NOT_SUBMITTED
        writer.writerow([spreadsheet_safe(row.student_id), str(row.status),
                         spreadsheet_safe(row.reason), f"{row.score:g}" if submitted else "",
                         f"{row.max_score:g}", *scores, row.submitted_at,
                         f"{row.seconds_late:.0f}" if row.submitted_at else "",
                         f"{row.late_penalty:g}" if submitted else "",
                         f"{row.final_score():g}" if submitted else "",
                         str(row.failure) if row.status == Status.FAILED and row.failure else ""])
    return write_atomic(out / "grades.csv", buffer.getvalue())


def is_number(value: object) -> bool:
    """A numeric answer (``bool`` is a choice, not a number)."""
    return type(value) in (int, float)


def finite(value: object) -> float | None:
    """A numeric answer as a finite float, or ``None``: an int too large for a float, an
    infinity or a NaN is never summarised (it would stop the report, or skew every statistic)."""
    if not is_number(value):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _finite_numbers(name: str, rows: list[Result]) -> list[float]:
    return [x for x in (finite(r.answers.get(name)) for r in rows) if x is not None]


def numeric_answer_names(rows: list[Result]) -> list[str]:
    """Answers most of whose non-blank values are numbers: summarised as numbers, not options."""
    values: dict[str, list[object]] = {}
    for r in rows:
        for name, value in r.answers.items():
            if value not in ("", None):
                values.setdefault(name, []).append(value)
    return sorted(n for n, v in values.items() if sum(map(is_number, v)) * 2 > len(v))


def numeric_summary(name: str, rows: list[Result]) -> dict[str, float | int | None]:
    """Count, blanks, non-numbers, quartiles and range of a numeric answer; ``within`` is the share
    (%) of submissions passing the answer's test ``test_<name>`` (None without such a test)."""
    numbers = sorted(_finite_numbers(name, rows))
    blank = sum(r.answers.get(name) in ("", None) for r in rows)
    test = f"test_{name}"
    tested = [r for r in rows if test in r.cells]
    quartiles = statistics.quantiles(numbers, n=4) if len(numbers) > 1 else numbers * 3
    return {"answered": len(numbers), "blank": blank,
            "not_a_number": len(rows) - len(numbers) - blank,
            "min": numbers[0] if numbers else None, "q1": quartiles[0] if numbers else None,
            "median": statistics.median(numbers) if numbers else None,
            "q3": quartiles[-1] if numbers else None, "max": numbers[-1] if numbers else None,
            "within": 100 * sum(bool(r.cells[test].passed) for r in tested) / len(tested)
            if tested else None}


def _numeric_charts(out: Path, names: list[str], rows: list[Result]) -> list[str]:
    """One histogram per numeric answer (``numeric_answer_<i>.svg``); returns the file names."""
    files = []
    for i, name in enumerate(names, start=1):
        numbers = _finite_numbers(name, rows)
        low, high = (min(numbers), max(numbers)) if numbers else (0.0, 1.0)
        svg = charts.histogram(numbers, low, high, min(30, max(len(set(numbers)), 1)),
                               charts.plain_label(name), "answer given")
        files.append(write_atomic(out / f"numeric_answer_{i}.svg", svg).name)
    return files


def _numeric_table(names: list[str], rows: list[Result]) -> str:
    def shown(value: float | int | None) -> str:
        return "–" if value is None else f"{value:.4g}"

    lines = []
    for name in names:
        s = numeric_summary(name, rows)
        within = "–" if s["within"] is None else f"{s['within']:.0f}%"
        lines.append(f"<tr><td>{html.escape(name)}</td><td>{s['answered']}</td><td>{s['blank']}"
                     f"</td><td>{s['not_a_number']}</td><td>{shown(s['min'])}</td>"
                     f"<td>{shown(s['q1'])}</td><td>{shown(s['median'])}</td>"
                     f"<td>{shown(s['q3'])}</td><td>{shown(s['max'])}</td><td>{within}</td></tr>")
    head = ("<tr><th>answer</th><th>numbers</th><th>blank</th><th>not a number</th><th>min</th>"
            "<th>Q1</th><th>median</th><th>Q3</th><th>max</th><th>within tolerance</th></tr>")
    return f"<table>{head}{''.join(lines)}</table>" if lines else "<p>none</p>"


def write_report(out: Path, assignment: str, grade_ids: list[str], rows: list[Result],
                 explain: Callable[[str], str] | None = None) -> Path:
    """``report.html`` and its SVG charts."""
    submitted = [r for r in rows if r.status != Status.NOT_SUBMITTED]
    max_score = max((r.max_score for r in rows), default=0)
    write_atomic(out / "score_histogram.svg", charts.histogram(
        [r.score for r in submitted], 0.0, max(max_score, 1), max(int(max_score), 1),
        "Score histogram (submitted notebooks)", f"score (out of {max_score:g})"))

    tests = [g for g in grade_ids if any(g in r.cells and r.cells[g].kind == "test"
                                         for r in submitted)]
    rates = [100 * sum(bool(g in r.cells and r.cells[g].passed) for r in submitted)
             / max(len(submitted), 1) for g in tests]
    write_atomic(out / "pass_rates.svg", charts.bar_chart(
        tests, rates, "Pass rate per question", "% of submissions", maximum=100))

    numeric = numeric_answer_names(submitted)
    numeric_files = _numeric_charts(out, numeric, submitted)
    options: Counter[str] = Counter()
    for r in submitted:
        for name, value in r.answers.items():
            if name in numeric:
                continue
            if value in ("", None):
                shown = "(blank)"
            elif is_number(value):  # numeric answers: what a student would read
                number = finite(value)
                shown = "(not a finite number)" if number is None else f"{number:.4g}"
            else:
                shown = str(value)
            options[charts.plain_label(f"{name} = {shown}")] += 1
    labels = sorted(options)
    shares = [100 * options[k] / max(len(submitted), 1) for k in labels]
    write_atomic(out / "answer_shares.svg", charts.bar_chart(
        labels, shares, "Multiple-choice answers", "% of submissions", maximum=100))

    misconceptions = Counter(c.misconception for r in submitted for c in r.cells.values()
                             if c.misconception)
    common = misconceptions.most_common(10)
    write_atomic(out / "misconceptions.svg", charts.bar_chart(
        [k for k, _ in common], [v for _, v in common], "Most frequent misconceptions",
        "submissions"))

    e = html.escape
    numeric_images = "".join(f'<img src="{f}" alt="Distribution of {e(name)}">'
                             for f, name in zip(numeric_files, numeric, strict=True))
    status = Counter(str(r.status) for r in rows)
    counts = ", ".join(f"{v} {e(k.replace('_', ' '))}" for k, v in sorted(status.items()))
    late = [r for r in submitted if r.seconds_late > 0]
    lateness = (f"{len(late)} handed in late, {sum(r.late_penalty > 0 for r in late)} of them "
                f"with a penalty ({sum(r.late_penalty for r in late):g} points in all)")
    by_kind: dict[str, list[Result]] = {}
    for r in rows:
        if r.status == Status.FAILED:
            by_kind.setdefault(str(r.failure or Failure.GRADER), []).append(r)
    failed = "".join(
        f"<li><strong>{e(kind.replace('_', ' '))}</strong> ({len(group)}): <ul>"
        + "".join(f"<li>{e(r.student_id)}: {e(r.reason)}</li>" for r in group) + "</ul></li>"
        for kind, group in sorted(by_kind.items()))
    sentence = explain or (lambda code: "")
    explained = "".join(f"<li><code>{e(code)}</code> ({count}): {e(sentence(code))}</li>"
                        for code, count in common)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: class report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto}}
img{{max-width:100%}}td,th{{padding:.2rem .5rem;text-align:right}}</style></head><body>
<h1>{e(assignment)}: class report</h1>
<p>{len(rows)} students: {counts}; {lateness}.</p>
<h2>Scores</h2><img src="score_histogram.svg" alt="Histogram of scores">
<h2>Questions</h2><img src="pass_rates.svg" alt="Pass rate of each question">
<h2>Multiple-choice answers</h2><img src="answer_shares.svg" alt="Share of each option">
<h2>Numeric answers</h2>{_numeric_table(numeric, submitted)}
{numeric_images}
<h2>Misconceptions</h2><img src="misconceptions.svg" alt="Most frequent misconceptions">
<ul>{explained}</ul>
<h2>Submissions that could not be graded</h2><ul>{failed or '<li>none</li>'}</ul>
</body></html>
"""
    return write_atomic(out / "report.html", page)
