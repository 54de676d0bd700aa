"""Create an nbgrader course folder: nbgrader_config.py (paths computed from its own location, the
gradebook and exchange inside the folder), source/<assignment>/<assignment>.ipynb for every
exercise of the course, and a short README. Then, from that folder: mlmcourse release.

Exit codes: 0 created, 2 the folder is a course already or the course id is unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlmcourse.grading.template import InitError, create_course


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlmcourse init``."""
    parser.add_argument("folder", type=Path, metavar="DIR", help="the course folder to create")
    parser.add_argument("--course-id", default=None, metavar="ID",
                        help="nbgrader's course id (default: the folder's name)")


def run(args: argparse.Namespace) -> int:
    """Create the course; returns the exit code."""
    try:
        names = create_course(args.folder, args.course_id)
    except InitError as exc:
        print(f"mlmcourse init: {exc}", file=sys.stderr)
        return 2
    print(f"created the course {args.folder.resolve()} with {len(names)} assignments: "
          f"{', '.join(names)}\nnext: cd {args.folder} && mlmcourse release")
    return 0
