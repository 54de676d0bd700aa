"""The class-level outputs: ``grades.csv`` and ``report.html`` with its PNG charts.

Charts: the score histogram, each question's pass rate, each multiple-choice option's share
(answer variables are the names starting with ``answer_``) and the most frequent misconceptions.
"""

from __future__ import annotations

import csv
import html
import os
from collections import Counter
from pathlib import Path

from mlmcourse.grading.misconceptions import CATALOGUE

FIXED_COLUMNS = ["student_id", "status", "reason", "score", "max_score"]


def write_csv(out: Path, grade_ids: list[str], rows: list[dict]) -> Path:
    """``grades.csv``: fixed columns, then one per graded cell (its points; empty if ungraded)."""
    target = out / "grades.csv"
    tmp = out / ".grades.csv.tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIXED_COLUMNS + grade_ids)
        for row in sorted(rows, key=lambda r: r["student_id"]):
            cells = row.get("cells", {})
            scores = []
            for grade_id in grade_ids:
                points = cells.get(grade_id, {}).get("points")
                scores.append("" if points is None else f"{points:g}")
            submitted = row["status"] != "not_submitted"
            writer.writerow([row["student_id"], row["status"], row.get("reason", ""),
                             f"{row.get('score', 0):g}" if submitted else "",
                             f"{row.get('max_score', 0):g}", *scores])
    os.replace(tmp, target)
    return target


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


def write_report(out: Path, assignment: str, grade_ids: list[str], rows: list[dict]) -> Path:
    """``report.html`` and its four PNGs."""
    submitted = [r for r in rows if r["status"] != "not_submitted"]
    max_score = max((r.get("max_score", 0) for r in rows), default=0)
    _histogram(out / "score_histogram.png", [r.get("score", 0) for r in submitted], max_score)

    tests = [g for g in grade_ids
             if any(r.get("cells", {}).get(g, {}).get("kind") == "test" for r in submitted)]
    rates = [100 * sum(bool(r.get("cells", {}).get(g, {}).get("passed")) for r in submitted)
             / max(len(submitted), 1) for g in tests]
    _bar_chart(out / "pass_rates.png", tests, rates, "Pass rate per question", "% of submissions")

    options: Counter[str] = Counter()
    for r in submitted:
        for name, value in (r.get("answers") or {}).items():
            if value in ("", None):
                shown = "(blank)"
            elif isinstance(value, float):  # numeric answers: what a student would read
                shown = f"{value:.4g}"
            else:
                shown = str(value)[:20]
            options[f"{name} = {shown}"] += 1
    labels = sorted(options)
    shares = [100 * options[k] / max(len(submitted), 1) for k in labels]
    _bar_chart(out / "answer_shares.png", labels, shares, "Multiple-choice answers",
               "% of submissions")

    misconceptions = Counter(c["misconception"] for r in submitted
                             for c in r.get("cells", {}).values() if c.get("misconception"))
    common = misconceptions.most_common(10)
    _bar_chart(out / "misconceptions.png", [k for k, _ in common], [v for _, v in common],
               "Most frequent misconceptions", "submissions")

    e = html.escape
    status = Counter(r["status"] for r in rows)
    counts = ", ".join(f"{v} {e(k.replace('_', ' '))}" for k, v in sorted(status.items()))
    failed = "".join(f"<li>{e(r['student_id'])}: {e(r.get('reason', ''))}</li>"
                     for r in rows if r["status"] == "failed")
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
    target = out / "report.html"
    target.write_text(page, encoding="utf-8")
    return target
