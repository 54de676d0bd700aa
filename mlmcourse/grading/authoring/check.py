"""The visible checks of an exercise notebook: run it top to bottom in a fresh kernel (errors do
not stop it); every test cell then counts as passed when it raised nothing. What
``mlmcourse check`` prints, and what the tests use to try alternative answers."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nbclient import NotebookClient
from nbformat import NotebookNode

from mlmcourse.grading.inputs.notebook import parse_cells

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


def execute(nb: NotebookNode, cwd: Path, timeout: float = 300) -> NotebookNode:
    """Run ``nb`` in a fresh kernel started in ``cwd``, letting every cell run after errors.

    The kernel talks to this process over Unix sockets in a private temporary folder, not over
    TCP (which any local user could connect to, and which the kernel warns about)."""
    from jupyter_client.manager import KernelManager

    with tempfile.TemporaryDirectory(prefix="mlmcourse-check-") as sockets:
        kernel = nb.metadata.get("kernelspec", {}).get("name", "python3")
        manager = KernelManager(kernel_name=kernel, transport="ipc",
                                ip=str(Path(sockets) / "kernel"))
        client = NotebookClient(nb, km=manager, timeout=int(timeout), allow_errors=True,
                                kernel_name=kernel, resources={"metadata": {"path": str(cwd)}})
        try:
            client.execute()
        finally:
            if manager.has_kernel:
                manager.shutdown_kernel(now=False)
    return nb


def cell_results(nb: NotebookNode) -> list[CellResult]:
    """The outcome of every test cell of an executed notebook, in notebook order."""
    results = []
    for parsed, cell in zip(parse_cells(nb), nb.cells, strict=True):
        if not parsed.is_test:
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        message = ""
        if errors:
            message = _ANSI.sub("", f"{errors[0]['ename']}: {errors[0]['evalue']}").strip()
            message = message or "the cell raised an error"
        elif not cell.get("execution_count"):
            message = "the cell did not run"
        results.append(CellResult(parsed.grade_id or "?", parsed.points, message))
    return results


def summary(results: list[CellResult]) -> str:
    """A readable per-question report of ``results``: which visible checks pass, and why the
    others fail. Never a score: the grade also depends on hidden tests and written answers."""
    lines = []
    for r in results:
        lines.append(f"{'passed' if r.passed else 'FAILED':6}  {r.grade_id}")
        if not r.passed:
            lines.append(f"        {r.error}")
    passed = sum(r.passed for r in results)
    lines.append(
        f"visible checks: {passed} of {len(results)} passed; the grade also uses hidden tests"
        " (and written answers are graded by hand)."
    )
    return "\n".join(lines)
