"""Per-class variants (``mlmcourse init DIR --seed SECRET``): the committed exercises are the
rendering of their templates with the default seed; other seeds change every numeric question's
givens and every multiple-choice question's option order, and the hidden tests follow, so each
seed's own solution gets full marks (graded in the sandbox) while the published answers fail."""

from __future__ import annotations

import ast
import itertools
import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import nbformat
import pytest
from cases import variants as v

from mlmcourse import checks as misconceptions
from mlmcourse.cli import main
from mlmcourse.grading import pipeline
from mlmcourse.grading.authoring import variants as var
from mlmcourse.grading.authoring.release import release
from mlmcourse.grading.authoring.template import PARAMETERS_NAME
from mlmcourse.grading.course import release_path, source_path
from mlmcourse.grading.workers.pool import WorkerPool

# two classes' secrets; with one four-option question (exercise 6) two seeds show the right
# answer under the same letter one time in three: these two give different answers to every
# seeded question
SEEDS = ("autumn class: a secret of its own", "winter class: a second secret (27)")
# the one numeric question whose answer is not computed from givens of its own: log V of the
# course's vocabulary (the model of exercise 6 needs that vocabulary)
NOT_VARIED = {("ex6_training", "answer_initial_loss")}


def _notebook(assignment: str) -> nbformat.NotebookNode:
    return v.read(v.source_path(assignment))


def _names(template: str) -> set[str]:
    """The parameters the placeholders of ``template`` read."""
    return {node.id for match in var.PLACEHOLDER.finditer(template)
            for node in ast.walk(ast.parse(match.group(1).partition(":")[0].strip()))
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)} - set("ABCDE")


