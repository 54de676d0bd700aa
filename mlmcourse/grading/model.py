"""The grader's records, one per lifecycle, with their JSON forms: what a worker is asked to
grade (:class:`Task`, one per submission), what it sends back over its pipe (:class:`Graded`:
the verdict and the autograded notebook), and the verdict that is stored, recorded in the
gradebook and published (:class:`Result`, one :class:`CellResult` per graded cell). What a
worker is sent once, the sandbox's policy, is :class:`~mlmcourse.grading.sandbox.policy.Policy`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

MAX_MESSAGE_CHARS = 600
"""The longest message a cell's result carries (an exception's text from the sandbox, a test's
failure): the one limit, applied where a message is made and where it is received."""


class Status(StrEnum):
    """Where a student's submission stands."""

    GRADED = "graded"
    NEEDS_MANUAL = "needs_manual"  # written answers wait for the instructor
    NOT_SUBMITTED = "not_submitted"
    FAILED = "failed"  # could not be graded; ``failure`` says what kind, ``reason`` the detail


class Failure(StrEnum):
    """What kind of problem made a submission ``failed`` (``Result.reason`` has the detail)."""

    SUBMISSION = "submission"  # the notebook cannot be graded as it is (cells, metadata, file)
    SETUP = "setup"  # a locked setup cell fails in this submission
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CPU_TIME = "cpu_time"
    OUTPUT = "output"  # too much output
    FILE_SIZE = "file_size"
    REPLY = "reply"  # a value the grader refuses to decode (size, depth, type)
    EXITED = "exited"  # the kernel exited or crashed
    SANDBOX = "sandbox"  # the sandbox could not be set up, or its job slot was lost
    GRADER = "grader"  # the grader's own problem, not the submission's: graded again next run


@dataclass
class CellResult:
    """The outcome of one graded cell: a test (``passed``) or a written answer (``points`` is
    ``None`` until graded by hand)."""

    kind: str
    max_points: float
    points: float | None = 0.0
    passed: bool | None = False
    message: str = ""
    misconception: str | None = None
    by_hand: bool = False  # ``points`` were given (or overridden) by the instructor in formgrader
    comment: str = ""  # the instructor's comment on this cell, from formgrader


@dataclass
class Task:
    """One submission to grade, as the main process hands it to a worker."""

    student_id: str
    assignment: str
    source: str
    notebook: str | None
    problem: str | None
    files: list[tuple[str, str]]
    submission_sha: str
    settings: dict[str, Any]
    workroot: str
    timeout: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(**{**data, "files": [tuple(f) for f in data["files"]]})


@dataclass
class Result:
    """What grading one submission found."""

    student_id: str
    assignment: str
    max_score: float
    status: Status = Status.FAILED
    reason: str = ""
    failure: Failure | None = None  # set when ``status`` is ``failed``
    score: float = 0.0
    cells: dict[str, CellResult] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)
    submission_sha: str = ""
    source_sha: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    # set on every run from the submission and the gradebook (see pipeline.publish):
    submitted_at: str = ""  # ISO time in UTC, from timestamp.txt or the zip entry; "" unknown
    seconds_late: float = 0.0  # after the due date (with the student's extension)
    late_penalty: float = 0.0  # nbgrader's late-submission plugin's penalty, in points
    comments: dict[str, str] = field(default_factory=dict)  # instructor's, on ungraded cells

    @property
    def grader_error(self) -> bool:
        """Failed for the grader's own problem, not the submission's: never stored, so the
        submission is graded again on the next run."""
        return self.failure == Failure.GRADER

    def final_score(self) -> float:
        """The score after the late penalty (never below 0), as ``nbgrader export`` computes it."""
        return max(0.0, self.score - self.late_penalty)

    def total(self) -> float:
        """The points earned so far (written answers not yet graded count 0)."""
        return sum(c.points or 0.0 for c in self.cells.values())

    def to_json(self) -> dict[str, Any]:
        """The JSON form; its nested values (answers) are the result's own, not copies:
        serialise it, do not change it."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = str(self.status)
        data["failure"] = None if self.failure is None else str(self.failure)
        data["cells"] = {grade_id: asdict(cell) for grade_id, cell in self.cells.items()}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        cells = {k: CellResult(**v) for k, v in data.get("cells", {}).items()}
        failure = None if data.get("failure") is None else Failure(data["failure"])
        return cls(**{**data, "status": Status(data["status"]), "cells": cells,
                      "failure": failure})

    @classmethod
    def failed(cls, student_id: str, assignment: str, max_score: float, reason: str,
               failure: Failure = Failure.GRADER) -> Result:
        """A submission that could not be graded: what kind of problem, and the detail. A
        grader problem is never stored, so the submission is graded again on the next run."""
        return cls(student_id, assignment, max_score, Status.FAILED, reason, failure)


@dataclass
class Graded:
    """What a worker sends back for one :class:`Task`: the verdict, and the autograded notebook
    (the submission with the grader's outputs, as nbgrader writes it), which the main process
    writes to the course folder and then drops: it is never stored or published."""

    result: Result
    autograded: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result.to_json(), "autograded": self.autograded}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Graded:
        return cls(Result.from_json(data["result"]), data.get("autograded"))
