"""The graded exercises: metadata, released answer cells, book tables, and every submission
variant (solution, untouched release, one per misconception) run through the tests.

Every variant is graded by ONE ``mlmcourse grade`` run per assignment (shared by the tests that
read its grades, feedback and per-student results). The solution, the release and a sample of
the variants also run with nbclient as ``nbgrader autograde`` would (the submission's answers with
the source's setup and test cells, hidden tests included), to show that the two engines agree.
"""

from __future__ import annotations

import csv
import html
import importlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from cases import variants as v
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from mlmcourse.checks import CATALOGUE
from mlmcourse.grading.authoring.check import cell_results
from mlmcourse.grading.authoring.release import release
from mlmcourse.grading.model import CellResult

ROOT = Path(__file__).resolve().parents[2]
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


# the course's maths in a code span (`Pr_i^{W,θ}`) reads as code in JupyterLab, not as maths
CODE_SPAN = re.compile(r"`[^`\n]+`")
NOTATION = ("Pr_", "Pr(", "θ", "Σ", "x̄", "τ", "^gold", "A(x)")
SYMBOL = re.compile(r"`[A-Za-z](_[a-z])?`")  # a symbol of the notation: `x`, `i`, `W`, `x_i`


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_exercise_text_writes_the_notation_as_maths(assignment: str) -> None:
    """The notation is written $...$ in every Markdown cell (rendered by JupyterLab and the
    book alike), never as a code span."""
    cells = [c for c in v.read(v.source_path(assignment)).cells if c.cell_type == "markdown"]
    spans = [span for c in cells for span in CODE_SPAN.findall(c.source)
             if any(symbol in span for symbol in NOTATION) or SYMBOL.fullmatch(span)]
    assert not spans, spans
    assert any("$" in c.source for c in cells)


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_graded_cells_have_points_and_unique_ids(assignment: str) -> None:
    cells = [v.nbgrader_meta(c) for c in v.read(v.source_path(assignment)).cells]
    ids = [m["grade_id"] for m in cells if m]
    assert len(ids) == len(set(ids)), f"duplicate grade_id in {assignment}"
    graded = [m for m in cells if m.get("grade")]
    assert graded and all(m.get("points", 0) > 0 for m in graded)
    assert any(m.get("solution") for m in graded), "no written (manually graded) answer"


def _code_questions(assignment: str) -> list[str]:
    """The grade_ids of the code cells students write functions or a training run in."""
    return [
        v.nbgrader_meta(c)["grade_id"]
        for c in v.read(v.source_path(assignment)).cells
        if c.cell_type == "code"
        and v.nbgrader_meta(c).get("solution")
        and not v.nbgrader_meta(c)["grade_id"].startswith("answer_")
    ]