def _cells_by_grade_id(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {v.nbgrader_meta(c)["grade_id"]: c for c in nb.cells if v.nbgrader_meta(c)}


def _answer_cells(nb: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The multiple-choice and numeric answer cells (their grade_id starts with ``answer_``)."""
    return {gid: c for gid, c in _cells_by_grade_id(nb).items()
            if gid.startswith("answer_") and c.cell_type == "code"}


def _answers(nb: nbformat.NotebookNode, templated: set[str]) -> dict[str, object]:
    """The solution's answer of every answer cell whose id is in ``templated``, computed as the
    notebook does."""
    found = {}
    for gid, cell in _answer_cells(nb).items():
        if cell.id in templated:
            namespace = {"math": math}
            exec(v.solution_text(cell.source), namespace)
            found[gid] = namespace[gid]
    return found


def _run_test(source: str, name: str, answer: object) -> None:
    """Run a test cell (visible and hidden part) on ``answer``, as the grader does."""
    exec(source, {"math": math, **vars(misconceptions), name: answer})


def _diagnosis(source: str, name: str, answer: object) -> tuple[str, tuple, dict]:
    """What a test cell asks ``diagnose_number`` or ``diagnose_choice`` (its one call) to do:
    ``("number" or "choice", args, kwargs)``."""
    calls = []

    def recorder(kind: str):
        return lambda *args, **kwargs: calls.append((kind, args, kwargs))

    exec(source, {"math": math, **vars(misconceptions), name: answer,
                  "diagnose_number": recorder("number"), "diagnose_choice": recorder("choice")})
    (call,) = calls
    return call


# --- the published rendering -------------------------------------------------------------------


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_the_default_seed_renders_the_committed_notebooks(assignment: str) -> None:
    nb = _notebook(assignment)
    specs, cells = var.parameters(nb), var.templates(nb)
    values = var.draw(specs, var.DEFAULT_SEED, assignment)
    by_id = {c.id: c for c in nb.cells}
    assert cells and set(cells) <= set(by_id)
    for cell_id, template in cells.items():
        assert var.render(template, values, specs) == by_id[cell_id].source, cell_id
    used = set().union(*map(_names, cells.values()),
                       *(_names(t) for s in specs.values() for t in s.get("options", {}).values()))
    assert used == set(specs), f"declared but unused: {set(specs) - used}"
    assert var.render_notebook(nb, values) == var.without_templates(nb)


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_every_question_with_givens_and_every_option_list_is_templated(assignment: str) -> None:
    nb = _notebook(assignment)
    cells = var.templates(nb)
    by_gid = _cells_by_grade_id(nb)
    for gid, cell in _answer_cells(nb).items():
        first = cell.source.splitlines()[0]
        numeric, choice = " = None" in first, '"A", "B", "C"' in first
        if (numeric or choice) and (assignment, gid) not in NOT_VARIED:
            assert cell.id in cells and by_gid[f"test_{gid}"].id in cells, gid
            assert _names(cells[cell.id]), f"{gid}: its answer reads no parameter"


def test_templates_say_what_is_wrong() -> None:
    specs = {"n": {"values": [3, 4]}, "q": {"options": {"A": "a", "B": "b"}, "item": "{letter}"}}
    values = var.draw(specs, var.DEFAULT_SEED, "x")
    assert var.render("{{n * 2}} {{n:03d}} {{q[B]}} {{1 - 0.7}}", values, specs) == "6 003 B 0.3"
    assert var.render("{{q}}", values, specs) == "A\nB"
    for bad in ("{{m}}", "{{q[C]}}", "{{n ** 2}}", "{{__import__('os')}}", "{{n +}}"):
        with pytest.raises(var.TemplateError):
            var.render(bad, values, specs)
    with pytest.raises(var.TemplateError):
        var.draw({"n": {"value": 3}}, "seed", "x")


# --- drawing -----------------------------------------------------------------------------------


def test_draws_depend_on_the_seed_the_assignment_and_the_name_only() -> None:
    specs = var.parameters(_notebook("ex5_masked_loss"))
    first = var.draw(specs, SEEDS[0], "ex5_masked_loss")
    assert first == var.draw(dict(reversed(specs.items())), SEEDS[0], "ex5_masked_loss")
    assert first != var.draw(specs, SEEDS[1], "ex5_masked_loss")
    assert first != var.draw(specs, SEEDS[0], "ex5_masked_loss_b")
    for name, value in first.items():
        assert value in specs[name]["values"]
    options = var.draw(var.parameters(_notebook("ex3_distribution")), SEEDS[0], "ex3")
    for shown in options.values():
        assert sorted(shown) == sorted(shown.values()) and list(shown) == sorted(shown)
        assert all(published != letter for published, letter in shown.items())


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_every_drawable_combination_keeps_each_question_fair(assignment: str) -> None:
    """For every combination of the values a question reads: the rendered solution passes the
    rendered test; every misconception's value differs from the right answer (and from the
    others) by more than the test's tolerance; every option letter is named; and every number
    the question's text computes from its givens is positive (a count of [PAD], a total)."""
    nb = _notebook(assignment)
    specs, cells = var.parameters(nb), var.templates(nb)
    by_gid = _cells_by_grade_id(nb)
    for gid, cell in _answer_cells(nb).items():
        if cell.id not in cells:
            continue
        test = by_gid[f"test_{gid}"]
        names = sorted(_names(cells[cell.id]) | _names(cells[test.id]))
        choices = [itertools.permutations(specs[n]["options"]) if "options" in specs[n]
                   else specs[n]["values"] for n in names]
        for combination in itertools.product(*choices):
            values = {n: dict(sorted(zip(c, sorted(c), strict=True))) if isinstance(c, tuple) else c
                      for n, c in zip(names, combination, strict=True)}
            namespace = {"math": math}
            exec(v.solution_text(var.render(cells[cell.id], values, specs)), namespace)
            answer, source = namespace[gid], var.render(cells[test.id], values, specs)
            _run_test(source, gid, answer)
            kind, (given, correct, wrong, _), options = _diagnosis(source, gid, answer)
            if kind == "choice":
                assert given == correct and set(wrong) | {correct} == set(values[names[0]])
                continue
            assert math.isclose(given, correct, rel_tol=1e-9), (gid, values)
            rel, tol = options.get("rel_tol", 1e-2), options.get("abs_tol", 1e-9)
            points = [correct, *wrong.values()]
            for a, b in itertools.combinations(points, 2):
                assert not math.isclose(a, b, rel_tol=rel, abs_tol=tol), (gid, values, a, b)
    texts = [*cells.values(), *(t for s in specs.values() for t in s.get("options", {}).values())]
    for template in texts:
        for match in var.PLACEHOLDER.finditer(template):
            names = sorted(_names(match.group(0)))
            if not names or any("options" in specs[n] for n in names):
                continue
            for combination in itertools.product(*(specs[n]["values"] for n in names)):
                values = dict(zip(names, combination, strict=True))
                number = float(var.render(match.group(0), values, specs).replace(",", ""))
                assert number > 0, (match.group(0), values)


# --- seeds change the answers ------------------------------------------------------------------


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_two_seeds_give_different_answers_and_the_published_ones_fail(assignment: str) -> None:
    nb = _notebook(assignment)
    templated = set(var.templates(nb))
    published = _answers(nb, templated)

    def rendered(seed: str) -> nbformat.NotebookNode:
        return var.render_notebook(nb, var.draw(var.parameters(nb), seed, assignment))

    answers = {seed: _answers(rendered(seed), templated) for seed in SEEDS}
    assert answers[SEEDS[0]] != answers[SEEDS[1]]
    assert all(a != published for a in answers.values())
    texts = {seed: [c.source for c in rendered(seed).cells if c.cell_type == "markdown"]
             for seed in SEEDS}
    assert texts[SEEDS[0]] != texts[SEEDS[1]]
    # over a few more seeds, every templated question's answer moves away from the published one
    others = [_answers(rendered(f"class {i}"), templated) for i in range(12)]
    for gid, answer in published.items():
        assert any(o[gid] != answer for o in others), gid
    # a class that copies the published answers loses the points of each answer that moved
    seeded = _cells_by_grade_id(rendered(SEEDS[0]))
    for gid, answer in published.items():
        if answers[SEEDS[0]][gid] != answer:
            with pytest.raises(AssertionError):
                _run_test(seeded[f"test_{gid}"].source, gid, answer)


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_no_seed_can_draw_a_published_answer(assignment: str) -> None:
    """Every seed but the published one draws other values than the published ones, and for
    every combination of such values a question reads, the published answer fails the rendered
    test: copying the public answer key never scores on a seeded question."""
    nb = _notebook(assignment)
    specs, cells = var.parameters(nb), var.templates(nb)
    published = _answers(nb, set(cells))
    by_gid = _cells_by_grade_id(nb)
    for name, spec in specs.items():
        if "values" in spec:
            drawn = {var.draw({name: spec}, f"class {i}", assignment)[name] for i in range(200)}
            assert drawn == set(spec["values"][1:]), name
    for gid, answer in published.items():
        test = by_gid[f"test_{gid}"]
        names = sorted(n for n in _names(cells[test.id]) if "values" in specs[n])
        if not names:
            continue
        for combination in itertools.product(*(specs[n]["values"][1:] for n in names)):
            values = {**var.draw(specs, var.DEFAULT_SEED, assignment),
                      **dict(zip(names, combination, strict=True))}
            with pytest.raises(AssertionError):
                _run_test(var.render(cells[test.id], values, specs), gid, answer)


# --- seeded courses ----------------------------------------------------------------------------


def test_init_records_the_drawn_values_and_refuses_an_empty_seed(tmp_path: Path) -> None:
    assert main(["init", str(tmp_path / "fall"), "--seed", SEEDS[0]]) == 0
    record = json.loads((tmp_path / "fall" / PARAMETERS_NAME).read_text())
    assert record["published"] is False
    for assignment in v.ASSIGNMENTS:
        nb = _notebook(assignment)
        drawn = var.draw(var.parameters(nb), SEEDS[0], assignment)
        assert record["assignments"][assignment] == drawn
        written = v.read(source_path(tmp_path / "fall", assignment))
        assert written == var.render_notebook(nb, drawn)
        assert var.METADATA_KEY not in written.metadata
    assert SEEDS[0] not in "".join(p.read_text() for p in (tmp_path / "fall").rglob("*.*"))
    assert main(["init", str(tmp_path / "plain")]) == 0
    for assignment in v.ASSIGNMENTS:
        plain = v.read(source_path(tmp_path / "plain", assignment))
        assert plain == var.without_templates(_notebook(assignment))
    assert main(["init", str(tmp_path / "empty"), "--seed", " "]) == 2


def test_a_seed_file_gives_the_same_course_as_the_seed(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--seed-file`` (the secret never on a command line) reads the file's first line."""
    (tmp_path / "class.seed").write_text(f"  {SEEDS[0]}  \nnot part of the seed\n")
    assert main(["init", str(tmp_path / "a"), "--seed", SEEDS[0]]) == 0
    assert main(["init", str(tmp_path / "b"), "--seed-file", str(tmp_path / "class.seed")]) == 0
    for assignment in v.ASSIGNMENTS:
        assert source_path(tmp_path / "a", assignment).read_text() == \
            source_path(tmp_path / "b", assignment).read_text()
    (tmp_path / "empty.seed").write_text("\n")
    assert main(["init", str(tmp_path / "c"), "--seed-file", str(tmp_path / "empty.seed")]) == 2
    assert main(["init", str(tmp_path / "d"), "--seed-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the seed file" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def _grade_solutions(course: Path) -> None:
    """Grade every exercise's source solution of the course in the sandbox (one pool), as
    ``mlmcourse grade`` does before any student; raises :class:`pipeline.SolutionFails` unless
    each gets full marks."""
    first, *_ = v.ASSIGNMENTS
    settings = pipeline.Settings(first, course / "submitted", course / "grades", course,
                                 jobs=1, timeout=120)
    run = pipeline.prepare(settings)
    try:
        base = pipeline.solution_task(run)
        tasks = [replace(base, assignment=a, source=str(source_path(course, a)),
                         notebook=str(source_path(course, a))) for a in v.ASSIGNMENTS]
        pool = WorkerPool(1, run.source.warm_modules, run.workroot, run.policy)
        try:
            graded = {g.result.assignment: g.result for g in pool.run(tasks)}
        finally:
            pool.close()
    finally:
        pipeline.finish(run)
    assert set(graded) == set(v.ASSIGNMENTS)
    for assignment, result in graded.items():
        pipeline.check_solution(replace(run, settings=replace(settings, assignment=assignment)),
                                result)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_each_seeds_solution_gets_full_marks(seed: str, tmp_path: Path) -> None:
    course = tmp_path / "course"
    assert main(["init", str(course), "--seed", seed]) == 0
    _grade_solutions(course)


@pytest.mark.slow
def test_released_notebooks_carry_no_templates(tmp_path: Path) -> None:
    """The repository's own course (whose sources hold the templates) releases student notebooks
    without them; its sources are left as they are."""
    shutil.copy(v.AUTOGRADER / "nbgrader_config.py", tmp_path)
    shutil.copytree(v.AUTOGRADER / "source", tmp_path / "source")
    for assignment in v.ASSIGNMENTS:
        assert release(assignment, tmp_path)["success"]
        released = release_path(tmp_path, assignment)
        assert var.METADATA_KEY not in v.read(released).metadata
        assert "{{" not in released.read_text() and "HIDDEN TESTS" not in released.read_text()
        assert var.templates(v.read(source_path(tmp_path, assignment)))
