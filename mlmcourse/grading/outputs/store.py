"""Per-student result files (``OUT/results/<student>.json``): written atomically, reused on re-runs.

A result is reused when the submission's hash, the source notebook's hash, the grading settings
(timeout, limits, isolation) and the grader's result format all match, so a re-run is
idempotent and a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlmcourse.grading.model import Result
from mlmcourse.grading.outputs.atomic import write_atomic

RESULT_FORMAT = 5


class ResultStore:
    """The folder of per-student results of one assignment."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "results"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, student_id: str) -> Path:
        return self.folder / f"{student_id}.json"

    def reusable(self, student_id: str, submission_sha: str, source_sha: str,
                 settings: dict) -> Result | None:
        """The stored result if it was computed from the same submission, source and settings."""
        try:
            data = json.loads(self.path(student_id).read_text(encoding="utf-8"))
            if (data.pop("format", None) == RESULT_FORMAT
                    and data.get("submission_sha") == submission_sha
                    and data.get("source_sha") == source_sha
                    and data.get("settings") == settings):
                return Result.from_json(data)
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            pass
        return None

    def stored_submission(self, student_id: str) -> str | None:
        """The hash of the submission the stored result was computed from (``None`` without a
        readable one): a different one now means the student handed in again."""
        try:
            sha = json.loads(self.path(student_id).read_text(encoding="utf-8"))["submission_sha"]
        except (OSError, ValueError, TypeError, KeyError, RecursionError):
            return None
        return sha if isinstance(sha, str) else None

    def save(self, result: Result) -> None:
        """Write atomically (temporary file, then rename)."""
        data = {**result.to_json(), "format": RESULT_FORMAT}
        write_atomic(self.path(result.student_id), json.dumps(data, ensure_ascii=False))