def _numeric_questions(assignment: str) -> list[str]:
    """The answer cells whose answer is a number (their placeholder is None)."""
    return [
        v.nbgrader_meta(c)["grade_id"]
        for c in v.read(v.source_path(assignment)).cells
        if v.nbgrader_meta(c).get("solution")
        and v.nbgrader_meta(c)["grade_id"].startswith("answer_")
        and " = None" in c.source.splitlines()[0]
    ]


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_variants_name_known_misconceptions_and_tests(assignment: str) -> None:
    tests = {m["grade_id"] for m in _graded(assignment) if not m.get("solution")}
    solutions = v.solution_answers(assignment)
    for variant in v.variants(assignment):
        assert variant.fails and set(variant.fails) <= tests, variant.name
        assert set(variant.fails.values()) <= set(CATALOGUE), variant.name
        assert set(variant.answers(solutions)) <= set(solutions), variant.name
    for case in v.degenerate(assignment):
        assert case.fails and set(case.fails) <= tests, case.name
        assert set(case.fails.values()) == {None}, f"{case.name}: a plain failure, no diagnosis"
        assert set(case.answers(solutions)) <= set(solutions), case.name
    for case in v.alternatives(assignment):
        assert not case.fails, f"{case.name}: a correct alternative fails nothing"
        assert set(case.answers(solutions)) <= set(solutions), case.name


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_every_question_has_alternatives_and_degenerate_answers(assignment: str) -> None:
    """Fairness needs evidence: at least three correct implementations of every code question
    written differently from the solution, a non-float number type for every numeric answer,
    and degenerate answers (NaN, empty, wrong shape, constant, ...) for every code question."""
    solutions = v.solution_answers(assignment)
    by_cell: dict[str, list[str]] = {}
    for case in v.alternatives(assignment):
        for grade_id, text in case.answers(solutions).items():
            assert text != solutions[grade_id], f"{case.name} is the solution"
            by_cell.setdefault(grade_id, []).append(case.name)
    for grade_id in _code_questions(assignment):
        assert len(by_cell.get(grade_id, [])) >= 3, f"{grade_id}: {by_cell.get(grade_id)}"
    for grade_id in _numeric_questions(assignment):
        sources = [c.cells.get(grade_id, "") for c in v.alternatives(assignment)]
        assert any("np." in text for text in sources), f"{grade_id}: no NumPy number"
    degenerate = {g for case in v.degenerate(assignment) for g in case.edits}
    assert set(_code_questions(assignment)) <= degenerate


# Misconceptions added with the variants that catch the misgrades of the fairness issue, and
# ten more; each has its own catalogue sentence and at least one variant (see the test above).
NEW_MISCONCEPTIONS = (
    "random-positions-unlabelled", "unchanged-positions-unlabelled", "random-special-token",
    "temperature-multiplied", "global-max-shift", "zero-probability-invalid",
    "zero-weight-terms", "uses-top-prediction", "mean-of-sequence-means",
    "divides-by-batch-size", "pretrained-weights-handed-in", "non-finite-parameters",
    "loss-history-not-recorded",
)  # fmt: skip


def test_new_misconceptions_have_variants() -> None:
    used = {code for a in v.ASSIGNMENTS for var in v.variants(a) for code in var.fails.values()}
    assert len(NEW_MISCONCEPTIONS) >= 10
    assert set(NEW_MISCONCEPTIONS) <= used & set(CATALOGUE)


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_forbidden_names_are_declared_and_exist(assignment: str) -> None:
    """A code question that asks for the student's own code names, in its cell metadata, the
    library functions it must not call (the grader makes them raise ForbiddenShortcut)."""
    declared = {}
    for cell in v.read(v.source_path(assignment)).cells:
        forbidden = cell.metadata.get("mlmcourse", {}).get("forbidden")
        if forbidden is not None:
            assert v.nbgrader_meta(cell).get("solution"), "declared on a non-answer cell"
            declared[v.nbgrader_meta(cell)["grade_id"]] = forbidden
    expected = {
        "ex2_masking": {"corrupt": "mlmcourse.masking.mask_tokens"},
        "ex3_distribution": {"softmax": "torch.softmax"},
        "ex4_cross_entropy": {"token_cross_entropy": "torch.nn.functional.cross_entropy"},
        "ex5_masked_loss": {"masked_lm_loss": "mlmcourse.loss.mlm_loss"},
        "ex6_training": {},
        "ex7_reading_and_scale": {"whole_word_corrupt": "mlmcourse.subwords.select_positions"},
    }[assignment]
    assert set(declared) == set(expected)
    for grade_id, name in expected.items():
        assert name in declared[grade_id]
    for names in declared.values():
        for dotted in names:
            module, _, attribute = dotted.rpartition(".")
            while module and module not in sys.modules:
                try:
                    importlib.import_module(module)
                except ImportError:
                    module, _, outer = module.rpartition(".")
                    attribute = f"{outer}.{attribute}"
                    continue
            target = importlib.import_module(module)
            for part in attribute.split("."):
                target = getattr(target, part)
            assert callable(target), dotted


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_forbidden_names_survive_release(assignment: str, course: Path) -> None:
    """``mlmcourse release`` (nbgrader generate_assignment) keeps the declaration, so the grader
    can read it from the released or the source notebook alike."""

    def declared(nb: nbformat.NotebookNode) -> dict:
        return {
            v.nbgrader_meta(c).get("grade_id"): c.metadata["mlmcourse"]
            for c in nb.cells
            if "mlmcourse" in c.metadata
        }

    source = declared(v.read(v.source_path(assignment)))
    assert declared(v.read(v.release_path(assignment, course))) == source


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


