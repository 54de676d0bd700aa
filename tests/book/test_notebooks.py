"""The lesson notebooks: committed without outputs; each runs top to bottom in a fresh kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    return [c["file"] for part in toc["parts"] for c in part["chapters"]]


def _toc_lessons() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    lessons = next(p for p in toc["parts"] if p["caption"] == "Lessons")
    return [c["file"] for c in lessons["chapters"]]


LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
APPENDIX_PAGES = [NOTEBOOKS / "encoder_in_one_page.ipynb"]  # notebooks of the book's Appendix
EXERCISE_SOURCES = sorted((ROOT / "autograder" / "source").glob("**/*.ipynb"))
COMMITTED = [
    p for p in LESSONS + APPENDIX_PAGES + EXERCISE_SOURCES if ".ipynb_checkpoints" not in p.parts
]


def test_every_lesson_in_the_toc_is_a_notebook() -> None:
    on_disk = {p.relative_to(ROOT).with_suffix("").as_posix() for p in LESSONS}
    assert set(_toc_lessons()) == on_disk, "the Lessons part of _toc.yml and notebooks/ disagree"
    assert len(LESSONS) == 9
    toc_files = _toc_files()
    for page in APPENDIX_PAGES:
        assert page.relative_to(ROOT).with_suffix("").as_posix() in toc_files, page.name


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: code cells {dirty} have outputs or execution counts; clear them "
        "(Jupyter: Edit > Clear Outputs of All Cells, or "
        "`jupyter nbconvert --clear-output --inplace NOTEBOOK`) before committing"
    )


def _run_in_jupyterlab(lesson: Path, request: pytest.FixtureRequest) -> bool:
    """Whether this session runs the lesson in tests/book/test_jupyterlab.py, which checks the same
    and more (Run All succeeds, every code cell ran, no error and no stderr output): its test of
    the lesson is selected, and Chromium and JupyterLab are there to run it."""
    import importlib.util

    from conftest import CHROMIUM

    test = f"test_jupyterlab.py::test_lesson_runs_and_reads_right_in_jupyterlab[{lesson.name}]"
    return (
        CHROMIUM.exists()
        and all(importlib.util.find_spec(m) for m in ("jupyterlab", "playwright"))
        and any(item.nodeid.endswith(test) for item in request.session.items)
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", LESSONS + APPENDIX_PAGES, ids=lambda p: p.name)
def test_lesson_notebook_executes_without_error(path: Path, request: pytest.FixtureRequest) -> None:
    from nbclient import NotebookClient

    if _run_in_jupyterlab(path, request):  # each lesson's kernel run once per session
        pytest.skip("tests/book/test_jupyterlab.py runs this lesson in a kernel and checks its "
                    "outputs")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError with the cell and traceback on failure
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors


# MyST-only syntax that JupyterLab shows raw; lessons use plain Markdown, <details> and
# IPython.display.Markdown instead (tests/book/test_jupyterlab.py checks the rendered result).
MYST_ONLY = ("{glue", ":::{", "```{", "{doc}`", "{ref}`", "{cite", "{numref}`", "{term}`")


@pytest.mark.parametrize("path", LESSONS + APPENDIX_PAGES, ids=lambda p: p.name)
def test_lesson_markdown_reads_the_same_in_jupyterlab(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    found = [syntax for syntax in MYST_ONLY if syntax in markdown]
    assert not found, f"{path.name}: MyST-only syntax JupyterLab would show raw: {found}"
    assert not any(line.startswith(": ") for line in markdown.splitlines()), (
        f"{path.name}: a MyST definition list (JupyterLab shows it as plain text)"
    )
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "myst_nb" not in code, f"{path.name}: glue works only in the book; use Markdown(...)"
    for cell in nb.cells:
        if cell.cell_type == "code" and "Markdown(" in cell.source:
            assert "remove-input" in cell.metadata.get("tags", []), (
                f"{path.name}: a cell that renders prose must be tagged remove-input"
            )
            assert cell.metadata.get("jupyter", {}).get("source_hidden"), (
                f"{path.name}: a cell that renders prose must hide its code in JupyterLab"
            )
    text = markdown + code
    if "Check yourself" in text:
        assert text.count("<summary>Answer</summary>") >= 3, f"{path.name}: answers not folded"


PIPELINE_HIGHLIGHTS = {  # the stages of plots.PIPELINE_STAGES each lesson is about
    "02_corrupting_the_input.ipynb": ["x", "x_bar"],
    "03_predicted_distribution.ipynb": ["h", "W", "softmax"],
    "04_true_token_and_cross_entropy.ipynb": ["softmax", "loss"],
    "05_many_masks_one_objective.ipynb": ["loss"],
    "06_training_tiny_mlm.ipynb": ["theta", "W"],
}


@pytest.mark.parametrize("name", sorted(PIPELINE_HIGHLIGHTS))
def test_lessons_2_to_6_open_with_the_pipeline_and_their_stage_coloured(name: str) -> None:
    import ast

    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    calls = [
        node
        for source in code
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "plot_pipeline"
    ]
    assert len(calls) == 1, f"{name}: the pipeline figure should be drawn once"
    (keyword,) = [k for k in calls[0].keywords if k.arg == "highlight"]
    assert ast.literal_eval(keyword.value) == PIPELINE_HIGHLIGHTS[name]
    # it comes right after the set-up cell, before the lesson's first section
    assert "plot_pipeline(" in code[1], f"{name}: the figure is not the lesson's first figure"
