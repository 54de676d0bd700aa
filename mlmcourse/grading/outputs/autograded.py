"""The autograded notebook that formgrader shows (written neutralised by
:mod:`~mlmcourse.grading.outputs.gradebook`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlmcourse.grading.inputs.notebook import SourceNotebook, parse_cells


def autograded_path(course: Path, assignment: str, notebook: str, student_id: str) -> Path:
    """Where formgrader looks for a student's autograded notebook (as ``nbgrader autograde``
    writes it)."""
    return course / "autograded" / student_id / assignment / f"{notebook}.ipynb"


def autograded_notebook(nb: dict, source: SourceNotebook, outputs: dict[int, list[dict]]) -> dict:
    """The notebook formgrader shows, built afresh: the submission's cell sources and kinds,
    the source's nbgrader metadata and locked cells, the grading outputs, and nothing else of
    what the student's file carried (metadata, attachments, outputs)."""
    originals = source.by_id()
    cells = []
    executed = 0
    for index, cell in enumerate(parse_cells(nb)):
        original = originals.get(cell.grade_id) if cell.grade_id is not None else None
        kind = cell.cell_type if cell.cell_type in ("markdown", "code") else "raw"
        new: dict[str, Any] = {"cell_type": kind, "id": f"cell-{index}", "metadata": {},
                               "source": cell.source}
        if original is not None:
            new["metadata"]["nbgrader"] = source.nbgrader_metadata(original.grade_id)
            new["id"] = original.cell_id or new["id"]
            if original.locked:
                new["source"] = original.source
        if kind == "code":  # numbered as a kernel running the notebook top to bottom would
            executed += 1
            new["outputs"] = outputs.get(index, [])
            new["execution_count"] = executed
        cells.append(new)
    return {"cells": cells, "metadata": source.notebook_metadata, "nbformat": 4,
            "nbformat_minor": 5}
