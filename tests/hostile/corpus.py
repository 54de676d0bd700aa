"""A tiny nbgrader assignment (``softmax``) and submissions that attack the grader.

The tests write them into a temporary folder (:func:`write_course`, :func:`write_submissions`):
one notebook per attack class, next to honest ones. ``EXPECTED`` says what the grader must
make of each: the score an honest (or wrong) answer deserves, or ``failed`` with a reason
containing the given words.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

MAX_SCORE = 4.0


def _cell(cell_type: str, source: str, grade_id: str | None = None, *, grade: bool = False,
          solution: bool = False, locked: bool = False, points: float = 0) -> dict:
    extra_id = "extra-" + hashlib.sha256(source.encode()).hexdigest()[:8]
    cell: dict = {"cell_type": cell_type, "id": grade_id or extra_id,
                  "metadata": {}, "source": source}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    if grade_id is not None:
        meta = {"grade_id": grade_id, "grade": grade, "solution": solution, "locked": locked,
                "schema_version": 3}
        if grade:
            meta["points"] = points
        cell["metadata"]["nbgrader"] = meta
    return cell


SETUP = ("import numpy as np\nimport torch\n"
         "from mlmcourse.checks import Misconception")
SOFTMAX = '''def softmax(logits):
    """Probabilities over the last axis."""
    ### BEGIN SOLUTION
    shifted = logits - logits.max(dim=-1, keepdim=True).values
    exps = shifted.exp()
    return exps / exps.sum(dim=-1, keepdim=True)
    ### END SOLUTION'''
TEST_SOFTMAX = '''probs = softmax(torch.tensor([1.0, 2.0, 3.0]))
assert probs.shape == (3,), "softmax keeps the shape"
### BEGIN HIDDEN TESTS
logits = torch.tensor([[1.0, 2.0, 0.5], [3.0, -1.0, 0.0]])
assert torch.allclose(softmax(logits), torch.softmax(logits, dim=-1))
### END HIDDEN TESTS'''
ANSWER = '''answer_valid = ""  # one of "A", "B", "C", "D"
### BEGIN SOLUTION
answer_valid = "B"
### END SOLUTION'''
TEST_ANSWER = '''assert answer_valid in ("A", "B", "C", "D"), "answer with one letter"
### BEGIN HIDDEN TESTS
if answer_valid == "A":
    raise Misconception("dropped-minus-sign")
assert answer_valid == "B"
### END HIDDEN TESTS'''


def source_notebook() -> dict:
    """The instructor's notebook: setup, code + test, multiple choice + test, written answer."""
    cells = [
        _cell("markdown", "# Softmax\nWrite `softmax`.", "intro", locked=True),
        _cell("code", SETUP, "setup", locked=True),
        _cell("code", SOFTMAX, "softmax_impl", solution=True),
        _cell("code", TEST_SOFTMAX, "test_softmax", grade=True, locked=True, points=2),
        _cell("markdown", "Which output is a valid distribution? A, B, C or D.", "q", locked=True),
        _cell("code", ANSWER, "answer_cell", solution=True),
        _cell("code", TEST_ANSWER, "test_answer", grade=True, locked=True, points=1),
        _cell("markdown", "Why does softmax subtract the maximum?", "why", grade=True,
              solution=True, points=1),
    ]
    return {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name":
            "Python 3", "language": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def release(nb: dict) -> dict:
    """The student version: solutions stubbed, hidden tests removed (as nbgrader does)."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        text = cell["source"]
        text = re.sub(r"[ \t]*### BEGIN SOLUTION.*?### END SOLUTION", "    # YOUR CODE HERE\n"
                      "    raise NotImplementedError()" if "def " in text else "# YOUR CODE HERE",
                      text, flags=re.S)
        text = re.sub(r"\n?### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", text, flags=re.S)
        meta = cell["metadata"].get("nbgrader", {})
        if cell["cell_type"] == "markdown" and meta.get("solution"):
            text = "YOUR ANSWER HERE"
        cell["source"] = text
    return nb


def solved(nb: dict) -> dict:
    """An honest, correct submission: the source with the solution markers removed."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        text = re.sub(r"\n?### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS", "", cell["source"],
                      flags=re.S)
        cell["source"] = re.sub(r"[ \t]*### (BEGIN|END) SOLUTION\n?", "", text)
        if cell["cell_type"] == "markdown" and cell["metadata"].get("nbgrader", {}).get("solution"):
            cell["source"] = "YOUR ANSWER HERE"
    return nb


