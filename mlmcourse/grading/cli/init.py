"""Create an nbgrader course folder: nbgrader_config.py (paths computed from its own location, the
gradebook and exchange inside the folder), source/<assignment>/<assignment>.ipynb for every
exercise of the course, and a short README. Then, from that folder: mlmcourse release.

With --seed SECRET, each exercise's numbers and the order of its multiple-choice options are
drawn from the secret, so the class's answers differ from the published ones; the same secret
gives the same course again. The drawn values are written to parameters.json, the seed is not.

Exit codes: 0 created, 2 the folder is a course already or the course id is unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlmcourse.grading.template import PARAMETERS_NAME, InitError, create_course
from mlmcourse.grading.variants import DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlmcourse init``."""
    parser.add_argument("folder", type=Path, metavar="DIR", help="the course folder to create")
    parser.add_argument("--course-id", default=None, metavar="ID",
                        help="nbgrader's course id (default: the folder's name)")
    parser.add_argument("--seed", default=DEFAULT_SEED, metavar="SECRET",
                        help="a secret phrase to draw this class's numbers and option orders "
                        f"from (default: {DEFAULT_SEED!r}, the published exercises)")


def run(args: argparse.Namespace) -> int:
    """Create the course; returns the exit code."""
    try:
        names = create_course(args.folder, args.course_id, args.seed)
    except InitError as exc:
        print(f"mlmcourse init: {exc}", file=sys.stderr)
        return 2
    drawn = ("the published numbers and option orders" if args.seed == DEFAULT_SEED else
             "numbers and option orders drawn from your seed")
    print(f"created the course {args.folder.resolve()} with {len(names)} assignments: "
          f"{', '.join(names)} ({drawn}, listed in {PARAMETERS_NAME})\n"
          f"next: cd {args.folder} && mlmcourse release")
    return 0
