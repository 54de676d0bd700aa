"""The test cells of the exercises, one by one: what nbgrader reads from them (a test cell that
ends in a value is partial credit; ``nbgrader validate`` passes every solution), that each runs
on its own after the solution, and that the answers of every multiple-choice and numeric
question name their misconception.

The notebooks' code runs here in-process (setup, solution and example cells, then each test
cell in a fresh copy of that namespace), as a kernel running the solution would run it.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import os
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import nbformat
import pytest
from cases import variants as v

from mlmcourse import checks as misconceptions
from mlmcourse.cli import main
from mlmcourse.grading.authoring.release import release

_HIDDEN = re.compile(r"^### BEGIN HIDDEN TESTS\n.*?^### END HIDDEN TESTS\n?", re.M | re.S)


def _test_cells(assignment: str) -> dict[str, str]:
    return {v.nbgrader_meta(c)["grade_id"]: c.source
            for c in v.read(v.source_path(assignment)).cells
            if v.nbgrader_meta(c).get("grade") and c.cell_type == "code"
            and not v.nbgrader_meta(c).get("solution")}


def _visible(source: str) -> str:
    """A test cell as the released notebook has it (nbgrader strips the hidden tests)."""
    return _HIDDEN.sub("", source)


def _returns_none(function: ast.FunctionDef) -> bool:
    return not any(isinstance(node, ast.Return) and node.value is not None
                   for node in ast.walk(function))


def _none_helpers() -> set[str]:
    """The helpers of :mod:`misconceptions` declared to return ``None``."""
    return {name for name in ("require_choice", "require_number", "diagnose_choice",
                              "diagnose_number")
            if typing.get_type_hints(getattr(misconceptions, name))["return"] is type(None)}


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_no_test_cell_ends_in_a_value(assignment: str) -> None:
    """nbgrader reads a number a test cell ends with as partial credit (a correct answer fails
    Validate, or crashes it above the cell's points): the last statement of every test cell,
    with and without its hidden tests, is not an expression with a value."""
    setup = next(c.source for c in v.read(v.source_path(assignment)).cells
                 if v.nbgrader_meta(c).get("grade_id") == "setup")
    problems = []
    for grade_id, source in _test_cells(assignment).items():
        for form, text in (("full", source), ("visible", _visible(source))):
            defined = {node.name for tree in (ast.parse(setup), ast.parse(text))
                       for node in tree.body
                       if isinstance(node, ast.FunctionDef) and _returns_none(node)}
            last = ast.parse(text).body[-1]
            if not isinstance(last, ast.Expr):
                continue
            call = last.value
            if (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                    and call.func.id in {"print"} | _none_helpers() | defined):
                continue
            problems.append(f"{grade_id} ({form}) ends in {ast.unparse(last)[:60]!r}")
    assert not problems, problems


@functools.cache
def _solved(assignment: str) -> dict[str, Any]:
    """The namespace of a kernel that ran every cell of the solution but the test cells."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    tests = set(_test_cells(assignment))
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in v.read(v.source_path(assignment)).cells:
            if cell.cell_type == "code" and v.nbgrader_meta(cell).get("grade_id") not in tests:
                exec(compile(v.solution_text(cell.source), "<cell>", "exec"), namespace)
    return namespace


def _run(assignment: str, grade_id: str, **answers: object) -> BaseException | None:
    """Run one test cell (hidden tests included) alone after the solution; what it raised."""
    namespace = {**_solved(assignment), **answers}
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(_test_cells(assignment)[grade_id], f"<{grade_id}>", "exec"), namespace)
    except Exception as exc:  # the outcome under test
        return exc
    return None


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_each_test_cell_passes_alone_after_the_solution(assignment: str) -> None:
    """Every test cell is self-contained: when another one fails early, a correct answer to
    its own question still passes (no name it needs comes from another test cell)."""
    outcomes = {gid: _run(assignment, gid) for gid in _test_cells(assignment)}
    failed = {gid: f"{type(e).__name__}: {e}" for gid, e in outcomes.items() if e is not None}
    assert not failed, failed


