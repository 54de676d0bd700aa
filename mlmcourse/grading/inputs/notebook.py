"""Reading nbgrader cell metadata and pairing a submission's cells with the source notebook's.

The result is a :class:`Plan`: the list of steps to run for one submission, in the submission's
order, where every locked cell (setup or test) comes from the *source* notebook and only solution
cells and the student's own extra cells come from the submission.
"""

from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

WRITTEN_ANSWER_STUB = "YOUR ANSWER HERE"
MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
MAX_DEPTH = 48
MAX_VALUES = 2_000_000
_COMPARED_KEYS = ("grade", "solution", "locked", "points")


class SubmissionProblem(Exception):
    """The submission cannot be graded as it is (the message is the ``failed`` reason)."""


@dataclass(frozen=True)
class Cell:
    """One notebook cell with its nbgrader role."""

    index: int
    cell_type: str
    source: str
    grade_id: str | None
    grade: bool
    solution: bool
    locked: bool
    points: float
    cell_id: str | None = None
    forbidden: tuple[str, ...] = ()
    """Dotted names of functions the question asks students not to call (the source cell's
    ``metadata.mlmcourse.forbidden``)."""

    @property
    def graded_id(self) -> str:
        """The ``grade_id`` of a cell nbgrader grades or locks (tests, solutions, written
        answers and setup cells all have one)."""
        if self.grade_id is None:
            raise ValueError(f"cell {self.index + 1} has no nbgrader grade_id")
        return self.grade_id

    @property
    def is_test(self) -> bool:
        return self.cell_type == "code" and self.grade and not self.solution

    @property
    def is_written_answer(self) -> bool:
        return self.cell_type == "markdown" and self.grade and self.solution

    @property
    def is_setup(self) -> bool:
        return self.cell_type == "code" and self.grade_id is not None and not (
            self.grade or self.solution
        )


@dataclass(frozen=True)
class Step:
    """What to do at one position: ``run`` in the sandbox, ``test`` in the grader, ``written``."""

    kind: str
    cell: Cell
    index: int
    submitted_source: str = ""


@dataclass
class SourceNotebook:
    """The instructor's notebook of an assignment, parsed once."""

    path: Path
    cells: list[Cell]
    sha256: str
    solution_names: frozenset[str] = field(default_factory=frozenset)
    nbgrader_metas: dict[str, dict] = field(default_factory=dict)
    notebook_metadata: dict[str, Any] = field(default_factory=dict)

    def nbgrader_metadata(self, grade_id: str) -> dict:
        """A copy of the source cell's nbgrader metadata."""
        return dict(self.nbgrader_metas.get(grade_id, {}))

    @property
    def graded_cells(self) -> list[Cell]:
        return [c for c in self.cells if c.grade]

    @property
    def max_score(self) -> float:
        return sum(c.points for c in self.graded_cells)

    @property
    def setup_modules(self) -> list[str]:
        """Modules the setup cells import (workers import them before forking their zygote)."""
        return sorted(set().union(*(imported_modules(c.source) for c in self.cells if c.is_setup)))

    @property
    def warm_modules(self) -> list[str]:
        """What workers import before forking their zygote: the setup cells' modules and those
        holding the functions test cells forbid (so no sandbox spends time importing them)."""
        forbidden = {name.rpartition(".")[0] for c in self.cells for name in c.forbidden}
        return sorted(set(self.setup_modules) | (forbidden - {""}))

    def by_id(self) -> dict[str, Cell]:
        return {c.grade_id: c for c in self.cells if c.grade_id is not None}


def _source_text(raw: Any) -> str:
    """A cell's source as text: a list's strings joined (anything else in it dropped)."""
    if isinstance(raw, list):
        return "".join(part for part in raw if isinstance(part, str))
    return raw if isinstance(raw, str) else ""


def parse_cells(nb: dict) -> list[Cell]:
    """Turn notebook JSON into :class:`Cell` objects (raises ``SubmissionProblem`` if malformed)."""
    cells = nb.get("cells") if isinstance(nb, dict) else None
    if not isinstance(cells, list):
        raise SubmissionProblem("the notebook has no list of cells (not an .ipynb file?)")
    parsed = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise SubmissionProblem(f"cell {index + 1} is not a JSON object")
        meta = cell.get("metadata", {}).get("nbgrader", {}) if isinstance(
            cell.get("metadata"), dict
        ) else {}
        meta = meta if isinstance(meta, dict) else {}
        grade_id = meta.get("grade_id")
        try:
            points = float(meta.get("points") or 0)
        except (TypeError, ValueError):
            points = float("nan")
        parsed.append(
            Cell(
                index=index,
                cell_type=str(cell.get("cell_type", "")),
                source=_source_text(cell.get("source", "")),
                grade_id=str(grade_id) if grade_id is not None else None,
                grade=bool(meta.get("grade", False)),
                solution=bool(meta.get("solution", False)),
                locked=bool(meta.get("locked", False)),
                points=points if meta.get("grade") else 0.0,
                cell_id=str(cell["id"])[:64] if isinstance(cell.get("id"), str) else None,
                forbidden=_forbidden_names(cell),
            )
        )
    return parsed


def _forbidden_names(cell: dict) -> tuple[str, ...]:
    meta = cell.get("metadata")
    ours = meta.get("mlmcourse") if isinstance(meta, dict) else None
    names = ours.get("forbidden") if isinstance(ours, dict) else None
    return tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else ()


