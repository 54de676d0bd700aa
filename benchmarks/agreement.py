"""What an instructor does from an installed package to exported grades, timed, and whether
``mlmcourse grade`` agrees with nbgrader's own ``autograde`` on a class with late and hand-graded
students.

    .venv/bin/python benchmarks/agreement.py [--assignment ex4_cross_entropy] [--students N]
                                             [--json FILE]

1. ``mlmcourse init`` a course in a temporary folder and ``mlmcourse release`` every assignment
   (timed: the first figure).
2. A class: the source solution, the untouched release and one submission per misconception of
   ``tests/cases``, in nbgrader's ``submitted/<student>/<assignment>/`` with a ``timestamp.txt``;
   every third student hands in after the due date. The course gives a late submission no points
   (``penalty_method = "zero"``).
3. Two copies of the course: one graded with ``mlmcourse grade``, one with ``nbgrader autograde``;
   in both, the written answer of every other student is then scored by hand (as in formgrader)
   and each is graded again.
4. Compared, student by student and cell by cell, from the two gradebooks (what formgrader and
   ``nbgrader export`` read): each cell's score, the submission time, seconds late, the late
   penalty and the final score; ``grades.csv``'s final score against the nbgrader copy's.

Prints the figures; exits 1 on any disagreement. A benchmark, not a test: times are noisy.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
BIN = Path(sys.executable).parent
DUE = dt.datetime(2026, 12, 1, 17)


def _run(argv: list[str], cwd: Path) -> float:
    started = time.monotonic()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return time.monotonic() - started


def _class(course: Path, assignment: str, size: int) -> dict[str, dt.datetime]:
    """Write the first ``size`` submissions (by name) into ``course/submitted``; returns each
    student's time."""
    import nbformat
    from cases import variants as v

    staging = course.parent / "staging"
    v.write_submissions(assignment, staging, course)
    times = {}
    folders = sorted(p for p in staging.iterdir() if p.is_dir())
    keep = [p for p in folders if p.name in ("solution", "release")]
    keep += [p for p in folders if p not in keep][: max(size - len(keep), 0)]
    for i, folder in enumerate(sorted(keep)):
        student = folder.name.replace("_", "-")
        when = DUE + dt.timedelta(hours=3) if i % 3 == 2 else DUE - dt.timedelta(hours=i + 1)
        target = course / "submitted" / student / assignment
        target.mkdir(parents=True)
        nb = nbformat.read(folder / f"{assignment}.ipynb", as_version=4)
        written = [c for c in nb.cells if c.cell_type == "markdown"
                   and c.metadata.get("nbgrader", {}).get("solution")]
        for cell in written:
            cell.source = f"An answer written by {student}."
        nbformat.write(nb, target / f"{assignment}.ipynb")
        (target / "timestamp.txt").write_text(when.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
        times[student] = when
    shutil.rmtree(staging)
    return times


def _set_due_date(course: Path, assignment: str) -> None:
    from mlmcourse.grading.outputs.gradebook import open_gradebook

    with open_gradebook(course) as gb:
        gb.update_or_create_assignment(assignment, duedate=DUE)


def _hand_grade(course: Path, assignment: str, students: list[str]) -> None:
    """Score every written answer of ``students`` by hand, with a comment (as formgrader)."""
    from mlmcourse.grading.outputs.gradebook import open_gradebook

    with open_gradebook(course) as gb:
        for student in students:
            nb = gb.find_submission_notebook(assignment, assignment, student)
            for grade in nb.grades:
                if grade.cell_type == "markdown":
                    grade.manual_score = grade.max_score / 2
                    grade.needs_manual_grade = False
            for comment in nb.comments:
                comment.manual_comment = f"Comment on {comment.name} for {student}."
        gb.db.commit()


def _gradebook(course: Path, assignment: str) -> dict[str, dict]:
    from mlmcourse.grading.outputs.gradebook import open_gradebook

    found = {}
    with open_gradebook(course) as gb:
        for sub in gb.assignment_submissions(assignment):
            nb = gb.find_submission_notebook(assignment, assignment, sub.student.id)
            found[sub.student.id] = {
                "cells": {g.name: g.score for g in nb.grades},
                "timestamp": sub.timestamp, "seconds_late": sub.total_seconds_late,
                "penalty": sub.late_submission_penalty or 0.0,
                "final": max(0.0, sub.score - (sub.late_submission_penalty or 0.0))}
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assignment", default="ex4_cross_entropy")
    parser.add_argument("--students", type=int, default=100,
                        help="class size: the solution, the release and that many minus two "
                        "misconception submissions (default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    assignment = args.assignment
    figures: dict[str, object] = {"assignment": assignment}
    with tempfile.TemporaryDirectory(prefix="mlmcourse-agreement-") as tmp:
        tmp_path = Path(tmp)
        mine = tmp_path / "mlm" / "course"
        mine.parent.mkdir()
        figures["init_s"] = round(_run([str(BIN / "mlmcourse"), "init", "course"], mine.parent),
                                  2)
        figures["release_all_s"] = round(_run([str(BIN / "mlmcourse"), "release", "-q"], mine), 2)
        config = mine / "nbgrader_config.py"
        config.write_text(config.read_text().replace('penalty_method = "none"',
                                                     'penalty_method = "zero"'))
        times = _class(mine, assignment, args.students)
        _set_due_date(mine, assignment)
        theirs = tmp_path / "nbg" / "course"
        shutil.copytree(mine, theirs)
        students = sorted(times)
        by_hand = students[::2]
        figures["students"], figures["late"] = len(students), sum(t > DUE for t in times.values())
        figures["hand_graded"] = len(by_hand)

        out = tmp_path / "out"
        grade = [str(BIN / "mlmcourse"), "grade", assignment, "submitted", "--out", str(out)]
        figures["mlmcourse_grade_s"] = round(_run(grade, mine), 1)
        autograde = [str(BIN / "nbgrader"), "autograde", assignment, "--create", "--force"]
        figures["nbgrader_autograde_s"] = round(_run(autograde, theirs), 1)
        _hand_grade(mine, assignment, by_hand)
        _hand_grade(theirs, assignment, by_hand)
        figures["mlmcourse_regrade_s"] = round(_run(grade, mine), 1)
        _run(autograde, theirs)

        a, b = _gradebook(mine, assignment), _gradebook(theirs, assignment)
        rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
        cells = agree = 0
        differences = []
        for student in students:
            for name, score in b[student]["cells"].items():
                cells += 1
                if a[student]["cells"].get(name) == score:
                    agree += 1
                else:
                    differences.append(f"{student} {name}: mlmcourse "
                                       f"{a[student]['cells'].get(name)}, nbgrader {score}")
            for key in ("timestamp", "seconds_late", "penalty", "final"):
                if a[student][key] != b[student][key]:
                    differences.append(f"{student} {key}: mlmcourse {a[student][key]}, "
                                       f"nbgrader {b[student][key]}")
            if float(rows[student]["final_score"]) != b[student]["final"]:
                differences.append(f"{student} grades.csv final_score "
                                   f"{rows[student]['final_score']}, "
                                   f"nbgrader {b[student]['final']}")
        figures["cells_compared"], figures["cells_agreeing"] = cells, agree
        figures["differences"] = differences
    for key, value in figures.items():
        if key != "differences":
            print(f"{key:22} {value}")
    print(f"agreement: {figures['cells_agreeing']}/{figures['cells_compared']} cells; "
          f"{len(differences)} differences in all")
    for line in differences:
        print("  " + line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=1, default=str))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
