"""The packaging files agree: pyproject.toml, environment.yml and the one lock file."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip_requirements() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml must have exactly one pip: section"
    return [r for r in pip_sections[0] if not r.startswith("-")]


def _normalise(requirement: str) -> tuple[str, str]:
    req = Requirement(requirement)
    name = re.sub(r"[-_.]+", "-", req.name).lower()
    return name, str(req.specifier)


def _course_requirements() -> list[str]:
    """What a course user installs: the dependencies and the grade and book extras."""
    project = _pyproject()["project"]
    extras = project["optional-dependencies"]
    return project["dependencies"] + extras["grade"] + extras["book"]


def test_environment_yml_lists_the_same_dependencies_as_pyproject() -> None:
    in_pyproject = {_normalise(r) for r in _course_requirements()}
    in_environment = {_normalise(r) for r in _environment_pip_requirements()}
    assert in_environment == in_pyproject, (
        f"only in pyproject.toml: {sorted(in_pyproject - in_environment)}; "
        f"only in environment.yml: {sorted(in_environment - in_pyproject)}"
    )


def test_environment_yml_installs_the_package_itself() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e ." in pip_section


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"lock.txt line {line!r} is not an exact pin (name==version)"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_lock_pins_the_cpu_torch_found_on_disk() -> None:
    assert _lock()["torch"] == "2.13.0"


def test_every_dependency_is_pinned_in_the_lock_and_satisfies_its_range() -> None:
    pins = _lock()
    requirements = _course_requirements() + _pyproject()["project"]["optional-dependencies"]["dev"]
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name == "mlmcourse":
            continue  # the dev extra names the other extras
        assert name in pins, f"{name} is a dependency but has no pin in requirements/lock.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"lock pins {name}=={pins[name]}, outside pyproject's range {req.specifier}"
        )


def test_a_readers_install_does_not_pull_the_grader_nor_the_book() -> None:
    """Lessons need the library only; the grader (nbgrader) and the book build (Jupyter Book)
    are extras, which the dev extra brings together."""
    project = _pyproject()["project"]
    core = {_normalise(r)[0] for r in project["dependencies"]}
    assert not core & {"nbgrader", "jupyter-book", "jupyterlab", "nh3", "nbclient"}
    assert "transformers" in core  # lessons 5 and 8 compare with a library model
    assert "mlmcourse[grade,book,postgres]" in project["optional-dependencies"]["dev"]


def test_grader_test_data_stays_out_of_the_package() -> None:
    """The misconception variants list every wrong option (answers by elimination): they live
    in tests/, never in what a wheel or a sandbox carries."""
    package = ROOT / "mlmcourse"
    shipped = [p for p in package.rglob("*.py") if "Variant(" in p.read_text()]
    assert shipped == []
    assert (ROOT / "tests" / "cases" / "variant_cases.py").exists()


@pytest.mark.slow
def test_the_wheel_carries_the_tested_versions_as_constraints(tmp_path: Path) -> None:
    """The instructor guide's CPU-only install reads ``mlmcourse/constraints.txt`` from the
    wheel: the lock, with the CPU build of torch's version."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                    "--no-build-isolation", "-q", "-w", str(tmp_path)], check=True,
                   capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("mlmcourse-*.whl")
    carried = zipfile.ZipFile(wheel).read("mlmcourse/constraints.txt").decode()
    assert carried == (ROOT / "requirements" / "lock.txt").read_text()
    guide = (ROOT / "book" / "instructor_guide.md").read_text()
    assert "download.pytorch.org/whl/cpu" in guide and "mlmcourse/constraints.txt" in guide
