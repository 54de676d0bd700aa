"""The installed package on a course folder of the instructor's own: build the wheel, install it
into a virtual environment outside the repository, ``mlmcourse init``, add an assignment of the
test's own, release everything and grade the new assignment and a built-in one, from the course
folder, with nothing of the checkout on ``sys.path``; and every notebook in notebooks/ run in a
kernel of that environment, loading only what the wheel's declared dependencies install.

The environment's dependencies come from ``requirements/lock.txt`` (torch==2.13.0 among them)
and are installed once per lock into ``MLMCOURSE_WHEEL_ENVS`` (default
``~/.cache/mlmcourse/wheel-env``); the mlmcourse wheel itself is built and reinstalled every run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus  # noqa: E402

# the first run installs the dependencies (minutes); later runs reuse them
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def _env_folder() -> Path:
    lock = (ROOT / "requirements" / "lock.txt").read_bytes()
    base = Path(os.environ.get("MLMCOURSE_WHEEL_ENVS",
                               Path.home() / ".cache" / "mlmcourse" / "wheel-env"))
    version = f"py{sys.version_info.major}{sys.version_info.minor}"
    return base / f"{version}-{hashlib.sha256(lock).hexdigest()[:12]}"


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 1800
         ) -> subprocess.CompletedProcess:
    started = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    print(f"[{time.monotonic() - started:6.1f} s, exit {done.returncode}] {' '.join(argv)}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of an environment outside the repository with the fresh wheel."""
    work = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
          "-q", "-w", str(work)], work, env)
    (wheel,) = work.glob("mlmcourse-*.whl")
    venv = _env_folder()
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        base = getattr(sys, "_base_executable", sys.executable)
        _run([base, "-m", "venv", str(venv)], work, env)
        _run([str(python), "-m", "pip", "install", "-q", "-c",
              str(ROOT / "requirements" / "lock.txt"), f"{wheel}[grade]"], work, env)
        (venv / ".complete").touch()
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
          str(wheel)], work, env)
    return venv / "bin"


def test_the_installed_package_runs_a_course_of_its_own(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed}{os.pathsep}{env['PATH']}"
    python = str(installed / "python")
    probe = _run([python, "-c", "import json, sys, mlmcourse, torch; print(json.dumps("
                  "[mlmcourse.__file__, torch.__version__, sys.path]))"], tmp_path, env)
    where, torch_version, path = json.loads(probe.stdout)
    assert Path(where).is_relative_to(installed.parent), where
    assert torch_version.split("+")[0] == "2.13.0"
    assert not [p for p in path if p and Path(p).resolve().is_relative_to(ROOT)], path

    started = time.monotonic()
    _run(["mlmcourse", "init", "fall"], tmp_path, env)
    course = tmp_path / "fall"
    corpus.write_course(course)  # an assignment of the instructor's own: source/softmax/
    _run(["mlmcourse", "release"], course, env)
    print(f"init + release of every assignment: {time.monotonic() - started:.1f} s")
    released = sorted(p.parent.name for p in (course / "release").glob("*/*.ipynb"))
    assert released == ["ex2_masking", "ex3_distribution", "ex4_cross_entropy",
                        "ex5_masked_loss", "ex6_training", "ex7_reading_and_scale", "softmax"]

    subs = course / "submitted"
    softmax = corpus.solved(corpus.source_notebook())
    ex2 = json.loads((course / "release" / "ex2_masking" / "ex2_masking.ipynb").read_text())
    for student, assignment, nb in [("ana", "softmax", softmax), ("ana", "ex2_masking", ex2)]:
        target = subs / student / assignment / f"{assignment}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb))
    for assignment in ("softmax", "ex2_masking"):
        _run(["mlmcourse", "grade", assignment, "submitted", "--out", f"grades/{assignment}",
              "--jobs", "1"], course, env)
    rows = {a: next(csv.DictReader((course / "grades" / a / "grades.csv").open()))
            for a in ("softmax", "ex2_masking")}
    assert (rows["softmax"]["status"], rows["softmax"]["score"]) == ("graded", "3")
    assert rows["ex2_masking"]["status"] in ("graded", "needs_manual")
    assert (course / "gradebook.db").is_file() and not (ROOT / "fall").exists()


LESSONS = sorted((ROOT / "notebooks").glob("*.ipynb"))

