"""Only what pyproject.toml cannot say: the wheel carries the course's exercises and the versions
it is tested with.

``mlmcourse init`` copies the exercises into a new course folder; they live in
``autograder/source`` (the repository's own course) and are copied to
``mlmcourse/course_template/source`` in the build. ``requirements/lock.txt`` is copied to
``mlmcourse/constraints.txt``: the constraints file of the instructor guide's install.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


class BuildWithExercises(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # a checkout reads autograder/source directly
        package = Path(self.build_lib) / "mlmcourse"
        shutil.copyfile(HERE / "requirements" / "lock.txt", package / "constraints.txt")
        target = package / "course_template" / "source"
        for notebook in sorted((HERE / "autograder" / "source").glob("*/*.ipynb")):
            if notebook.stem == notebook.parent.name:
                destination = target / notebook.parent.name / notebook.name
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(notebook, destination)


setup(cmdclass={"build_py": BuildWithExercises})
