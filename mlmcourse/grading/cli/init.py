"""Create an nbgrader course folder: nbgrader_config.py (paths computed from its own location, the
gradebook inside the folder), source/<assignment>/<assignment>.ipynb for every exercise of the
course, and a short README. Then, from that folder: mlmcourse release.

The folder holds the solutions and hidden tests, so only your account can read it; with --group
GROUP, that group (teaching assistants) can read it too. The exchange where students fetch and
submit is the hub's (its global nbgrader configuration), or --exchange DIR, a folder outside the
course that every student can reach.

With --seed SECRET (or --seed-file FILE, whose first line is the secret: it then never shows on
a command line or in the process list), each exercise's numbers and the order of its
multiple-choice options are drawn from the secret, so the class's answers differ from the
published ones; the same secret gives the same course again. The drawn values are written to
parameters.json, the seed is not.

Exit codes: 0 created, 2 the folder is not empty, the course id, group or exchange is unusable
or the seed file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlmcourse.grading.authoring.template import PARAMETERS_NAME, InitError, create_course
from mlmcourse.grading.authoring.variants import DEFAULT_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mlmcourse init``."""
    parser.add_argument("folder", type=Path, metavar="DIR", help="the course folder to create")
    parser.add_argument("--course-id", default=None, metavar="ID",
                        help="nbgrader's course id (default: the folder's name)")
    parser.add_argument("--group", default=None, metavar="GROUP",
                        help="a Unix group that may read the course too (default: only you)")
    parser.add_argument("--exchange", type=Path, default=None, metavar="DIR",
                        help="the nbgrader exchange, outside the course (default: the one of the "
                        "hub's global nbgrader configuration)")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("--seed", default=None, metavar="SECRET",
                        help="a secret phrase to draw this class's numbers and option orders "
                        f"from (default: {DEFAULT_SEED!r}, the published exercises)")
    secret.add_argument("--seed-file", type=Path, default=None, metavar="FILE",
                        help="read the secret phrase from the first line of FILE instead")


def _seed(args: argparse.Namespace) -> str:
    if args.seed_file is None:
        return DEFAULT_SEED if args.seed is None else args.seed
    try:
        lines = args.seed_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InitError(f"cannot read the seed file {args.seed_file}: {exc}") from None
    return lines[0].strip() if lines else ""


def run(args: argparse.Namespace) -> int:
    """Create the course; returns the exit code."""
    try:
        seed = _seed(args)
        names = create_course(args.folder, args.course_id, seed, args.group, args.exchange)
    except InitError as exc:
        print(f"mlmcourse init: {exc}", file=sys.stderr)
        return 2
    drawn = ("the published numbers and option orders" if seed == DEFAULT_SEED else
             "numbers and option orders drawn from your seed")
    readers = "you" if args.group is None else f"you and the group {args.group}"
    exchange = (f"the exchange is {args.exchange.resolve()}" if args.exchange else
                "the exchange is the one of nbgrader's global configuration (a hub's), else "
                "/srv/nbgrader/exchange; without a hub, create the course with --exchange DIR")
    print(f"created the course {args.folder.resolve()} with {len(names)} assignments: "
          f"{', '.join(names)} ({drawn}, listed in {PARAMETERS_NAME}); only {readers} can "
          f"read it; {exchange}\nnext: cd {args.folder} && mlmcourse release")
    return 0