def _run_all(notebooks: list[nbformat.NotebookNode], cwd: Path
             ) -> list[dict[str, CellResult]]:
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


def _engine_sample(assignment: str) -> dict[str, v.Variant]:
    """The variants nbclient runs besides the solution and the release: the first misconception
    (a failure naming its code) and the first degenerate answer (a plain failure). Every variant
    goes through ``mlmcourse grade`` in :func:`test_grade_round_trip`."""
    cases = v.all_cases(assignment)
    return {
        student: cases[student]
        for student in (next(s for s in cases if s.startswith(kind)) for kind in ("mc-", "deg-"))
    }


@pytest.mark.slow
@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_submissions_fail_exactly_the_intended_tests(assignment: str, course: Path) -> None:
    """Through nbclient, as ``nbgrader autograde`` runs them: the solution passes every test,
    the release none, and a misconception and a degenerate answer fail exactly their tests, with
    the misconception's code (or none), as the grader finds for every variant."""
    solution = v.with_source_tests(v.solution_submission(assignment, course), assignment, course)
    released = v.with_source_tests(v.read(v.release_path(assignment, course)), assignment, course)
    cases = _engine_sample(assignment)
    submissions = [
        v.with_source_tests(v.misconception_submission(assignment, c, course), assignment, course)
        for c in cases.values()
    ]
    outcomes = _run_all([solution, released, *submissions], course / "source" / assignment)

    failed = {g: r.message for g, r in outcomes[0].items() if not r.passed}
    assert not failed, f"the solution fails: {failed}"
    assert outcomes[1] and not any(r.passed for r in outcomes[1].values()), \
        "the release passes a test"
    problems = []
    for (student, case), results in zip(cases.items(), outcomes[2:], strict=True):
        got = {g: r.misconception for g, r in results.items() if not r.passed}
        if got != case.fails:
            errors = {g: r.message[:160] for g, r in results.items() if not r.passed}
            problems.append(f"{student}: expected {case.fails}, got {got} {errors}")
    assert not problems, "\n".join(problems)


# The main misconception of each code question, which its *visible* check must already name
# (in `mlmcourse check` and nbgrader's Validate, without the hidden tests).
# (tests/test_exercise_cells.py checks every code mistake's visible diagnosis in-process.)
VISIBLY_DIAGNOSED = {
    "ex2_masking": ("ignores-seed", "labels-only-on-mask", "always-mask-token", "modifies-input",
                    "selects-unk-and-mask", "random-special-token"),
    "ex3_distribution": ("normalise-wrong-axis", "softmax-overflow", "negative-probability",
                         "global-max-shift", "missing-vocabulary-word", "checks-total-sum"),
    "ex4_cross_entropy": (
        "dropped-minus-sign", "log-of-softmax-underflow", "cross-entropy-arguments-swapped",
    ),
    "ex5_masked_loss": ("dropped-minus-sign", "mean-of-sequence-means", "log-of-softmax-underflow",
                        "log-base-2", "skips-softmax", "uses-top-prediction"),
    "ex6_training": ("gradient-ascent", "averaging-over-all-positions", "non-finite-parameters",
                     "sgd-returns-mutated-params", "argmax-wrong-axis", "state-dict-mismatch"),
    "ex7_reading_and_scale": ("per-piece-selection", "fate-per-word", "every-selected-piece-masked",
                              "ece-unweighted-bins", "ece-signed-gap", "ece-bin-centre"),
}  # fmt: skip


