"""The visible checks of an exercise notebook: run it top to bottom in a fresh kernel (errors do
not stop it); every test cell then counts as passed when it raised nothing. What
``mlmcourse check`` prints, and what the tests use to try alternative answers."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from nbclient import NotebookClient
from nbformat import NotebookNode

from mlmcourse.checks import misconception_code
from mlmcourse.grading.inputs.notebook import parse_cells
from mlmcourse.grading.model import CellResult

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


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


def cell_results(nb: NotebookNode) -> dict[str, CellResult]:
    """The outcome of every test cell of an executed notebook, by ``grade_id`` in notebook
    order: the grader's own record, with the points a passing cell would earn."""
    results = {}
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
        passed = not message
        results[parsed.grade_id or "?"] = CellResult(
            "test", parsed.points, parsed.points if passed else 0.0, passed, message,
            misconception_code(message))
    return results


def summary(results: dict[str, CellResult]) -> str:
    """A readable per-question report of ``results``: which visible checks pass, and why the
    others fail. Never a score: the grade also depends on hidden tests and written answers."""
    lines = []
    for grade_id, r in results.items():
        lines.append(f"{'passed' if r.passed else 'FAILED':6}  {grade_id}")
        if not r.passed:
            lines.append(f"        {r.message}")
    passed = sum(bool(r.passed) for r in results.values())
    lines.append(
        f"visible checks: {passed} of {len(results)} passed; the grade also uses hidden tests"
        " (and written answers are graded by hand)."
    )
    return "\n".join(lines)
