"""Run the visible checks of an exercise notebook and print a per-question summary.

The notebook runs top to bottom in a fresh kernel (errors do not stop it); every test cell then
counts as passed when it raised nothing. The summary says how many visible checks passed, never
a score: the hidden tests used for grading check more cases.

Exit codes: 0 every visible test passes, 1 some fail, 2 the notebook cannot be read or run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from mlmcourse.grading.authoring.check import cell_results, execute, summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", type=Path, help="the exercise notebook (.ipynb) to check")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds allowed per cell (default 300)"
    )


def run(args: argparse.Namespace) -> int:
    path: Path = args.notebook
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except (OSError, ValueError, nbformat.ValidationError) as exc:
        print(f"mlmcourse check: cannot read {path} as a notebook: {exc}", file=sys.stderr)
        return 2
    results = cell_results(nb)
    if not results:
        print(f"mlmcourse check: {path} has no test cells; is it an exercise notebook?",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        results = cell_results(execute(nb, path.resolve().parent, args.timeout))
    except Exception as exc:  # the kernel died or could not start: nothing was checked
        print(f"mlmcourse check: could not run {path}: {type(exc).__name__}: {exc}",
              file=sys.stderr)  # fmt: skip
        return 2
    print(summary(results))
    return 0 if all(r.passed for r in results.values()) else 1
