"""The per-student feedback page: each question passed or not, its points and the message.

Only results go in: never test source, never reference answers. Every string that may come from
the student (messages of their exceptions, ids) is HTML-escaped.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from mlmcourse.grading.misconceptions import CATALOGUE

_STYLE = """body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;line-height:1.5}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top}.pass{color:#1a7f37}.fail{color:#b42318}.manual{color:#6e5a00}"""


def _verdict(cell: dict) -> tuple[str, str]:
    if cell["kind"] == "written":
        if cell["points"] is None:
            return "manual", "to be graded by hand"
        return "fail", "no answer"
    return ("pass", "passed") if cell["passed"] else ("fail", "not passed")


def _message(cell: dict) -> str:
    code = cell.get("misconception")
    if code and code in CATALOGUE:
        return CATALOGUE[code]
    return cell.get("message") or ""


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def render(result: dict, assignment: str) -> str:
    """The feedback page of one result, as HTML."""
    e = html.escape
    rows = []
    for grade_id, cell in result.get("cells", {}).items():
        css, verdict = _verdict(cell)
        rows.append(f"<tr><td>{e(grade_id)}</td><td class='{css}'>{verdict}</td>"
                    f"<td>{_points(cell['points'])} / {cell['max_points']:g}</td>"
                    f"<td>{e(_message(cell))}</td></tr>")
    status = result["status"]
    pending = " (written answers not graded yet)" if status == "needs_manual" else ""
    reason = f"<p><strong>Note:</strong> {e(result['reason'])}</p>" if result.get("reason") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(assignment)}: feedback</title>
<style>{_STYLE}</style></head><body>
<h1>{e(assignment)}: feedback for {e(result['student_id'])}</h1>
<p>Status: {e(status.replace('_', ' '))}. Score: {result.get('score', 0):g} /
{result.get('max_score', 0):g}{pending}.
</p>{reason}
<table><thead><tr><th>Question</th><th>Result</th><th>Points</th><th>Feedback</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
</body></html>
"""


def write(out: Path, assignment: str, result: dict) -> Path:
    """Write ``OUT/feedback/<student>/<assignment>.html`` (atomically)."""
    folder = out / "feedback" / result["student_id"]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{assignment}.html"
    tmp = folder / f".{assignment}.html.tmp"
    tmp.write_text(render(result, assignment), encoding="utf-8")
    os.replace(tmp, target)
    return target
