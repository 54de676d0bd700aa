"""The per-student feedback page: each question passed or not, its points and the message, the
scores and comments the instructor gave in formgrader, and when it was handed in (late or not).

Only results go in: never test source, never reference answers. Every string that may come from
the student (messages of their exceptions, ids) is HTML-escaped; the instructor's comments are
rendered as the Markdown formgrader's comment box promises, reduced to the allowlist of
:func:`~mlmcourse.grading.outputs.sanitise.sanitise_html` (no script or style, safe links only).

The page is written to ``OUT/feedback/<student>/<assignment>.html`` and, for a submission
collected by ``nbgrader collect``, where ``nbgrader release_feedback`` takes it from:
``<course>/feedback/<student>/<assignment>/<notebook>.html``, beside the submission's
``timestamp.txt`` and ``submission_secret.txt`` (students then get it with *Fetch Feedback*).
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from mlmcourse.grading.inputs.collect import TIMESTAMP_NAME, parse_timestamp
from mlmcourse.grading.inputs.notebook import Cell
from mlmcourse.grading.model import CellResult, Result
from mlmcourse.grading.outputs.atomic import write_atomic
from mlmcourse.grading.outputs.sanitise import sanitise_html

_STYLE = """body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;line-height:1.5}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.4rem;
text-align:left;vertical-align:top}.pass{color:#1a7f37}.fail{color:#b42318}.manual{color:#6e5a00}
.comment{color:#1f3a93}"""


_SECTION = re.compile(r"^#{1,6}\s+(\d+)\.")  # "## 2. Questions (3 points)"
_PART = re.compile(r"^\*\*(\d+[a-z])\.\*\*")  # "**2a.** Of the selected positions..."


def question_numbers(cells: Iterable[Cell]) -> dict[str, str]:
    """The number each graded cell has in the notebook (grade id -> "1", "3a"): its section's
    heading ("## 3. ...") and the last question of the section above it ("**3a.** ...")."""
    section, part, numbers = "", "", {}
    for cell in cells:
        if cell.cell_type == "markdown" and not cell.solution:
            for line in cell.source.splitlines():
                if m := _SECTION.match(line):
                    section, part = m[1], ""
                elif m := _PART.match(line):
                    part = m[1]
        if cell.grade and cell.grade_id:
            numbers[cell.grade_id] = part or section
    return numbers


def _verdict(cell: CellResult) -> tuple[str, str]:
    if cell.kind == "written":
        if cell.points is None:
            return "manual", "to be graded by hand"
        return ("pass", "graded") if cell.by_hand else ("fail", "no answer")
    verdict = ("pass", "passed") if cell.passed else ("fail", "not passed")
    return (verdict[0], verdict[1] + ", score set by hand") if cell.by_hand else verdict


Explain = Callable[[str], str]
"""The course's sentence for a misconception code ("" if it has none): the grader is given it
(:func:`mlmcourse.checks.explain`), it holds no catalogue of its own."""


def _message(cell: CellResult, explain: Explain | None) -> str:
    if cell.kind == "written" and cell.by_hand:
        return ""
    if cell.misconception and explain is not None and explain(cell.misconception):
        return explain(cell.misconception)
    return cell.message


def markdown(text: str) -> str:
    """An instructor's comment as safe HTML: rendered as Markdown (as formgrader's own renderer,
    nbconvert's mistune, does), then reduced to the sanitiser's allowlist."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return sanitise_html(markdown2html_mistune(text))


def _feedback(cell: CellResult, explain: Explain | None) -> str:
    """The grader's message (escaped) and the instructor's comment (sanitised Markdown)."""
    parts = [f"<div>{html.escape(text)}</div>" for text in (_message(cell, explain),) if text]
    if cell.comment:
        parts.append(f"<div class='comment'><strong>Instructor:</strong> "
                     f"{markdown(cell.comment)}</div>")
    return "".join(parts)


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    parts = [f"{days} d"] * bool(days) + [f"{hours} h"] * bool(hours) + [f"{minutes} min"]
    return " ".join(parts) if seconds >= 60 else f"{int(seconds)} s"


def lateness_text(result: Result) -> str:
    """One sentence on when the work was handed in (plain text)."""
    if not result.submitted_at:
        return ""
    when = result.submitted_at.replace("T", " ") + " UTC"
    if result.seconds_late <= 0:
        return f"Handed in {when}, on time."
    text = f"Handed in {when}, {_duration(result.seconds_late)} late"
    if result.late_penalty:
        text += f": late penalty {result.late_penalty:g} points, final score " \
                f"{result.final_score():g} / {result.max_score:g}"
    return text + "."


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value:g}"


def _score_line(result: Result) -> str:
    """The first line: the score, after the late penalty when there is one."""
    status = str(result.status)
    pending = " (written answers not graded yet)" if status == "needs_manual" else ""
    score = f"{result.score:g} / {result.max_score:g}"
    if result.late_penalty:
        score = (f"{result.final_score():g} / {result.max_score:g} after the late penalty of "
                 f"{result.late_penalty:g} points ({result.score:g} before it)")
    return f"Score: {score}{pending}. Status: {status.replace('_', ' ')}."


def render(result: Result, assignment: str, numbers: dict[str, str] | None = None,
           explain: Explain | None = None) -> str:
    """The feedback page of one result, as HTML (every string escaped); ``numbers`` gives each
    question's number in the notebook (:func:`question_numbers`), ``explain`` the course's
    sentence for each misconception."""
    e = html.escape
    rows = []
    for grade_id, cell in result.cells.items():
        css, verdict = _verdict(cell)
        number = (numbers or {}).get(grade_id, "")
        label = f"{e(number)} <small>{e(grade_id)}</small>" if number else e(grade_id)
        rows.append(f"<tr><td>{label}</td><td class='{css}'>{verdict}</td>"
                    f"<td>{_points(cell.points)} / {cell.max_points:g}</td>"
                    f"<td>{_feedback(cell, explain)}</td></tr>")
    reason = f"<p><strong>Note:</strong> {e(result.reason)}</p>" if result.reason else ""
    late = lateness_text(result)
    reason += f"<p class='late'>{e(late)}</p>" if late else ""
    comments = "".join(f"<li><strong>{e(cell_id)}</strong>: {markdown(text)}</li>"
                       for cell_id, text in result.comments.items())
    comments = f"<h2>Comments from your instructor</h2><ul>{comments}</ul>" if comments else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(assignment)}: feedback</title>
<style>{_STYLE}</style></head><body>
<h1>{e(assignment)}: feedback for {e(result.student_id)}</h1>
<p class='score'>{e(_score_line(result))}</p>{reason}
<table><thead><tr><th>Question</th><th>Result</th><th>Points</th><th>Feedback</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
{comments}
</body></html>
"""


def write(out: Path, assignment: str, result: Result, numbers: dict[str, str] | None = None,
          explain: Explain | None = None) -> Path:
    """Write ``OUT/feedback/<student>/<assignment>.html`` (atomically)."""
    target = out / "feedback" / result.student_id / f"{assignment}.html"
    return write_atomic(target, render(result, assignment, numbers, explain))


SECRET_NAME = "submission_secret.txt"
MAX_SECRET_BYTES = 1024


def _collected_time(folder: Path) -> dt.datetime | None:
    """The time in the ``timestamp.txt`` nbgrader wrote in ``folder`` (strictly its format), as
    naive UTC; ``None`` when there is none."""
    path = folder / TIMESTAMP_NAME
    if not path.is_file() or path.is_symlink():
        return None
    text = path.read_text(encoding="utf-8", errors="replace")[:200].strip()
    return parse_timestamp(text) if text else None


def write_for_nbgrader(course: Path, assignment: str, notebook: str, result: Result,
                       submitted_at: dt.datetime | None,
                       numbers: dict[str, str] | None = None,
                       explain: Explain | None = None) -> Path | None:
    """Write the page where ``nbgrader release_feedback`` takes it from, with the timestamp and
    secret of the submission ``nbgrader collect`` put in ``<course>/submitted/``, when that is the
    submission graded (handed in at ``submitted_at``); ``None`` when there is none."""
    collected = course / "submitted" / result.student_id / assignment
    secret = collected / SECRET_NAME
    if submitted_at is None or not secret.is_file() or secret.is_symlink() \
            or secret.stat().st_size > MAX_SECRET_BYTES:
        return None
    try:
        if _collected_time(collected) != submitted_at:
            return None  # collected again since: its feedback comes with its own grading
    except ValueError:
        return None
    folder = course / "feedback" / result.student_id / assignment
    write_atomic(folder / TIMESTAMP_NAME, submitted_at.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    write_atomic(folder / SECRET_NAME, secret.read_bytes())
    return write_atomic(folder / f"{notebook}.html", render(result, assignment, numbers, explain))
