"""`mlmcourse release` and `mlmcourse check`: what a student receives and how they check it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from cases import variants as v

from mlmcourse.cli import main

CHECK = [sys.executable, "-m", "mlmcourse.cli", "check"]


@pytest.fixture(scope="module")
def released() -> None:
    assert main(["release", "--quiet"]) == 0


@pytest.mark.parametrize("command", ["release", "check"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: mlmcourse {command}" in capsys.readouterr().out


def test_release_rejects_an_unknown_assignment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["release", "ex9_nothing"]) == 2
    err = capsys.readouterr().err
    assert "ex9_nothing" in err and all(a in err for a in v.ASSIGNMENTS)


def _solution_lines(source: str) -> set[str]:
    """The non-blank lines inside a cell's solution region."""
    region = source.partition("### BEGIN SOLUTION")[2].partition("### END SOLUTION")[0]
    return {line for line in region.splitlines() if line.strip()}


@pytest.mark.parametrize("assignment", v.ASSIGNMENTS)
def test_release_strips_solutions_and_hidden_tests(assignment: str, released: None) -> None:
    text = v.release_path(assignment).read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "Misconception(" in text, "the visible checks name the main misconceptions"
    assert "NotImplementedError" not in text
    released_cells = {
        v.nbgrader_meta(c).get("grade_id"): c.source
        for c in v.read(v.release_path(assignment)).cells
    }
    for cell in v.read(v.source_path(assignment)).cells:
        meta = v.nbgrader_meta(cell)
        if meta.get("solution"):
            leaked = _solution_lines(cell.source) & set(
                released_cells[meta["grade_id"]].splitlines()
            )
            assert not leaked, f"{meta['grade_id']}: solution lines in the release: {leaked}"


@pytest.mark.slow
def test_check_passes_on_the_solution(tmp_path: Path, released: None) -> None:
    path = tmp_path / "ex4_cross_entropy.ipynb"
    nbformat.write(v.solution_submission("ex4_cross_entropy"), path)
    result = subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed  test_answer_loss\n" in result.stdout
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("visible checks: 6 of 6 passed; the grade also uses hidden tests")
    assert "point" not in result.stdout, "check reports visible checks, never a score"
    # the kernel is reached over private Unix sockets: no TCP warning, nothing left behind
    assert "TCP" not in result.stderr and "WARNING" not in result.stderr, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ex4_cross_entropy.ipynb"]


@pytest.mark.slow
def test_check_fails_on_the_untouched_release(released: None) -> None:
    path = v.release_path("ex3_distribution")
    result = subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED  test_answer_valid_distribution\n" in result.stdout
    assert "Set answer_valid_distribution to one of" in result.stdout
    assert "visible checks: 0 of 5 passed; the grade also uses hidden tests" in result.stdout
    assert "point" not in result.stdout


@pytest.mark.slow
def test_check_names_the_misconception(tmp_path: Path, released: None) -> None:
    (variant,) = [c for c in v.variants("ex2_masking") if c.name.endswith("-copying-is-the-goal")]
    path = tmp_path / "ex2_masking.ipynb"
    nb = v.with_source_tests(v.misconception_submission("ex2_masking", variant), "ex2_masking")
    nbformat.write(nb, path)
    result = subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert "[copying-is-the-goal]" in result.stdout


def test_check_rejects_an_unreadable_notebook(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text("{ not json", encoding="utf-8")
    result = subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "broken.ipynb" in result.stderr


def test_check_rejects_a_notebook_without_tests(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), path)
    result = subprocess.run([*CHECK, str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "no test cells" in result.stderr


@pytest.mark.parametrize(("message", "code"), [
    ("Misconception: [dropped-minus-sign] The loss is minus the log.", "dropped-minus-sign"),
    ("[softmax-overflow] exp of a large logit overflows", "softmax-overflow"),
    ("AssertionError: Set answer_a to one of 'A', 'B' (a string), got 3.", None),
    ("AssertionError: see [dropped-minus-sign] below", None),  # only a leading code counts
    ("", None),
])
def test_a_failure_names_its_misconception_by_a_leading_code(message: str,
                                                              code: str | None) -> None:
    from mlmcourse.checks import Misconception, misconception_code

    assert misconception_code(message) == code
    assert misconception_code(f"Misconception: {Misconception('gradient-ascent')}") \
        == "gradient-ascent"