def _answer_cases(assignment: str) -> list[v.Variant]:
    return [c for c in v.variants(assignment) + v.alternatives(assignment)
            if c.cells and all(g.startswith("answer_") for g in c.cells) and not c.edits]


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_each_wrong_answer_names_its_misconception(assignment: str) -> None:
    """Every multiple-choice and numeric variant fails its test cell with its misconception's
    code (each correct alternative passes), e.g. ex4 3a: the widest margin to the runner-up (A)
    is ``margin-not-probability``, the most evenly shared rest (D) ``spread-changes-loss``."""
    problems = []
    for case in _answer_cases(assignment):
        ((grade_id, source),) = case.cells.items()
        answer: dict[str, Any] = dict(_solved(assignment))
        exec(source, answer)
        error = _run(assignment, f"test_{grade_id}", **{grade_id: answer[grade_id]})
        expected = case.fails.get(f"test_{grade_id}")
        got = getattr(error, "code", None if error is None else "plain failure")
        if (error is not None or case.fails) and got != expected:
            problems.append(f"{case.name}: expected {expected}, got {got} ({error})")
    assert not problems, problems


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_every_case_fails_exactly_its_tests(assignment: str) -> None:
    """Each alternative, misconception and degenerate answer, run as the student's own kernel
    runs it (its answers after the solution's, each test cell alone): it fails exactly the test
    cells of its case, each with its misconception's code (or a plain failure with a message)."""
    solutions = v.solution_answers(assignment)
    problems = []
    for name, case in v.all_cases(assignment).items():
        namespace = dict(_solved(assignment))
        with contextlib.redirect_stdout(io.StringIO()):
            for source in case.answers(solutions).values():
                exec(compile(source, f"<{name}>", "exec"), namespace)
        got: dict[str, str | None] = {}
        for grade_id, source in _test_cells(assignment).items():
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, f"<{grade_id}>", "exec"), dict(namespace))
            except Exception as exc:  # the outcome under test
                got[grade_id] = getattr(exc, "code", None)
                if not str(exc).strip() or isinstance(exc, NameError):
                    problems.append(f"{name}: {grade_id} fails without a message about the "
                                    f"answer ({type(exc).__name__}: {exc})")
        if got != case.fails:
            problems.append(f"{name}: expected {case.fails}, got {got}")
    assert not problems, "\n".join(problems)


# The code mistakes that only the hidden tests can name, and why: everything else a visible
# check (what `mlmcourse check` and nbgrader's Validate run) must name already.
HIDDEN_ONLY = {
    "ex2_masking": {"fixed-count-per-row", "same-selection-every-row"},  # statistics over rows
    "ex3_distribution": set(),
    "ex4_cross_entropy": set(),
    # on the worked example, the shifted labels happen to give the right sum
    "ex5_masked_loss": {"off-by-one-from-cls"},
    # need the held-out loss or the shipped checkpoint
    "ex6_training": {"target-loss-not-reached", "pretrained-weights-handed-in",
                     "pretrained-weights-permuted", "trained-on-heldout"},
    "ex7_reading_and_scale": set(),
}


@pytest.mark.parametrize("assignment", [
    pytest.param(a, marks=pytest.mark.slow) if a in v.BUNDLED else a for a in v.ASSIGNMENTS
])
def test_visible_checks_name_the_code_mistakes(assignment: str) -> None:
    """Issue 17: each code question's visible check catches its common mistakes. Every
    misconception case of a code question, run against the test cells without their hidden
    tests, fails a visible check with one of its codes, but those of HIDDEN_ONLY."""
    solutions = v.solution_answers(assignment)
    visible = {gid: _visible(source) for gid, source in _test_cells(assignment).items()}
    named, missed = [], []
    for case in v.variants(assignment):
        if all(gid.startswith("answer_") for gid in (*case.cells, *case.edits)):
            continue  # a multiple-choice or numeric answer: its visible check is the format
        namespace = dict(_solved(assignment))
        with contextlib.redirect_stdout(io.StringIO()):
            for source in case.answers(solutions).values():
                exec(compile(source, f"<{case.name}>", "exec"), namespace)
        got: dict[str, str | None] = {}
        for grade_id, source in visible.items():
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(compile(source, f"<{grade_id}>", "exec"), dict(namespace))
            except Exception as exc:  # the outcome under test
                got[grade_id] = getattr(exc, "code", None)
        hit = any(got.get(gid) == code for gid, code in case.fails.items())
        (named if hit else missed).append(case.name)
    assert set(missed) == HIDDEN_ONLY[assignment], (named, missed)
    assert len(named) >= 2 * len(missed)


def _validate(notebook: Path) -> str:
    """``nbgrader validate`` of one notebook, run as a student runs it (from its folder): its
    output, which says "Success!" only when every test cell passes without partial credit."""
    package_root = str(Path(misconceptions.__file__).parents[2])  # this mlmcourse, in the kernel
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    # nbgrader's defaults wait 4 s for a kernel's last output and 30 s for a cell: a student's
    # machine meets them; the loaded machine of a test suite may not (a timeout, not a failure)
    patience = ["--Execute.iopub_timeout=120", "--Execute.timeout=900"]
    result = subprocess.run([sys.executable, "-m", "nbgrader", "validate", *patience,
                             notebook.name], capture_output=True, text=True, timeout=1800,
                            cwd=notebook.parent, env=env)
    return f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"


