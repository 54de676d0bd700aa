"""Generate the student versions of a course's exercises into <course>/release/.

Runs nbgrader's generate_assignment (solutions replaced by stubs, hidden tests removed, cells
locked and checksummed) for the named assignments, or for every assignment in <course>/source/,
overwriting any earlier release. The course is --course DIR, else the nearest folder upward
holding nbgrader_config.py, else ./autograder. Exit codes: 0 released, 1 nbgrader failed, 2 unknown
assignment or no course.

The released notebooks carry no parameter specs or templates of the exercises' class variants
(:mod:`mlmcourse.grading.variants`): those hold the hidden tests' text.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import nbformat

from mlmcourse.grading import variants
from mlmcourse.grading.course import (
    CONFIG_NAME,
    assignments,
    find_course,
    put_scripts_on_path,
    release_path,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("assignments", nargs="*", metavar="ASSIGNMENT",
                        help="assignments to release (default: every one in <course>/source/)")
    parser.add_argument("--course", type=Path, default=None, metavar="DIR",
                        help="the nbgrader course folder (default: the nearest folder upward "
                        f"holding {CONFIG_NAME}, else ./autograder)")
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")


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


def run(args: argparse.Namespace) -> int:
    course = find_course(args.course)
    if not (course / CONFIG_NAME).is_file():
        print(f"mlmcourse release: {course} is not a course folder (no {CONFIG_NAME}); "
              "pass --course DIR", file=sys.stderr)
        return 2
    known = assignments(course)
    unknown = [a for a in args.assignments if a not in known]
    if unknown:
        print(f"mlmcourse release: unknown assignment {', '.join(unknown)}; "
              f"the assignments of {course} are: {', '.join(known) or '(none)'}",
              file=sys.stderr)
        return 2
    status = 0
    for assignment in args.assignments or known:
        result = release(assignment, course)
        if not result.get("success"):
            print(f"mlmcourse release: {assignment} failed:\n{result.get('log', '')}",
                  file=sys.stderr)
            status = 1
        elif not args.quiet:
            print(f"released {assignment} -> {release_path(course, assignment)}")
    return status
