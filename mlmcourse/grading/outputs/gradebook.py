"""Writing grades into nbgrader's gradebook (``c.CourseDirectory.db_url``: SQLite or PostgreSQL)
and autograded folder.

Only the main grading process writes here, one database transaction per student, so that
nbgrader's formgrader sees students, submissions and per-cell ``auto_score`` exactly as after
``nbgrader autograde`` and can open the autograded notebook to grade written answers by hand.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbgrader.api import (
    Assignment,
    BaseCell,
    Comment,
    Grade,
    Gradebook,
    MissingEntry,
    Notebook,
    Student,
    SubmittedAssignment,
    SubmittedNotebook,
    new_uuid,
)
from sqlalchemy import bindparam, insert, select, update

from mlmcourse.grading.course import put_scripts_on_path
from mlmcourse.grading.model import Result, Status
from mlmcourse.grading.outputs.atomic import write_atomic
from mlmcourse.grading.outputs.autograded import autograded_path
from mlmcourse.grading.outputs.database import course_id, db_url
from mlmcourse.grading.outputs.sanitise import neutralise_notebook


def open_gradebook(course: Path) -> Gradebook:
    """Open (creating if needed) the course's gradebook.

    nbgrader runs the ``alembic`` script of its environment to check the schema, so that
    environment's scripts folder must be on ``PATH`` even when Python was started by full path.
    """
    put_scripts_on_path()
    return Gradebook(db_url(course), course_id=course_id(course))


def ensure_assignment(gb: Gradebook, course: Path, assignment: str, notebook_path: Path) -> None:
    """Make sure the assignment and its cells are in the gradebook (as ``generate_assignment``
    does)."""
    try:
        gb.find_notebook(notebook_path.stem, assignment)
        return
    except MissingEntry:
        pass
    import nbformat
    from nbgrader.preprocessors import ComputeChecksums, SaveCells

    gb.update_or_create_assignment(assignment, course_id=gb.course_id)
    nb = nbformat.read(notebook_path, as_version=nbformat.NO_CONVERT)
    resources = {"nbgrader": {"notebook": notebook_path.stem, "assignment": assignment,
                              "db_url": db_url(course)}}
    nb, resources = ComputeChecksums().preprocess(nb, resources)
    SaveCells().preprocess(nb, resources)


def student_ids(gb: Gradebook) -> list[str]:
    """Every student the gradebook knows."""
    return [s.id for s in gb.students]


@dataclass(frozen=True)
class Layout:
    """The gradebook's ids of one assignment (read once per run): for each notebook, its id and
    the cells a submission gets a grade for (grade and task cells) and a comment box for
    (solution and task cells), as nbgrader creates them."""

    assignment_id: str
    notebooks: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]]


def layout(gb: Gradebook, assignment: str) -> Layout:
    """The :class:`Layout` of ``assignment`` (which must be in the gradebook)."""
    graded = gb.find_assignment(assignment)
    return Layout(graded.id, {
        nb.name: (nb.id, tuple(c.id for c in [*nb.grade_cells, *nb.task_cells]),
                  tuple(c.id for c in [*nb.solution_cells, *nb.task_cells]))
        for nb in graded.notebooks})


def record(gb: Gradebook, ids: Layout, notebook: str, result: Result,
           submitted_at: dt.datetime | None = None, resubmitted: bool = False) -> None:
    """Write one student's result in the current transaction (see :func:`commit`): student,
    submission (with the time it was handed in, naive UTC, ``None`` when unknown), per-cell
    auto_score. The rows are nbgrader's own (as ``nbgrader autograde`` writes them), written as a
    few SQL statements. A score given by hand stays; when the student has ``resubmitted`` since,
    its cell needs grading again (``needs_manual_grade``, as ``nbgrader autograde`` flags it),
    until the instructor saves a score for it in formgrader."""
    db = gb.db
    student_id = result.student_id
    if db.execute(select(Student.id).where(Student.id == student_id)).first() is None:
        db.execute(insert(Student.__table__).values(id=student_id))
    submission_id = db.execute(select(SubmittedAssignment.id).where(
        SubmittedAssignment.assignment_id == ids.assignment_id,
        SubmittedAssignment.student_id == student_id)).scalar()
    # when the student handed it in (never when it was graded: that made everyone late)
    if submission_id is None:
        submission_id = new_uuid()
        db.execute(insert(SubmittedAssignment.__table__).values(
            id=submission_id, assignment_id=ids.assignment_id, student_id=student_id,
            timestamp=submitted_at))
        for notebook_id, graded_cells, commented_cells in ids.notebooks.values():
            submitted_id = new_uuid()
            db.execute(insert(SubmittedNotebook.__table__).values(
                id=submitted_id, assignment_id=submission_id, notebook_id=notebook_id))
            for table, cells in ((Grade.__table__, graded_cells),
                                 (Comment.__table__, commented_cells)):
                if cells:  # (no parameters at all would insert one row of defaults)
                    db.execute(insert(table), [{"id": new_uuid(), "notebook_id": submitted_id,
                                                "cell_id": cell} for cell in cells])
    else:
        db.execute(update(SubmittedAssignment.__table__)
                   .where(SubmittedAssignment.id == submission_id)
                   .values(timestamp=submitted_at))
    failed = result.status == Status.FAILED
    updates = []
    for grade_id, name, manual, flagged in db.execute(
            select(Grade.id, BaseCell.name, Grade.manual_score, Grade.needs_manual_grade)
            .join(SubmittedNotebook, Grade.notebook_id == SubmittedNotebook.id)
            .join(BaseCell, Grade.cell_id == BaseCell.id)
            .where(SubmittedNotebook.assignment_id == submission_id,
                   SubmittedNotebook.notebook_id == ids.notebooks[notebook][0])):
        cell = result.cells.get(name)
        auto = cell.points if cell else (0.0 if failed else None)
        # a score the instructor already gave in formgrader stays final on a re-run, unless
        # the student handed in again: then it waits for the instructor, who clears the flag
        review = manual is not None and (resubmitted or bool(flagged))
        updates.append({"grade": grade_id, "auto": auto,
                        "manual": failed or (auto is None and manual is None) or review})
    if updates:
        grades = Grade.__table__
        db.execute(update(grades).where(grades.c.id == bindparam("grade")).values(
            auto_score=bindparam("auto"), needs_manual_grade=bindparam("manual")), updates)


def commit(gb: Gradebook) -> None:
    """Make what :func:`record` wrote since the last commit durable (SQLite syncs the disk)."""
    gb.db.commit()


def rollback(gb: Gradebook) -> None:
    """Drop what :func:`record` wrote since the last commit."""
    gb.db.rollback()


@dataclass
class HandGiven:
    """What the gradebook holds for one student's submission besides the automatic scores:
    scores and comments given by hand in formgrader (by grade id / cell name) and how late it
    was handed in (its time after the due date plus the student's extension; 0 without them)."""

    scores: dict[str, float] = field(default_factory=dict)
    comments: dict[str, str] = field(default_factory=dict)
    seconds_late: float = 0.0
    review: set[str] = field(default_factory=set)  # scored by hand, then handed in again


def _submitted(gb: Gradebook, assignment: str, notebook: str, *columns: Any) -> Any:
    """A query of ``columns`` over the submitted notebooks ``notebook`` of ``assignment``."""
    return (gb.db.query(SubmittedAssignment.student_id, *columns)
            .select_from(SubmittedNotebook)
            .join(Notebook, SubmittedNotebook.notebook_id == Notebook.id)
            .join(SubmittedAssignment, SubmittedNotebook.assignment_id == SubmittedAssignment.id)
            .join(Assignment, SubmittedAssignment.assignment_id == Assignment.id)
            .filter(Assignment.name == assignment, Notebook.name == notebook))


def hand_given(gb: Gradebook, assignment: str, notebook: str) -> dict[str, HandGiven]:
    """:class:`HandGiven` of every student with a submission of ``notebook`` (three queries for
    the whole class)."""
    given: dict[str, HandGiven] = {}
    for student, timestamp, extension, due in _submitted(
            gb, assignment, notebook, SubmittedAssignment.timestamp,
            SubmittedAssignment.extension, Assignment.duedate):
        late = 0.0
        if due is not None and timestamp is not None:
            late = max(0.0, (timestamp - (due + extension if extension else due))
                       .total_seconds())
        given[student] = HandGiven(seconds_late=late)
    for student, name, score, flagged in (
            _submitted(gb, assignment, notebook, BaseCell.name, Grade.manual_score,
                       Grade.needs_manual_grade)
            .join(Grade, Grade.notebook_id == SubmittedNotebook.id)
            .join(BaseCell, Grade.cell_id == BaseCell.id)
            .filter(Grade.manual_score.isnot(None))):
        if flagged:
            given[student].review.add(name)
        else:
            given[student].scores[name] = float(score)
    for student, name, text in (_submitted(gb, assignment, notebook, BaseCell.name,
                                           Comment.manual_comment)
                                .join(Comment, Comment.notebook_id == SubmittedNotebook.id)
                                .join(BaseCell, Comment.cell_id == BaseCell.id)):
        if text and text.strip():
            given[student].comments[name] = text.strip()
    return given


def late_penalty_function(course: Path) -> Callable[[str, float, float], float]:
    """``penalty(student_id, score, seconds_late)`` of the course's late-submission plugin
    (``c.AssignLatePenalties.plugin_class``, nbgrader's ``LateSubmissionPlugin`` by default, with
    ``c.LateSubmissionPlugin.penalty_method``), kept between 0 and the score as nbgrader does."""
    from nbgrader.preprocessors import AssignLatePenalties
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    config = Config()
    if (course / "nbgrader_config.py").exists():
        config = PyFileConfigLoader("nbgrader_config.py", str(course)).load_config()
    assigner = AssignLatePenalties(config=config)
    assigner.init_plugin()
    plugin = assigner.plugin_inst

    def penalty(student_id: str, score: float, late: float) -> float:
        if late <= 0:
            return 0.0
        value = plugin.late_submission_penalty(student_id, score, late)
        return 0.0 if value is None else min(max(float(value), 0.0), score)

    return penalty


def set_late_penalties(gb: Gradebook, assignment: str, notebook: str,
                       penalties: dict[str, float]) -> None:
    """Store each student's penalty where formgrader and ``nbgrader export`` read it (one
    transaction)."""
    for student, submitted in _submitted(gb, assignment, notebook, SubmittedNotebook):
        if student in penalties:
            submitted.late_submission_penalty = penalties[student] or None
    gb.db.commit()


def write_autograded(course: Path, assignment: str, notebook: str, student_id: str,
                     autograded: dict[str, Any] | None,
                     submitted_at: dt.datetime | None = None) -> None:
    """Save the autograded notebook where formgrader looks for it (atomically), with every
    student-controlled renderable part neutralised (formgrader renders it as the instructor),
    and the submission's ``timestamp.txt`` as ``nbgrader autograde`` copies it."""
    if autograded is None:  # the submission could not be read: nothing to show
        return
    path = autograded_path(course, assignment, notebook, student_id)
    write_atomic(path,
                 json.dumps(neutralise_notebook(autograded), indent=1, ensure_ascii=False))
    stamp = path.parent / "timestamp.txt"
    if submitted_at is not None:
        write_atomic(stamp, submitted_at.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    else:
        stamp.unlink(missing_ok=True)
