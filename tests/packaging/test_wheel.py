"""The installed package on a course folder of the instructor's own: build the wheel, install it
into a virtual environment outside the repository, ``mlmcourse init``, add an assignment of the
test's own, release everything and grade the new assignment and a built-in one, from the course
folder, with nothing of the checkout on ``sys.path``.

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
