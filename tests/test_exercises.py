"""The graded exercises: metadata, released answer cells, book tables, and every submission
variant (solution, untouched release, one per misconception) run through the tests with nbclient.

The slow tests run each notebook as ``nbgrader autograde`` would: the submission's answers with
the source's setup and test cells (hidden tests included).
"""

from __future__ import annotations

import csv
import html
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from cases import variants as v
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from mlmcourse.grading.cli.check import CellResult, cell_results
from mlmcourse.grading.cli.release import release
from mlmcourse.grading.misconceptions import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book" / "exercises"
_POINTS_ROW = re.compile(r"^\|\s*`([a-z0-9_]+)`\s*\|[^|]*\|\s*([0-9.]+)\s*\|", re.MULTILINE)


def _graded(assignment: str) -> list[dict]:
    return [
        v.nbgrader_meta(c)
        for c in v.read(v.source_path(assignment)).cells
        if v.nbgrader_meta(c).get("grade")
    ]


@pytest.fixture(scope="session")
def course(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private copy of the course folder with every assignment released into it."""
    root = tmp_path_factory.mktemp("course")
    shutil.copy(v.AUTOGRADER / "nbgrader_config.py", root)
    shutil.copytree(v.AUTOGRADER / "source", root / "source")
    for assignment in v.ASSIGNMENTS:
        result = release(assignment, root)
        assert result["success"], result.get("log")
    return root


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_graded_cells_have_points_and_unique_ids(assignment: str) -> None:
    cells = [v.nbgrader_meta(c) for c in v.read(v.source_path(assignment)).cells]
    ids = [m["grade_id"] for m in cells if m]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {assignment}"
    graded = [m for m in cells if m.get("grade")]
    assert graded and all(m.get("points", 0) > 0 for m in graded)
    assert any(m.get("solution") for m in graded), "no written (manually graded) answer"


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_variants_name_known_misconceptions_and_tests(assignment: str) -> None:
    tests = {m["grade_id"] for m in _graded(assignment) if not m.get("solution")}
    solutions = v.solution_answers(assignment)
    for variant in v.variants(assignment):
        assert variant.fails and set(variant.fails) <= tests, variant.name
        assert set(variant.fails.values()) <= set(CATALOGUE), variant.name
        assert set(variant.answers(solutions)) <= set(solutions), variant.name


def test_every_misconception_is_exercised() -> None:
    used = {code for a in v.ASSIGNMENTS for var in v.variants(a) for code in var.fails.values()}
    assert set(CATALOGUE) - used == set(), "misconceptions no variant triggers"


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_release_answer_cells_hold_placeholders(assignment: str, course: Path) -> None:
    released = v.read(v.release_path(assignment, course))
    for cell in released.cells:
        meta = v.nbgrader_meta(cell)
        assert "NotImplementedError" not in cell.source
        if (
            meta.get("solution")
            and cell.cell_type == "code"
            and meta["grade_id"].startswith("answer_")
        ):
            first = cell.source.splitlines()[0]
            assert first.startswith(f"{meta['grade_id']} = ") and "#" in first, first


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_book_page_points_match_notebook(assignment: str) -> None:
    page = (BOOK / f"{assignment}.md").read_text(encoding="utf-8")
    table = {gid: float(points) for gid, points in _POINTS_ROW.findall(page)}
    expected = {m["grade_id"]: float(m["points"]) for m in _graded(assignment)}
    assert table == expected
    total = sum(expected.values())
    assert f"Total: {total:g} points" in page
    index = (BOOK / "index.md").read_text(encoding="utf-8")
    assert re.search(rf"\[{assignment}\]\({assignment}\.md\)\s*\|[^|\n]*\|\s*{total:g}\s*\|", index)


def _run_all(notebooks: list[nbformat.NotebookNode], cwd: Path) -> list[list[CellResult]]:
    """Execute the notebooks one after another in one kernel, reset between them (fast)."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(cwd))
    try:
        outcomes = []
        for nb in notebooks:
            nb.cells.insert(0, nbformat.v4.new_code_cell("%reset -f"))
            NotebookClient(nb, km=km, timeout=300, allow_errors=True).execute()
            outcomes.append(cell_results(nb))
        return outcomes
    finally:
        km.shutdown_kernel(now=True)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_submissions_fail_exactly_the_intended_tests(assignment: str, course: Path) -> None:
    solution = v.with_source_tests(v.solution_submission(assignment, course), assignment, course)
    released = v.with_source_tests(v.read(v.release_path(assignment, course)), assignment, course)
    cases = v.variants(assignment)
    mistakes = [
        v.with_source_tests(v.misconception_submission(assignment, c, course), assignment, course)
        for c in cases
    ]
    outcomes = _run_all([solution, released, *mistakes], course / "source" / assignment)

    failed = [r for r in outcomes[0] if not r.passed]
    assert not failed, f"the solution fails: {failed}"
    assert outcomes[1] and not any(r.passed for r in outcomes[1]), "the release passes a test"
    problems = []
    for case, results in zip(cases, outcomes[2:], strict=True):
        got = {r.grade_id: r.misconception for r in results if not r.passed}
        if got != case.fails:
            problems.append(f"{case.name}: expected {case.fails}, got {got}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_grade_round_trip(assignment: str, course: Path, tmp_path: Path) -> None:
    """release -> `mlmcourse grade`: full marks, zero, and the right feedback for each mistake."""
    cases = v.write_submissions(assignment, tmp_path / "subs", course)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mlmcourse.cli", "grade", assignment, str(tmp_path / "subs")]
    result = subprocess.run(
        [*command, "--out", str(out), "--course", str(course), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    auto = {m["grade_id"]: float(m["points"]) for m in _graded(assignment) if not m["solution"]}

    assert {gid: float(rows["solution"][gid]) for gid in auto} == auto
    assert all(float(rows["release"][gid] or 0) == 0 for gid in auto)
    for student, case in cases.items():
        scores = {gid: float(rows[student][gid]) for gid in auto}
        expected = {gid: 0.0 if gid in case.fails else points for gid, points in auto.items()}
        assert scores == expected, student
        feedback = html.unescape(
            (out / "feedback" / student / f"{assignment}.html").read_text(encoding="utf-8")
        )
        for code in case.fails.values():
            assert CATALOGUE[code] in feedback, f"{student}: feedback lacks {code}"
