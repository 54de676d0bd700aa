"""Programmatic submissions of the exercises: the solution, the untouched release, correct
alternatives (:mod:`cases.alternatives`), one submission per listed misconception and degenerate
answers (:mod:`cases.variant_cases`).

They are what the tests and the grading benchmark feed to the grader: the solution and every
alternative must get full marks on every auto-graded cell, the untouched release none, and each
misconception or degenerate submission must fail exactly its expected test cells, with its
misconception's code (or with a plain failure naming no misconception).

    write_submissions("ex4_cross_entropy", Path("subs"))   # subs/<student>/<assignment>.ipynb
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbformat import NotebookNode

AUTOGRADER = Path(__file__).resolve().parents[2] / "autograder"
ASSIGNMENTS: tuple[str, ...] = (
    "ex2_masking",
    "ex3_distribution",
    "ex4_cross_entropy",
    "ex5_masked_loss",
    "ex6_training",
    "ex7_reading_and_scale",
)
_SOLUTION_REGION = re.compile(r"^[ \t]*### (BEGIN|END) SOLUTION[ \t]*\n?", re.MULTILINE)


@dataclass(frozen=True)
class Variant:
    """A submission that holds one misconception.

    ``edits`` maps a solution cell's ``grade_id`` to ``(old, new)`` text replacements applied,
    in order, to the solution's answer (each ``old`` must occur); ``cells`` maps a ``grade_id``
    to the whole answer instead (for multiple-choice and numeric answers, and for alternative
    implementations). Every other answer is the solution's. ``fails`` maps each test cell that
    must fail to the misconception code its error must carry, or to ``None`` for a plain failure
    that names no misconception (degenerate answers); every other test cell must pass. A correct
    alternative has no ``fails``.
    """

    name: str
    fails: dict[str, str | None]
    edits: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    cells: dict[str, str] = field(default_factory=dict)

    def answers(self, solutions: dict[str, str]) -> dict[str, str]:
        """The variant's answer for every cell it changes, given the solution's answers."""
        answers = dict(self.cells)
        for grade_id, replacements in self.edits.items():
            text = solutions[grade_id]
            for old, new in replacements:
                if old not in text:
                    raise ValueError(f"variant {self.name}: {old!r} is not in {grade_id}")
                text = text.replace(old, new)
            answers[grade_id] = text
        return answers


def nbgrader_meta(cell: NotebookNode) -> dict:
    """The cell's ``nbgrader`` metadata (empty for cells nbgrader does not manage)."""
    return dict(cell.get("metadata", {}).get("nbgrader", {}))


def source_path(assignment: str, root: Path = AUTOGRADER) -> Path:
    """The instructor's notebook of ``assignment``."""
    return root / "source" / assignment / f"{assignment}.ipynb"


def release_path(assignment: str, root: Path = AUTOGRADER) -> Path:
    """The student notebook ``mlmcourse release`` writes for ``assignment``."""
    return root / "release" / assignment / f"{assignment}.ipynb"


def read(path: Path) -> NotebookNode:
    """Read a notebook (nbformat 4)."""
    return nbformat.read(path, as_version=4)


def solution_text(source: str) -> str:
    """A solution cell's source as a student who solved it would leave it (no region markers)."""
    return _SOLUTION_REGION.sub("", source)


def solution_answers(assignment: str, root: Path = AUTOGRADER) -> dict[str, str]:
    """Each solution cell's answer (``grade_id`` -> source) as the source notebook has it."""
    return {
        nbgrader_meta(c)["grade_id"]: solution_text(c.source)
        for c in read(source_path(assignment, root)).cells
        if nbgrader_meta(c).get("solution")
    }


def solution_submission(assignment: str, root: Path = AUTOGRADER) -> NotebookNode:
    """The released notebook with every solution cell answered as in the source notebook."""
    return with_answers(read(release_path(assignment, root)), solution_answers(assignment, root))


