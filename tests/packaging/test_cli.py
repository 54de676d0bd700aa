"""The console script: every sub-command has --help and usage errors exit with 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlmcourse.cli import SUBCOMMANDS, main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlmcourse.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_top_level_help_lists_every_subcommand() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name: str) -> None:
    result = _run(name, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: mlmcourse {name}" in result.stdout


def test_no_subcommand_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


def test_unknown_subcommand_is_a_usage_error() -> None:
    result = _run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr


def test_a_grading_command_without_the_grade_extra_says_how_to_install_it(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A reader's install has no nbgrader: ``mlmcourse init`` says which extra to install."""
    import importlib

    real = importlib.import_module

    def without_nbgrader(name: str, *args: object) -> object:
        if name == "mlmcourse.grading.cli.init":
            raise ModuleNotFoundError("No module named 'nbgrader'", name="nbgrader")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_nbgrader)
    assert main(["init", "course"]) == 2
    assert "pip install 'mlmcourse[grade]'" in capsys.readouterr().err
