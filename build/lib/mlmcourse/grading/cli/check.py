"""Run the visible tests of an exercise notebook and print a per-question summary.

The notebook runs top to bottom in a fresh kernel (errors do not stop it); every test cell then
counts as passed when it raised nothing. The hidden tests used for grading check more.

Exit codes: 0 every visible test passes, 1 some fail, 2 the notebook cannot be read or run.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbformat import NotebookNode

_MISCONCEPTION = re.compile(r"^\[([a-z0-9-]+)\] ")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class CellResult:
    """The outcome of one test cell: ``error`` is ``""`` when it passed."""

    grade_id: str
    points: float
    error: str = ""

    @property
    def passed(self) -> bool:
        return not self.error

    @property
    def misconception(self) -> str | None:
        """The misconception code the failure names, if any."""
        match = _MISCONCEPTION.match(self.error.split(": ", 1)[-1])
        return match.group(1) if match else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", type=Path, help="the exercise notebook (.ipynb) to check")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds allowed per cell (default 300)"
    )


def execute(nb: NotebookNode, cwd: Path, timeout: float = 300) -> NotebookNode:
    """Run ``nb`` in a fresh kernel started in ``cwd``, letting every cell run after errors."""
    client = NotebookClient(
        nb,
        timeout=int(timeout),
        allow_errors=True,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return nb


def cell_results(nb: NotebookNode) -> list[CellResult]:
    """The outcome of every test cell of an executed notebook, in notebook order."""
    results = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        message = ""
        if errors:
            message = _ANSI.sub("", f"{errors[0]['ename']}: {errors[0]['evalue']}").strip()
            message = message or "the cell raised an error"
        elif not cell.get("execution_count"):
            message = "the cell did not run"
        results.append(CellResult(meta.get("grade_id", "?"), float(meta.get("points", 0)), message))
    return results


def summary(results: list[CellResult]) -> str:
    """A readable per-question report of ``results``."""
    lines = []
    for r in results:
        status = "passed" if r.passed else "FAILED"
        lines.append(f"{status:6}  {r.grade_id}  ({r.points:g} point{'s' * (r.points != 1)})")
        if not r.passed:
            lines.append(f"        {r.error}")
    passed = sum(r.passed for r in results)
    lines.append(
        f"{passed} of {len(results)} visible tests pass "
        f"({sum(r.points for r in results if r.passed):g} of {sum(r.points for r in results):g}"
        " points). Grading also runs hidden tests, and written answers are graded by hand."
    )
    return "\n".join(lines)


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
    return 0 if all(r.passed for r in results) else 1