@pytest.mark.slow
def test_visible_checks_name_the_main_misconceptions(course: Path) -> None:
    """Released notebooks (visible checks only) with each code question's main misconception
    fail that question's check with the misconception's code."""
    notebooks, expected = [], []
    for assignment, names in VISIBLY_DIAGNOSED.items():
        by_name = {c.name: c for c in v.variants(assignment)}
        for name in names:
            case = by_name[name]
            answers = case.answers(v.solution_answers(assignment, course))
            notebooks.append(v.with_answers(v.solution_submission(assignment, course), answers))
            expected.append((assignment, name, case.fails))
    outcomes = _run_all(notebooks, course / "release")
    problems = []
    for (assignment, name, fails), results in zip(expected, outcomes, strict=True):
        # without the hidden tests a test cell may pass, but what fails names the misconception
        got = {g: r.misconception for g, r in results.items() if not r.passed}
        if not got or not got.items() <= fails.items():
            problems.append(f"{assignment} {name}: expected {fails}, got {got}")
    assert not problems, "\n".join(problems)


def _grade(assignment: str, subs: Path, out: Path, course: Path) -> dict[str, dict]:
    command = [str(ROOT / ".venv" / "bin" / "mlmcourse"), "grade", assignment, str(subs)]
    if not Path(command[0]).exists():
        command[:1] = [sys.executable, "-m", "mlmcourse.cli"]
    result = subprocess.run(
        [*command, "--out", str(out), "--course", str(course), "--jobs", "2"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


@dataclass(frozen=True)
class GradedClass:
    """One ``mlmcourse grade`` run of an assignment's whole class of programmatic submissions."""

    cases: dict[str, v.Variant]  # every student's case but the solution's and the release's
    rows: dict[str, dict]  # grades.csv by student
    out: Path

    def failed_tests(self, student: str) -> dict[str, str | None]:
        """The test cells the student failed, with the misconception code each named (or None),
        from the grader's stored result (``OUT/results/<student>.json``)."""
        result = json.loads((self.out / "results" / f"{student}.json").read_text("utf-8"))
        return {
            gid: cell["misconception"]
            for gid, cell in result["cells"].items()
            if cell["kind"] == "test" and not cell["passed"]
        }


@pytest.fixture(scope="module")
def graded(course: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], GradedClass]:
    """``graded(assignment)``: the class graded once per assignment, shared by the tests. The
    class: the solution, the release, every case of ``all_cases`` and, for a question that
    forbids a library function, a correct answer that calls it (student ``shortcut``)."""
    from cases.variant_cases import SHORTCUTS

    runs: dict[str, GradedClass] = {}

    def grade(assignment: str) -> GradedClass:
        if assignment not in runs:
            work = tmp_path_factory.mktemp(assignment)
            cases = v.write_submissions(assignment, work / "subs", course)
            if assignment in SHORTCUTS:
                cases["shortcut"] = SHORTCUTS[assignment]
                nb = v.misconception_submission(assignment, cases["shortcut"], course)
                (work / "subs" / "shortcut").mkdir()
                nbformat.write(nb, work / "subs" / "shortcut" / f"{assignment}.ipynb")
            rows = _grade(assignment, work / "subs", work / "out", course)
            runs[assignment] = GradedClass(cases, rows, work / "out")
        return runs[assignment]

    return grade


@pytest.mark.slow
@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_grade_round_trip(assignment: str, graded: Callable[[str], GradedClass]) -> None:
    """release -> ONE `mlmcourse grade` run of the whole set: the solution and every correct
    alternative get full marks on the auto-graded cells, the release zero, and each
    misconception or degenerate answer loses exactly the points of its tests, each failure
    naming its misconception's code (or none), with the misconception's feedback sentence."""
    run = graded(assignment)
    cases, rows, out = run.cases, run.rows, run.out
    auto = {m["grade_id"]: float(m["points"]) for m in _graded(assignment) if not m["solution"]}

    # the course's gradebook also lists the students of other assignments, as not submitted
    assert {"solution", "release", *cases} <= set(rows)
    assert {gid: float(rows["solution"][gid]) for gid in auto} == auto
    assert all(float(rows["release"][gid] or 0) == 0 for gid in auto)
    problems = []
    for student, case in cases.items():
        scores = {gid: float(rows[student][gid] or 0) for gid in auto}
        expected = {gid: 0.0 if gid in case.fails else points for gid, points in auto.items()}
        feedback = html.unescape(
            (out / "feedback" / student / f"{assignment}.html").read_text(encoding="utf-8")
        )
        if scores != expected:
            lost = {g: s for g, s in scores.items() if s != expected[g]}
            problems.append(
                f"{student}: {rows[student]['status']} {rows[student]['reason']} {lost}"
            )
            continue
        failed = run.failed_tests(student)
        if failed != case.fails:
            problems.append(f"{student}: expected {case.fails}, got {failed}")
        for code in case.fails.values():
            if code is not None and CATALOGUE[code] not in feedback:
                problems.append(f"{student}: feedback lacks {code}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ["ex2_masking", "ex3_distribution", "ex4_cross_entropy",
                                        "ex5_masked_loss", "ex7_reading_and_scale"])
