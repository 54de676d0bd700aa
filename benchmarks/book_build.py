"""Time the book build: a clean build, a no-change rebuild, and each lesson notebook on its own.

    .venv/bin/python benchmarks/book_build.py [--json benchmarks/out/book_build.json]

(a) clean build: the repository is copied to a temporary directory (without .venv, .git, _build)
    and built with `jupyter-book build -W --keep-going .`, so every notebook is executed;
(b) rebuild: the same command again with nothing changed (the execution cache is warm);
(c) the sum of each lesson notebook's own execution time, run with nbclient in a fresh kernel.

Prints the three times, the ratio clean / sum (the build's overhead over bare execution) and the
ratio rebuild / clean. Targets: clean < 180 s, rebuild < 15 s, every notebook < 30 s.
This is a benchmark, not a test: numbers are noisy on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {
    ".venv",
    ".git",
    "_build",
    "node_modules",
    "artifacts",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "__pycache__",
    ".ipynb_checkpoints",
}
TARGETS = {"clean_s": 180.0, "rebuild_s": 15.0, "notebook_s": 30.0}


def _jupyter_book() -> str:
    beside_python = Path(sys.executable).parent / "jupyter-book"
    return str(beside_python) if beside_python.exists() else "jupyter-book"


def _build(book: Path) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [_jupyter_book(), "build", "-W", "--keep-going", "."],
        cwd=book,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"build failed in {book}:\n{(result.stdout + result.stderr)[-4000:]}")
    return seconds


def _execute(notebook: Path) -> float:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="mlmcourse-book-") as tmp:
        book = Path(tmp) / "mlmcourse"
        shutil.copytree(ROOT, book, ignore=lambda _d, names: [n for n in names if n in SKIP])
        print(f"clean build of a fresh copy in {book} ...", flush=True)
        clean = _build(book)
        print(f"  clean build      {clean:7.1f} s", flush=True)
        rebuild = _build(book)
        print(f"  no-change rebuild {rebuild:6.1f} s", flush=True)

    per_notebook = {}
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        per_notebook[notebook.name] = _execute(notebook)
        print(f"  {notebook.name:45s} {per_notebook[notebook.name]:6.1f} s", flush=True)
    total = sum(per_notebook.values())

    results = {
        "clean_s": round(clean, 2),
        "rebuild_s": round(rebuild, 2),
        "notebooks_sum_s": round(total, 2),
        "notebooks_s": {k: round(v, 2) for k, v in per_notebook.items()},
        "clean_over_sum": round(clean / total, 2) if total else None,
        "rebuild_over_clean": round(rebuild / clean, 3),
    }
    slow = [k for k, v in per_notebook.items() if v >= TARGETS["notebook_s"]]
    print()
    print(f"clean build          {clean:7.1f} s  (target < {TARGETS['clean_s']:.0f} s)")
    print(f"no-change rebuild    {rebuild:7.1f} s  (target < {TARGETS['rebuild_s']:.0f} s)")
    print(
        f"sum of notebooks     {total:7.1f} s  (slowest {max(per_notebook.values()):.1f} s, "
        f"target < {TARGETS['notebook_s']:.0f} s each)"
    )
    print(f"clean / sum          {results['clean_over_sum']}")
    print(f"rebuild / clean      {results['rebuild_over_clean']}")
    met = clean < TARGETS["clean_s"] and rebuild < TARGETS["rebuild_s"] and not slow
    print("targets met" if met else f"targets missed (slow notebooks: {slow or 'none'})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