def _by_id(nb: dict, grade_id: str) -> dict:
    return next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id")
                == grade_id)


def _with(nb: dict, grade_id: str, text: str) -> dict:
    nb = copy.deepcopy(nb)
    _by_id(nb, grade_id)["source"] = text
    return nb


def _insert(nb: dict, before: str, text: str) -> dict:
    nb = copy.deepcopy(nb)
    index = nb["cells"].index(_by_id(nb, before))
    nb["cells"].insert(index, _cell("code", text))
    return nb


SECRET_READER = '''import glob, os
leaks = []
for pattern in ["../../../gradebook.db", "/root/*", "{course}/gradebook.db", "{course}/source/*/*",
                "{out}/results/*", "{submissions}/*/*"]:
    for path in glob.glob(pattern):
        try:
            leaks.append(open(path, "rb").read(100))
        except OSError:
            pass
answer_valid = "B" if not leaks else "leaked"'''


def attacks(src: dict) -> dict[str, dict | bytes]:
    """One submission per attack class, built from the solution or the release."""
    good = solved(src)
    rel = release(src)
    return {
        "honest_1": good,
        "honest_2": _with(good, "why", "Subtracting the maximum avoids overflow in exp."),
        "blank_release": rel,
        "edit_test_cells": _with(_with(rel, "test_softmax", "pass"), "test_answer", "pass"),
        "delete_test_cell": {**rel, "cells": [c for c in rel["cells"] if c["metadata"].get(
            "nbgrader", {}).get("grade_id") != "test_softmax"]},
        "changed_metadata": _retag(rel, "test_softmax", grade=False),
        "changed_id": _retag(rel, "test_answer", grade_id="test_answer_renamed"),
        "duplicated_cell": {**rel, "cells": rel["cells"] + [copy.deepcopy(_by_id(rel,
                                                                                 "test_answer"))]},
        "always_equal": _with(rel, "answer_cell", "class AlwaysEqual:\n    def __eq__(self, o):\n"
                              "        return True\n    __hash__ = None\n"
                              "answer_valid = AlwaysEqual()"),
        "str_subclass": _with(rel, "answer_cell", "class S(str):\n    def __eq__(self, o):\n"
                              "        return True\nanswer_valid = S('A')"),
        "redefine_builtins": _with(rel, "answer_cell", "import builtins\nbuiltins.AssertionError = "
                                   "type('Nope', (Exception,), {})\n"
                                   "builtins.isinstance = lambda *a: True\n"
                                   "answer_valid = 'A'"),
        "tensor_subclass": _with(rel, "softmax_impl", "class T(torch.Tensor):\n"
                                 "    def __eq__(self, o):\n        return True\n"
                                 "def softmax(logits):\n    return T(logits)"),
        "ipython_hooks": _with(rel, "answer_cell", "ip = get_ipython()\n"
                               "ip.input_transformers_cleanup.append(lambda lines: ['pass\\n'])\n"
                               "ip.set_custom_exc((BaseException,), lambda *a, **k: None)\n"
                               "ip.events.register('post_run_cell', lambda r: None)\n"
                               "import ast\nclass Drop(ast.NodeTransformer):\n"
                               "    def visit_Assert(self, node):\n        return None\n"
                               "ip.ast_transformers.append(Drop())\nanswer_valid = 'A'"),
        "exit_call": _insert(good, "answer_cell", "exit()\nquit()"),
        "os_exit": _insert(good, "answer_cell", "import os\nos._exit(3)"),
        "kill_parent": _insert(good, "answer_cell", "import os, signal\n"
                               "os.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)"),
        "read_secrets": _with(good, "answer_cell", SECRET_READER),
        "write_elsewhere": _insert(good, "answer_cell", WRITER),
        "fork_bomb": _insert(good, "answer_cell", "import os\nfor _ in range(10000):\n"
                             "    try:\n        os.fork()\n    except OSError:\n        break"),
        "memory_hog": _insert(good, "answer_cell", "hog = bytearray(8 * 1024**3)"),
        "infinite_loop": _insert(good, "answer_cell", "while True:\n    pass"),
        "huge_output": _insert(good, "answer_cell", "for i in range(10**6):\n    print('x' * 100)"),
        "invalid_json": b'{"cells": [',
        "html_injection": _with(good, "softmax_impl", "def softmax(logits):\n"
                                "    raise ValueError('<script>alert(1)</script>')"),
        "misnamed": good,
    }


