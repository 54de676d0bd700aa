"""Writing a file so that readers see the old version or the new one, never half of one.

Files are not synced to disk one by one: every file the grader writes is derived (from the
submissions, the source and the gradebook) and written again by the next run, and a result file
left unreadable by a machine crash is graded again
(:class:`~mlmcourse.grading.outputs.store.ResultStore` reuses only readable, matching results). The
one store holding work that cannot be derived, the gradebook with the scores given by hand, is
SQLite's, which syncs each transaction.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then renamed over
    the target (text is written as UTF-8)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(raw)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
