"""The class-level outputs: ``grades.csv`` and ``report.html`` with its PNG charts.

Charts: the score histogram, each question's pass rate, each multiple-choice option's share
(answer variables are the names starting with ``answer_``) and the most frequent misconceptions.
"""

from __future__ import annotations

import csv
import html
import io
import unicodedata
from collections import Counter
from pathlib import Path

from mlmcourse.grading.atomic import write_atomic
from mlmcourse.grading.misconceptions import CATALOGUE
from mlmcourse.grading.records import Result, Status

FIXED_COLUMNS = ["student_id", "status", "reason", "score", "max_score"]
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A CSV cell that no spreadsheet reads as a formula (a leading ``'`` neutralises it)."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def plain_label(text: str, width: int = 40) -> str:
    """Student text as a chart label that matplotlib draws literally: printable characters
    only, shortened, and every ``$`` escaped (so it is never parsed as mathtext)."""
    shown = "".join(c if unicodedata.category(c)[0] not in "CZ" or c == " " else " "
                    for c in text)
    if len(shown) > width:
        shown = shown[: width - 1] + "…"
    return shown.replace("\\", "\\\\").replace("$", r"\$")


def write_csv(out: Path, grade_ids: list[str], rows: list[Result]) -> Path:
    """``grades.csv``: fixed columns, then one per graded cell (its points; empty if ungraded)."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    writer.writerow(FIXED_COLUMNS + grade_ids)
    for row in sorted(rows, key=lambda r: r.student_id):
        scores = []
        for grade_id in grade_ids:
            cell = row.cells.get(grade_id)
            scores.append("" if cell is None or cell.points is None else f"{cell.points:g}")
        submitted = row.status != Status.NOT_SUBMITTED
        writer.writerow([spreadsheet_safe(row.student_id), str(row.status),
                         spreadsheet_safe(row.reason), f"{row.score:g}" if submitted else "",
                         f"{row.max_score:g}", *scores])
    return write_atomic(out / "grades.csv", buffer.getvalue())


def _bar_chart(path: Path, labels: list[str], values: list[float], title: str, xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(labels), 3) + 1.2))
    ax.barh(labels or ["(none)"], values or [0], color="#4c72b0")
    ax.invert_yaxis()
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _histogram(path: Path, scores: list[float], max_score: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = max(int(max_score), 1)
    ax.hist(scores, bins=bins, range=(0, max(max_score, 1)), color="#4c72b0", edgecolor="white")
    ax.set_title("Score histogram (submitted notebooks)")
    ax.set_xlabel(f"score (out of {max_score:g})")
    ax.set_ylabel("students")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out: Path, assignment: str, grade_ids: list[str], rows: list[Result]) -> Path:
    """``report.html`` and its four PNGs."""
    submitted = [r for r in rows if r.status != Status.NOT_SUBMITTED]
    max_score = max((r.max_score for r in rows), default=0)
    _histogram(out / "score_histogram.png", [r.score for r in submitted], max_score)

    tests = [g for g in grade_ids if any(g in r.cells and r.cells[g].kind == "test"
                                         for r in submitted)]
    rates = [100 * sum(bool(g in r.cells and r.cells[g].passed) for r in submitted)
             / max(len(submitted), 1) for g in tests]
    _bar_chart(out / "pass_rates.png", [plain_label(t) for t in tests], rates,
               "Pass rate per question", "% of submissions")

    options: Counter[str] = Counter()
    for r in submitted:
        for name, value in r.answers.items():
            if value in ("", None):
                shown = "(blank)"
            elif isinstance(value, float):  # numeric answers: what a student would read
                shown = f"{value:.4g}"
            else:
                shown = str(value)
            options[plain_label(f"{name} = {shown}")] += 1
    labels = sorted(options)
    shares = [100 * options[k] / max(len(submitted), 1) for k in labels]
    _bar_chart(out / "answer_shares.png", labels, shares, "Multiple-choice answers",
               "% of submissions")

    misconceptions = Counter(c.misconception for r in submitted for c in r.cells.values()
                             if c.misconception)
    common = misconceptions.most_common(10)
    _bar_chart(out / "misconceptions.png", [plain_label(k) for k, _ in common],
               [v for _, v in common], "Most frequent misconceptions", "submissions")

    e = html.escape
    status = Counter(str(r.status) for r in rows)
    counts = ", ".join(f"{v} {e(k.replace('_', ' '))}" for k, v in sorted(status.items()))
    failed = "".join(f"<li>{e(r.student_id)}: {e(r.reason)}</li>"
                     for r in rows if r.status == Status.FAILED)
    explained = "".join(f"<li><code>{e(code)}</code> ({count}): {e(CATALOGUE.get(code, ''))}</li>"
                        for code, count in common)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: class report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto}}
img{{max-width:100%}}</style></head><body>
<h1>{e(assignment)}: class report</h1>
<p>{len(rows)} students: {counts}.</p>
<h2>Scores</h2><img src="score_histogram.png" alt="Histogram of scores">
<h2>Questions</h2><img src="pass_rates.png" alt="Pass rate of each question">
<h2>Multiple-choice answers</h2><img src="answer_shares.png" alt="Share of each option">
<h2>Misconceptions</h2><img src="misconceptions.png" alt="Most frequent misconceptions">
<ul>{explained}</ul>
<h2>Submissions that could not be graded</h2><ul>{failed or '<li>none</li>'}</ul>
</body></html>
"""
    return write_atomic(out / "report.html", page)
