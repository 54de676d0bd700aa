"""Generate the student versions of the exercises into autograder/release/.

Runs nbgrader's generate_assignment (solutions replaced by stubs, hidden tests removed, cells
locked and checksummed) for the named assignments, or for all of them, overwriting any earlier
release. Exit codes: 0 released, 1 nbgrader failed, 2 unknown assignment.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mlmcourse.grading.variants import ASSIGNMENTS, AUTOGRADER, release_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "assignments",
        nargs="*",
        metavar="ASSIGNMENT",
        help=f"assignments to release (default: all of {', '.join(ASSIGNMENTS)})",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")


def release(assignment: str, root: Path = AUTOGRADER) -> dict:
    """Run ``nbgrader generate_assignment`` for one assignment; nbgrader's result dict."""
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    # nbgrader runs the `alembic` script of its own environment when it creates the gradebook
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    # nbgrader checks the exchange (used by JupyterHub fetch/submit) exists when it starts
    Path(config.Exchange.root).mkdir(parents=True, exist_ok=True)
    api = NbGraderAPI(config=config)
    api.log.setLevel(logging.ERROR)
    return api.generate_assignment(assignment, force=True)


def run(args: argparse.Namespace) -> int:
    unknown = [a for a in args.assignments if a not in ASSIGNMENTS]
    if unknown:
        print(
            f"mlmcourse release: unknown assignment {', '.join(unknown)}; "
            f"the assignments are: {', '.join(ASSIGNMENTS)}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for assignment in args.assignments or ASSIGNMENTS:
        result = release(assignment)
        if not result.get("success"):
            print(f"mlmcourse release: {assignment} failed:\n{result.get('log', '')}",
                  file=sys.stderr)  # fmt: skip
            status = 1
        elif not args.quiet:
            print(f"released {assignment} -> {release_path(assignment)}")
    return status