_NEW_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp,
               ast.SetComp, ast.DictComp, ast.GeneratorExp)


def defined_names(source: str) -> set[str]:
    """Top-level names a solution cell binds: assignments, ``def``, ``class`` (not imports:
    modules are not data a test can receive)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif not isinstance(node, (*_NEW_SCOPES, ast.Import, ast.ImportFrom)):
            pending.extend(ast.iter_child_nodes(node))
    return names


def imported_modules(source: str) -> set[str]:
    """Modules a cell imports (absolute imports only)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def referenced_names(source: str) -> set[str]:
    """Every identifier a cell mentions (a superset of what it reads)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def load_source(path: Path) -> SourceNotebook:
    """Parse the instructor's notebook of an assignment."""
    raw = path.read_bytes()
    nb = json.loads(raw)
    cells = parse_cells(nb)
    solution_names: set[str] = set()
    for cell in cells:
        if cell.cell_type == "code" and cell.solution:
            solution_names |= defined_names(cell.source)
    metas = {str(c["metadata"]["nbgrader"]["grade_id"]): dict(c["metadata"]["nbgrader"])
             for c in nb["cells"] if "grade_id" in c.get("metadata", {}).get("nbgrader", {})}
    kept = {k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")}
    return SourceNotebook(path, cells, hashlib.sha256(raw).hexdigest(), frozenset(solution_names),
                          metas, kept)


def read_submission(raw: bytes) -> dict:
    """Parse a submitted notebook as hostile input (``SubmissionProblem`` if it is not usable).

    Bounded in size, nesting and number of values; every string comes out valid Unicode (lone
    surrogates, which JSON allows and UTF-8 cannot store, become replacement characters), so no
    later step (JSON, SQLite, HTML, charts) can fail on what the student wrote.
    """
    if len(raw) > MAX_NOTEBOOK_BYTES:
        raise SubmissionProblem(f"the notebook is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
    try:
        nb = json.loads(raw)
    except RecursionError:
        raise SubmissionProblem(f"the notebook is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise SubmissionProblem(f"the notebook is not valid JSON ({str(exc)[:200]})") from None
    return _clean(nb)


def _clean_text(text: str) -> str:
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _clean(root: Any) -> Any:
    """A copy of parsed JSON with valid strings, built without recursion (depth is checked)."""
    if not isinstance(root, dict):
        raise SubmissionProblem("the notebook is not a JSON object (not an .ipynb file?)")
    top: dict = {}
    pending: list[tuple[Any, Any, int]] = [(root, top, 0)]
    count = 0
    while pending:
        original, copy, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise SubmissionProblem(f"the notebook is nested deeper than {MAX_DEPTH} levels")
        items = original.items() if isinstance(original, dict) else enumerate(original)
        for key, value in items:
            count += 1
            if count > MAX_VALUES:
                raise SubmissionProblem(f"the notebook holds more than {MAX_VALUES} values")
            if isinstance(value, dict):
                child: Any = {}
            elif isinstance(value, list):
                child = [None] * len(value)
            else:
                child = _clean_text(value) if isinstance(value, str) else value
            if isinstance(copy, dict):
                copy[_clean_text(key)] = child
            else:
                copy[key] = child
            if isinstance(value, (dict, list)):
                pending.append((value, child, depth + 1))
    return top


def plan_submission(source: SourceNotebook, nb: dict) -> list[Step]:
    """Pair a submission's cells with the source's (``SubmissionProblem`` if they don't match)."""
    submitted = parse_cells(nb)
    expected = source.by_id()
    seen: dict[str, Cell] = {}
    for cell in submitted:
        if cell.grade_id is None:
            continue
        if cell.grade_id in seen:
            raise SubmissionProblem(f"cell {cell.grade_id!r} appears twice (duplicated cell)")
        if cell.grade_id not in expected:
            raise SubmissionProblem(
                f"cell {cell.index + 1} has id {cell.grade_id!r}, which the assignment does not "
                "have (nbgrader ids were changed)"
            )
        seen[cell.grade_id] = cell
    missing = [gid for gid in expected if gid not in seen]
    if missing:
        raise SubmissionProblem(
            "cells missing from the submission (deleted, or their nbgrader metadata stripped): "
            + ", ".join(missing)
        )
    order = [c.grade_id for c in submitted if c.grade_id is not None]
    if order != [c.grade_id for c in source.cells if c.grade_id is not None]:
        raise SubmissionProblem("the assignment's cells were moved out of their order")
    steps: list[Step] = []
    for cell in submitted:
        if cell.grade_id is None:
            if cell.cell_type == "code":  # the student's own cell: it declares nothing
                steps.append(Step("run", replace(cell, forbidden=()), cell.index, cell.source))
            continue
        original = expected[cell.grade_id]
        for key in ("cell_type", *_COMPARED_KEYS):
            if getattr(cell, key) != getattr(original, key):
                raise SubmissionProblem(
                    f"the nbgrader metadata of cell {cell.grade_id!r} was changed ({key})"
                )
        if original.is_test:
            steps.append(Step("test", original, cell.index))
        elif original.is_written_answer:
            steps.append(Step("written", original, cell.index, cell.source))
        elif original.cell_type == "code":
            source_text = cell.source if original.solution else original.source
            steps.append(Step("run", original, cell.index, source_text))
    return steps


def written_answer_given(text: str) -> bool:
    """Did the student write something in a written-answer cell (not blank, not the stub)?"""
    return text.strip() not in ("", WRITTEN_ANSWER_STUB)