@pytest.mark.slow
@pytest.mark.parametrize("seed", [None, "validate class: a secret"])
def test_nbgrader_validate_passes_the_solutions(seed: str | None, tmp_path: Path) -> None:
    """The Validate button (``nbgrader validate``) passes each assignment's solution, in the
    released notebook a student fills in, for the published course and a seeded one."""
    course = tmp_path / "course"
    assert main(["init", str(course), *(["--seed", seed] if seed else [])]) == 0
    problems = []
    for assignment in v.ASSIGNMENTS:
        assert release(assignment, course)["success"]
        path = tmp_path / "student" / assignment / f"{assignment}.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(v.solution_submission(assignment, course), path)
        output = _validate(path)
        if "Success! Your notebook passes all the tests." not in output or "exit 0" not in output:
            problems.append(f"{assignment}: {output[-800:]}")
    assert not problems, "\n".join(problems)


# What each question forbids, by family: every function of these names in every namespace
# that has one (torch, torch.nn.functional, torch.special, torch.nn modules, Tensor methods,
# the C functions behind them), and the course's reference module of the question.
_NAMESPACES = ("torch", "torch.nn.functional", "torch.special", "torch.nn",
               "torch.nn.modules.activation", "torch.nn.modules.loss", "torch.Tensor",
               "torch._C._nn")
_FAMILIES = {
    ("ex2_masking", "corrupt"): ((), "mlmcourse.masking"),
    ("ex3_distribution", "softmax"): (("softmax", "log_softmax", "softmin", "_softmax",
                                       "_log_softmax", "Softmax", "LogSoftmax", "Softmin"),
                                      "mlmcourse.distribution"),
    ("ex4_cross_entropy", "token_cross_entropy"): (
        ("cross_entropy", "nll_loss", "cross_entropy_loss", "nll_loss_nd", "nll_loss2d",
         "CrossEntropyLoss", "NLLLoss"), "mlmcourse.loss"),
    ("ex5_masked_loss", "masked_lm_loss"): (
        ("cross_entropy", "nll_loss", "cross_entropy_loss", "nll_loss_nd", "nll_loss2d",
         "CrossEntropyLoss", "NLLLoss"), "mlmcourse.loss"),
    ("ex7_reading_and_scale", "whole_word_corrupt"): ((), "mlmcourse.subwords"),
}


def _namespace(space: str) -> Any:
    import torch

    found: Any = torch
    for part in space.split(".")[1:]:
        found = getattr(found, part)
    return found


def _forbidden(assignment: str, grade_id: str) -> list[str]:
    return next(c.metadata["mlmcourse"]["forbidden"]
                for c in v.read(v.source_path(assignment)).cells
                if v.nbgrader_meta(c).get("grade_id") == grade_id)


@pytest.mark.parametrize(("assignment", "grade_id"), sorted(_FAMILIES))
def test_forbidden_lists_cover_each_family(assignment: str, grade_id: str) -> None:
    import inspect

    stems, reference = _FAMILIES[assignment, grade_id]
    module = __import__(reference, fromlist=["_"])
    family = {f"{space}.{stem}" for space in _NAMESPACES for stem in stems
              if hasattr(_namespace(space), stem)}
    family |= {f"{reference}.{name}" for name, obj in vars(module).items()
               if inspect.isfunction(obj) and obj.__module__ == reference
               and not name.startswith("_")}
    assert family <= set(_forbidden(assignment, grade_id))


_PROBE = """
import sys, torch
from mlmcourse.grading.sandbox import kernel
names = sys.argv[1:]
kernel._forbidden.update(dict.fromkeys(names, "q"))
kernel._apply_forbidden()
for name in names:
    owner, attribute = kernel._owner(name)
    calls = [lambda: getattr(owner, attribute)(torch.ones(2))]
    if name.startswith("torch.Tensor."):
        calls.append(lambda: getattr(torch.ones(2), attribute)(-1))
    for call in calls:
        try:
            call()
            print("RAN", name)
        except kernel.ForbiddenShortcut:
            pass
        except Exception as exc:
            print("OTHER", name, type(exc).__name__)
x = torch.tensor([1.0, 2.0])
print("allowed", float(torch.logsumexp(x, 0)), float(x.exp().sum()))
"""


@pytest.mark.parametrize(("assignment", "grade_id"), sorted(_FAMILIES))
def test_each_forbidden_name_raises_forbidden_shortcut(assignment: str, grade_id: str) -> None:
    """In a fresh interpreter, as in a sandbox: with a question's list in force, calling any of
    its names (as a function, a class, or a method of a tensor) raises ForbiddenShortcut, and
    what the question allows still runs."""
    names = _forbidden(assignment, grade_id)
    result = subprocess.run([sys.executable, "-c", _PROBE, *names], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("allowed") and lines[:-1] == [], lines
