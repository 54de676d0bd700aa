"""Attacks on the grader's trusted side and on the sandbox's walls, by cause (issue: the grader
holds against a hostile class). Each attack is a submission of the ``softmax`` assignment of
:mod:`corpus`, plus one naive test cell (``test_rows``) whose broadcasting a submission can
turn into a memory bomb. ``EXPECTED`` says what the grader must make of each.

Leak checks work by consequence: an attack that can read, find or reach what it must not sets
its multiple-choice answer to something wrong, so a leak costs it the answer's point.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import corpus

TEST_ROWS = '''probs = softmax(torch.zeros(1, 500))
gap = (probs - torch.full((1, 500), 1 / 500)).abs().max()
assert float(gap) < 1e-6, "each row is uniform when the logits are equal"'''

ANSWER_IF = '''
answer_valid = "B" if not found else "leak: " + repr(found)[:100]'''

READ_HOST = '''import glob, os
found = []
for pattern in ["{repo}/.git/HEAD", "{repo}/autograder/source/*/*.ipynb", "{course}/source/*/*",
                "{course}/gradebook.db", "{previous_out}/results/*.json", "{out}/results/*",
                "{submissions}/*/*", "/root/*", "/home/*", "/work/*", "/etc/shadow",
                "/var/log/*", "/run/*", "/sys/*", "/proc/1/environ"]:
    for path in glob.glob(pattern):
        try:
            with open(path, "rb") as handle:
                if handle.read(1) and not path.startswith("/proc/1/"):
                    found.append(path)
        except OSError:
            pass
try:
    import cases.variant_cases  # grader test data must not ship with the package
    found.append("variant cases")
except ImportError:
    pass''' + ANSWER_IF

MEMORY_SECRET = '''import ctypes, hashlib, re
found = []
needle = re.compile(rb"mlmcanary-[0-9a-f]{32}")
chunk_size = 16 << 20
with open("/proc/self/maps") as maps:
    regions = [line.split() for line in maps]
for fields in regions:
    start, end = (int(x, 16) for x in fields[0].split("-"))
    if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]",
                                                                          "[vvar_vclock]")):
        continue
    for offset in range(start, end, chunk_size):
        chunk = ctypes.string_at(offset, min(chunk_size + 64, end - offset))
        for hit in needle.findall(chunk):
            if hashlib.sha256(hit).hexdigest() == "{secret_sha}":
                found.append("the grader's secret")''' + ANSWER_IF

OTHER_PROCESSES = '''import os
found = []
for pid in os.listdir("/proc"):
    if pid.isdigit() and pid != str(os.getpid()):
        try:
            found.append(open(f"/proc/{pid}/cmdline", "rb").read()[:60])
        except OSError:
            pass
found = [c for c in found if c]''' + ANSWER_IF

WRITE_HOST = '''import os
for target in ["/run/lock/mlmhostile", "/var/tmp/mlmhostile", "/dev/shm/mlmhostile",
               "/tmp/mlmhostile", "/mlmhostile", "/usr/mlmhostile", "/etc/mlmhostile",
               "{course}/mlmhostile", "{out}/mlmhostile"]:
    try:
        with open(target, "w") as handle:
            handle.write("x" * 1000)
    except OSError:
        pass'''

KILL_EVERYTHING = '''import os, signal
try:
    os.kill(-1, signal.SIGKILL)
except OSError:
    pass
for pid in range(2, 400):
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass'''

BUSY_CHILDREN = '''import os
for _ in range(6):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass'''


def source_notebook() -> dict:
    nb = corpus.source_notebook()
    index = next(i for i, c in enumerate(nb["cells"])
                 if c["metadata"].get("nbgrader", {}).get("grade_id") == "test_softmax")
    nb["cells"].insert(index + 1, corpus._cell("code", TEST_ROWS, "test_rows", grade=True,
                                               locked=True, points=1))
    return nb


def _deeply_nested(good: dict, depth: int = 1000) -> bytes:
    text = json.dumps(good)
    nested = '{"a": ' * depth + "1" + "}" * depth
    return text.replace('"metadata": {', '"metadata": {"deep": ' + nested + ", ", 1).encode()


def attacks() -> dict[str, dict | bytes]:
    src = source_notebook()
    good = corpus.solved(src)
    with_answer = lambda text: corpus._with(good, "answer_cell", text)  # noqa: E731
    return {
        "honest_a": good,
        "honest_b": corpus._with(good, "why", "Subtracting the maximum keeps exp finite."),
        # 1. values that crash the trusted side after the sandbox
        "lone_surrogate": with_answer('answer_valid = "\\ud800"'),
        "deep_metadata": _deeply_nested(good),
        "mathtext_answer": with_answer('answer_valid = r"$\\frac{1}{$ \\mathrm{x"'),
        "surrogate_output": corpus._insert(good, "answer_cell", 'print("\\udcff" * 3)'),
        # 2. reading what the sandbox must not see
        "read_host": with_answer(READ_HOST),
        # 3. the grader's environment in the sandbox's memory
        "memory_secret": with_answer(MEMORY_SECRET),
        "memory_control": with_answer('planted = "{secret}"\n' + MEMORY_SECRET),
        # 4. taking others' time and memory
        "busy_children": corpus._insert(good, "answer_cell", BUSY_CHILDREN),
        "huge_reply": corpus._with(good, "softmax_impl",
                                   "def softmax(logits):\n    return [0] * 1_500_000"),
        "broadcast_bomb": corpus._with(good, "softmax_impl",
                                       "def softmax(logits):\n"
                                       "    return torch.zeros(4_000_000, 1)"),
        # 5. writes that outlive the sandbox
        "write_host": corpus._insert(good, "answer_cell", WRITE_HOST),
        # 6. signals to processes of the host
        "kill_everything": corpus._insert(good, "answer_cell", KILL_EVERYTHING),
        # an environment problem inside one submission: the instructor's setup cell breaks
        "broken_setup": corpus._insert(good, "setup", 'import sys\nsys.modules["numpy"] = None'),
        # 10. other processes' command lines
        "other_processes": with_answer(OTHER_PROCESSES),
        # 8. active content for formgrader (checked in the autograded notebook)
        "markdown_script": {**good, "cells": good["cells"] + [corpus._cell(
            "markdown", "<script>window.__pwned = 1</script><img src=x onerror=alert(1)> hi")]},
    }


# attack -> (status, score) or ("failed", a regular expression the reason must match)
EXPECTED: dict[str, tuple[str, object]] = {
    "honest_a": ("graded", 4.0),
    "honest_b": ("needs_manual", 4.0),
    "lone_surrogate": ("graded", 3.0),
    "deep_metadata": ("failed", "nested deeper"),
    "mathtext_answer": ("graded", 3.0),
    "surrogate_output": ("graded", 4.0),
    "read_host": ("graded", 4.0),
    "memory_secret": ("graded", 4.0),
    "memory_control": ("graded", 3.0),  # the scan finds the marker where it is
    "busy_children": ("graded", 4.0),
    "huge_reply": ("failed", "refuses|timeout"),  # refused at its size, or out of time encoding
    "broadcast_bomb": ("graded", 1.0),
    "write_host": ("graded", 4.0),
    "kill_everything": ("graded", 4.0),
    "other_processes": ("graded", 4.0),
    "broken_setup": ("failed", "the setup cell setup failed in this submission .ModuleNotFound"),
    "markdown_script": ("graded", 4.0),
}


def write_course(course: Path) -> Path:
    path = course / "source" / "softmax" / "softmax.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(source_notebook(), indent=1) + "\n")
    return course


def write_submissions(folder: Path, names: list[str], **values: str) -> Path:
    """``folder/<attack>/softmax.ipynb`` for each name, ``{key}`` placeholders filled in."""
    everything = attacks()
    for name in names:
        nb = everything[name]
        data = nb if isinstance(nb, bytes) else json.dumps(copy.deepcopy(nb)).encode()
        for key, value in values.items():
            data = data.replace(("{" + key + "}").encode(), str(value).encode())
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "softmax.ipynb").write_bytes(data)
    return folder
