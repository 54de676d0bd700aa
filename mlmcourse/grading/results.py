"""Per-student result files (``OUT/results/<student>.json``): written atomically, reused on re-runs.

A result is reused when the submission's hash, the source notebook's hash, the grading settings
(timeout, limits, isolation) and the grader's result format all match, so a re-run is
idempotent and a killed run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RESULT_FORMAT = 1


class ResultStore:
    """The folder of per-student results of one assignment."""

    def __init__(self, out: Path) -> None:
        self.folder = out / "results"
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, student_id: str) -> Path:
        return self.folder / f"{student_id}.json"

    def reusable(self, student_id: str, submission_sha: str, source_sha: str,
                 settings: dict) -> dict | None:
        """The stored result if it was computed from the same submission, source and settings."""
        try:
            result = json.loads(self.path(student_id).read_text())
        except (OSError, ValueError):
            return None
        if (result.get("format") == RESULT_FORMAT and result.get("submission_sha") == submission_sha
                and result.get("source_sha") == source_sha and result.get("settings") == settings):
            return result
        return None

    def save(self, result: dict) -> None:
        """Write atomically (temporary file, fsync, ``os.replace``)."""
        result = {**result, "format": RESULT_FORMAT}
        target = self.path(result["student_id"])
        tmp = target.with_name(f".{target.name}.tmp")
        with open(tmp, "w") as handle:
            json.dump(result, handle, ensure_ascii=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
