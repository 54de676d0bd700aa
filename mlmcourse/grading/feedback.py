"""The per-student feedback page: each question passed or not, its points and the message.

Only results go in: never test source, never reference answers. Every string that may come from
the student (messages of their exceptions, ids) is HTML-escaped.
"""

from __future__ import annotations

import html
from pathlib import Path

from mlmcourse.grading.atomic import write_atomic
from mlmcourse.grading.misconceptions import CATALOGUE
from mlmcourse.grading.records import CellResult, Result

_STYLE = """body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;line-height:1.5}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top}.pass{color:#1a7f37}.fail{color:#b42318}.manual{color:#6e5a00}"""


def _verdict(cell: CellResult) -> tuple[str, str]:
    if cell.kind == "written":
        if cell.points is None:
            return "manual", "to be graded by hand"
        return ("pass", "graded") if cell.message == "graded by hand" else ("fail", "no answer")
    return ("pass", "passed") if cell.passed else ("fail", "not passed")


def _message(cell: CellResult) -> str:
    if cell.misconception and cell.misconception in CATALOGUE:
        return CATALOGUE[cell.misconception]
    return cell.message


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def render(result: Result, assignment: str) -> str:
    """The feedback page of one result, as HTML (every string escaped)."""
    e = html.escape
    rows = []
    for grade_id, cell in result.cells.items():
        css, verdict = _verdict(cell)
        rows.append(f"<tr><td>{e(grade_id)}</td><td class='{css}'>{verdict}</td>"
                    f"<td>{_points(cell.points)} / {cell.max_points:g}</td>"
                    f"<td>{e(_message(cell))}</td></tr>")
    status = str(result.status)
    pending = " (written answers not graded yet)" if status == "needs_manual" else ""
    reason = f"<p><strong>Note:</strong> {e(result.reason)}</p>" if result.reason else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: feedback</title>
<style>{_STYLE}</style></head><body>
<h1>{e(assignment)}: feedback for {e(result.student_id)}</h1>
<p>Status: {e(status.replace('_', ' '))}. Score: {result.score:g} /
{result.max_score:g}{pending}.
</p>{reason}
<table><thead><tr><th>Question</th><th>Result</th><th>Points</th><th>Feedback</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
</body></html>
"""


def write(out: Path, assignment: str, result: Result) -> Path:
    """Write ``OUT/feedback/<student>/<assignment>.html`` (atomically)."""
    target = out / "feedback" / result.student_id / f"{assignment}.html"
    return write_atomic(target, render(result, assignment))