WRITER = '''import os
for target in ["/tmp/mlmcourse-hostile-was-here", "{course}/source/softmax/softmax.ipynb",
               "{course}/gradebook.db", "{repo}/pwned", "{out}/grades.csv"]:
    try:
        with open(target, "w") as handle:
            handle.write("pwned")
    except OSError:
        pass'''


def _retag(nb: dict, cell_id: str, **changes: object) -> dict:
    nb = copy.deepcopy(nb)
    _by_id(nb, cell_id)["metadata"]["nbgrader"].update(changes)
    return nb


# attack -> ("score", expected score) or ("failed", words the reason must contain)
EXPECTED: dict[str, tuple[str, object]] = {
    "honest_1": ("graded", 3.0),
    "honest_2": ("needs_manual", 3.0),
    "blank_release": ("graded", 0.0),
    "edit_test_cells": ("graded", 0.0),
    "delete_test_cell": ("failed", "missing"),
    "changed_metadata": ("failed", "metadata"),
    "changed_id": ("failed", "id"),
    "duplicated_cell": ("failed", "twice"),
    "always_equal": ("graded", 0.0),
    "str_subclass": ("graded", 0.0),
    "redefine_builtins": ("graded", 0.0),
    "tensor_subclass": ("graded", 0.0),
    "ipython_hooks": ("graded", 0.0),
    "exit_call": ("graded", 3.0),
    "os_exit": ("failed", "exited"),
    "kill_parent": ("graded", 3.0),
    "read_secrets": ("graded", 3.0),
    "write_elsewhere": ("graded", 3.0),
    "fork_bomb": ("graded", 3.0),
    "memory_hog": ("failed", "memory limit"),
    "infinite_loop": ("failed", "timeout"),
    "huge_output": ("failed", "output limit"),
    "invalid_json": ("failed", "JSON"),
    "html_injection": ("graded", 1.0),
    "misnamed": ("failed", "misnamed"),
}


def write_course(course: Path) -> Path:
    """Write the source notebook into ``course/source/softmax/``; returns the course folder."""
    path = course / "source" / "softmax" / "softmax.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(source_notebook(), indent=1) + "\n")
    return course


def write_submissions(folder: Path, names: list[str], **paths: Path) -> Path:
    """Write ``folder/<attack>/softmax.ipynb`` for each name; ``{course}``, ``{out}`` and
    ``{submissions}`` in the attack code become the given paths."""
    everything = attacks(source_notebook())
    for name in names:
        nb = everything[name]
        data = nb if isinstance(nb, bytes) else json.dumps(nb, indent=1).encode()
        for key, value in paths.items():
            data = data.replace(("{" + key + "}").encode(), str(value).encode())
        (folder / name).mkdir(parents=True, exist_ok=True)
        filename = "softmax (1).ipynb" if name == "misnamed" else "softmax.ipynb"
        (folder / name / filename).write_bytes(data)
    return folder