def with_answers(nb: NotebookNode, answers: dict[str, str]) -> NotebookNode:
    """A copy of ``nb`` whose solution cells named in ``answers`` hold the given sources."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        meta = nbgrader_meta(cell)
        if meta.get("solution") and meta.get("grade_id") in answers:
            cell.source = answers[meta["grade_id"]]
    return nb


def with_source_tests(nb: NotebookNode, assignment: str, root: Path = AUTOGRADER) -> NotebookNode:
    """A copy of ``nb`` whose locked cells are the source's (hidden tests included), as
    ``nbgrader autograde`` would run it."""
    locked = {
        nbgrader_meta(c)["grade_id"]: c.source
        for c in read(source_path(assignment, root)).cells
        if nbgrader_meta(c).get("locked") and not nbgrader_meta(c).get("solution")
    }
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        gid = nbgrader_meta(cell).get("grade_id")
        if gid in locked:
            cell.source = locked[gid]
    return nb


def variants(assignment: str) -> list[Variant]:
    """The misconception submissions of ``assignment``."""
    from cases.variant_cases import VARIANTS

    return VARIANTS[assignment]


def degenerate(assignment: str) -> list[Variant]:
    """The degenerate answers (NaN, inf, empty, wrong shape, constant) of ``assignment``."""
    from cases.variant_cases import DEGENERATE

    return DEGENERATE[assignment]


def alternatives(assignment: str) -> list[Variant]:
    """Correct answers written differently from the solution: each must get full marks."""
    from cases.alternatives import ALTERNATIVES

    return ALTERNATIVES[assignment]


# Assignments whose every submission trains a model: their cases are packed into fewer
# submissions (see :func:`bundle`) to keep the test suite's time down.
BUNDLED = ("ex6_training",)


def all_cases(assignment: str) -> dict[str, Variant]:
    """Every programmatic submission but the solution and the release, by student name:
    ``alt-<name>`` (correct), ``mc-<name>`` (misconception) and ``deg-<name>`` (degenerate);
    for the assignments of :data:`BUNDLED`, ``<kind>-bundle<k>`` packs several of a kind."""
    kinds = (("alt", alternatives), ("mc", variants), ("deg", degenerate))
    if assignment not in BUNDLED:
        return {f"{kind}-{c.name}": c for kind, get in kinds for c in get(assignment)}
    return {
        f"{kind}-bundle{k:02d}": c
        for kind, get in kinds
        for k, c in enumerate(bundle(get(assignment)), start=1)
    }


def bundle(cases: list[Variant]) -> list[Variant]:
    """Pack cases into as few submissions as possible: cases that change different answer cells
    and fail different tests go into one submission, which must then fail exactly the union of
    their tests. Sound when each test cell reads the answers of one question only, as in ex6."""
    packed: list[Variant] = []
    for case in cases:
        cells = set(case.edits) | set(case.cells)
        for i, other in enumerate(packed):
            if cells.isdisjoint(set(other.edits) | set(other.cells)) and set(case.fails).isdisjoint(
                other.fails
            ):
                packed[i] = Variant(
                    f"{other.name}+{case.name}",
                    fails={**other.fails, **case.fails},
                    edits={**other.edits, **case.edits},
                    cells={**other.cells, **case.cells},
                )
                break
        else:
            packed.append(case)
    return packed


def misconception_submission(
    assignment: str, variant: Variant, root: Path = AUTOGRADER
) -> NotebookNode:
    """The solution submission with the variant's answers written in."""
    answers = variant.answers(solution_answers(assignment, root))
    return with_answers(solution_submission(assignment, root), answers)


def write_submissions(assignment: str, out: Path, root: Path = AUTOGRADER) -> dict[str, Variant]:
    """Write ``out/<student>/<assignment>.ipynb`` for the students ``solution``, ``release`` and
    every case of :func:`all_cases`; return the case of each student but the first two."""
    notebooks = {
        "solution": solution_submission(assignment, root),
        "release": read(release_path(assignment, root)),
    }
    by_student = all_cases(assignment)
    for student, variant in by_student.items():
        notebooks[student] = misconception_submission(assignment, variant, root)
    for student, nb in notebooks.items():
        path = out / student / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    return by_student
