"""Releasing an assignment: nbgrader's generate_assignment (solutions replaced by stubs, hidden
tests removed, cells locked and checksummed), then the class variants' templates taken out of
the student notebook (:mod:`mlmcourse.grading.authoring.variants`: they hold the hidden tests'
text)."""

from __future__ import annotations

import logging
from pathlib import Path

import nbformat

from mlmcourse.grading.authoring import variants
from mlmcourse.grading.course import CONFIG_NAME, put_scripts_on_path, release_path


def release(assignment: str, course: Path) -> dict:
    """Run ``nbgrader generate_assignment`` for one assignment, then take the variants' templates
    out of the student notebook; nbgrader's result dict."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    put_scripts_on_path()
    config = PyFileConfigLoader(CONFIG_NAME, path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    api = NbGraderAPI(config=config)
    api.log.setLevel(logging.ERROR)
    result = api.generate_assignment(assignment, force=True)
    released = release_path(course, assignment)
    if result.get("success") and released.is_file():
        nb = nbformat.read(released, as_version=4)
        if variants.METADATA_KEY in nb.metadata:
            nbformat.write(variants.without_templates(nb), released)
    return result