# Run in the venv after the dependencies are installed: the distributions the wheel's declared
# dependencies install (no extras), by name, as JSON.
_DECLARED = """
import importlib.metadata as md, json, sys
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

def needs(dist, extras):
    for line in md.requires(dist) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in extras):
            yield canonicalize_name(req.name), sorted(req.extras)

todo, seen = [("mlmcourse", [""])], set()
while todo:
    name, extras = todo.pop()
    for need, need_extras in needs(name, extras):
        if (need, tuple(need_extras)) not in seen:
            seen.add((need, tuple(need_extras)))
            todo.append((need, [""] + need_extras))
print(json.dumps(sorted({name for name, _ in seen} | {"mlmcourse"})))
"""

# Appended to each lesson: the distributions whose modules the kernel loaded (stdlib modules
# belong to none), and where mlmcourse came from.
_LOADED = """
import importlib.metadata as _md, json as _json, sys as _sys
_owners = _md.packages_distributions()
_tops = {m.split(".")[0] for m in list(_sys.modules)}
print(_json.dumps({
    "python": _sys.executable,
    "mlmcourse": getattr(_sys.modules.get("mlmcourse"), "__file__", None),
    "distributions": sorted({d for m in _tops for d in _owners.get(m, [])}),
}))
"""


def _run_in_wheel_kernel(nb: Any, installed: Path, folder: Path) -> dict:
    """Execute ``nb`` (with :data:`_LOADED` appended) in a kernel of the wheel's environment,
    started in ``folder/scratch``, outside the checkout; returns what :data:`_LOADED` printed.
    The notebook's outputs are kept in ``nb``; an error in a cell fails the caller."""
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    spec = folder / "kernels" / "wheel"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(installed / "python"), "-m", "ipykernel_launcher", "-f",
                 "{connection_file}"],
        "display_name": "the wheel's environment", "language": "python"}))
    scratch = folder / "scratch"
    scratch.mkdir()
    nb.cells.append(nbformat.v4.new_code_cell(_LOADED))
    km = KernelManager(kernel_name="wheel",
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec.parent)]))
    NotebookClient(nb, km=km, timeout=600).execute(env=env, cwd=str(scratch))
    errors = [out for cell in nb.cells if cell.cell_type == "code"
              for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    return json.loads(nb.cells[-1].outputs[-1].text)


@pytest.fixture(scope="module")
def allowed(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The distributions a lesson may load: those the wheel's declared dependencies install (no
    extras), and those an empty kernel loads by itself (the control: ipykernel picks up optional
    packages such as msgpack when the environment has them, whatever the lesson imports)."""
    import nbformat
    from packaging.utils import canonicalize_name

    folder = tmp_path_factory.mktemp("kernel-alone")
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    declared = set(json.loads(
        _run([str(installed / "python"), "-c", _DECLARED], folder, env).stdout))
    assert {"torch", "transformers", "ipykernel"} <= declared, declared
    alone = _run_in_wheel_kernel(nbformat.v4.new_notebook(), installed, folder)
    by_itself = {canonicalize_name(d) for d in alone["distributions"]}
    assert "torch" not in by_itself and "mlmcourse" not in by_itself, by_itself
    return declared | by_itself


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_every_lesson_runs_from_the_wheel_with_its_declared_dependencies(
        installed: Path, allowed: set[str], lesson: Path, tmp_path: Path) -> None:
    """Each notebook in notebooks/ runs top to bottom in a kernel of the wheel's environment,
    started in a folder outside the checkout, and loads nothing but what the wheel's declared
    dependencies install: the environment also holds the ``grade`` extra, so a lesson that
    imports a package only an extra (or only the development install) brings would run here,
    but it would load a distribution outside the allowed set and fail."""
    import nbformat
    from packaging.utils import canonicalize_name

    started = time.monotonic()
    report = _run_in_wheel_kernel(nbformat.read(lesson, as_version=4), installed, tmp_path)
    print(f"{lesson.name}: {time.monotonic() - started:.1f} s")
    assert Path(report["python"]).parent == installed, report["python"]
    assert report["mlmcourse"], "the lesson never imported mlmcourse"
    assert Path(report["mlmcourse"]).is_relative_to(installed.parent), report["mlmcourse"]
    loaded = {canonicalize_name(d) for d in report["distributions"]}
    assert loaded - allowed == set(), (
        f"{lesson.name} loads distributions the wheel's dependencies do not install: "
        f"{sorted(loaded - allowed)}")