def test_forbidden_shortcut_loses_its_points(assignment: str,
                                             graded: Callable[[str], GradedClass]) -> None:
    """A correct answer that calls the library's reference implementation its question forbids
    fails the question's tests, and the feedback says which question asked for the student's
    own code."""
    from cases.variant_cases import SHORTCUTS

    case = SHORTCUTS[assignment]
    run = graded(assignment)  # the round trip's class holds the shortcut submission
    rows = run.rows
    assert all(float(rows["shortcut"][gid] or 0) == 0 for gid in case.fails)
    feedback = (run.out / "feedback" / "shortcut" / f"{assignment}.html").read_text()
    ((question, _),) = case.cells.items()
    assert "ForbiddenShortcut" in feedback and f"question {question} asks for" in feedback


def test_shortcut_answers_are_otherwise_correct() -> None:
    """The shortcut submissions only break the rule: they name forbidden names of their cell."""
    from cases.variant_cases import SHORTCUTS

    for assignment, case in SHORTCUTS.items():
        ((grade_id, source),) = case.cells.items()
        forbidden = next(
            c.metadata["mlmcourse"]["forbidden"]
            for c in v.read(v.source_path(assignment)).cells
            if v.nbgrader_meta(c).get("grade_id") == grade_id
        )
        assert any(name.rpartition(".")[2] in source for name in forbidden), assignment


def test_hidden_inputs_and_their_references_stay_out_of_the_messages() -> None:
    """An answer right on the visible inputs and wrong on the hidden ones fails with a message
    that names neither a hidden input nor its reference value (issue 17: ex4's large-logits test
    quoted both)."""
    nb = v.read(v.source_path("ex4_cross_entropy"))
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and not v.nbgrader_meta(cell).get("grade"):
            exec(v.solution_text(cell.source), namespace)
    right = namespace["token_cross_entropy"]
    visible = ([0.0, 1.0], [1e4, 1e4, 0.0], [1e4, 0.0, -1e4, 5.0])

    def visible_only(logits, target):
        value = right(logits, target)
        return value if logits.tolist() in visible else value + 7.0

    namespace["token_cross_entropy"] = visible_only
    test = next(c for c in nb.cells
                if v.nbgrader_meta(c).get("grade_id") == "test_token_cross_entropy_large_logits")
    with pytest.raises(AssertionError) as failure:
        exec(test.source, namespace)
    message = str(failure.value)
    assert message and not re.search(r"1000|9997|3\.0|\[", message), message
