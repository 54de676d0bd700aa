"""One grading run of honest and hostile submissions (``tests/hostile/corpus.py``).

Honest submissions get full marks; each hostile one gets the score its (wrong) answers deserve
or ``failed`` with a reason; nothing outside a submission's sandbox changes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from pathlib import Path

import pytest

from mlmcourse.grading.cli import grade as grade_cli

sys.path.insert(0, str(Path(__file__).parents[1] / "hostile"))
import corpus

ROOT = Path(__file__).resolve().parents[2]
HONEST = ["honest_1", "honest_2"]


def grade(course: Path, subs: Path, out: Path, timeout: float = 10) -> int:
    parser = argparse.ArgumentParser()
    grade_cli.add_arguments(parser)
    args = parser.parse_args(["softmax", str(subs), "--out", str(out), "--course", str(course),
                              "--jobs", "2", "--timeout", str(timeout)])
    return grade_cli.run(args)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def gradebook_scores(course: Path) -> dict[str, dict[str, float | None]]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {sub.student.id: {g.name: g.auto_score for g in sub.notebooks[0].grades}
                for sub in gb.assignment_submissions("softmax")}


@pytest.mark.slow
def test_hostile_submissions_cannot_change_grades_or_files(tmp_path: Path) -> None:
    course = corpus.write_course(tmp_path / "course")
    (course / "canary.txt").write_text("canary")
    subs, out = tmp_path / "subs", tmp_path / "out"
    paths = {"course": course, "out": out, "submissions": subs, "repo": ROOT}
    corpus.write_submissions(subs, HONEST, **paths)
    assert grade(course, subs, out) == 0
    honest_results = {s: (out / "results" / f"{s}.json").read_bytes() for s in HONEST}
    honest_scores = gradebook_scores(course)

    corpus.write_submissions(subs, list(corpus.EXPECTED), **paths)
    before = {"subs": digest(subs), "source": digest(course / "source"),
              "canary": (course / "canary.txt").read_text()}
    assert grade(course, subs, out) == 1

    rows = {r["student_id"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert set(rows) == set(corpus.EXPECTED)
    for name, (status, expected) in corpus.EXPECTED.items():
        row = rows[name]
        if status == "failed":
            assert row["status"] == "failed", (name, row)
            assert expected in row["reason"], (name, row)
        else:
            assert (row["status"], float(row["score"])) == (status, expected), (name, row)
    assert rows["memory_hog"]["reason"].startswith("memory limit 1.5 GB exceeded")
    # every failure has its kind, the column the report groups by
    kinds = {name: rows[name]["failure"] for name, (status, _) in corpus.EXPECTED.items()
             if status == "failed"}
    assert kinds == {**dict.fromkeys(["delete_test_cell", "changed_metadata", "changed_id",
                                      "duplicated_cell", "invalid_json", "misnamed"], "submission"),
                     "os_exit": "exited", "memory_hog": "memory", "infinite_loop": "timeout",
                     "huge_output": "output"}
    assert all(not r["failure"] for r in rows.values() if r["status"] != "failed")
    assert float(rows["os_exit"]["score"]) == 2.0  # points earned before the kernel died

    assert {"subs": digest(subs), "source": digest(course / "source"),
            "canary": (course / "canary.txt").read_text()} == before
    assert not Path("/tmp/mlmcourse-hostile-was-here").exists()
    assert not (ROOT / "pwned").exists()
    assert {s: (out / "results" / f"{s}.json").read_bytes() for s in HONEST} == honest_results
    scores = gradebook_scores(course)
    assert {s: scores[s] for s in HONEST} == honest_scores
    assert scores["always_equal"] == {"test_softmax": 0.0, "test_answer": 0.0, "why": 0.0}
    assert (course / "gradebook.db.bak").exists()

    for name in corpus.EXPECTED:
        page = (out / "feedback" / name / "softmax.html").read_text()
        assert "HIDDEN" not in page and "torch.allclose" not in page and "shifted" not in page
    injected = (out / "feedback" / "html_injection" / "softmax.html").read_text()
    assert "<script>" not in injected and "&lt;script&gt;" in injected
    autograded = json.loads((course / "autograded" / "honest_1" / "softmax" / "softmax.ipynb")
                            .read_text())
    assert any("BEGIN HIDDEN TESTS" in "".join(c["source"]) for c in autograded["cells"])
    for chart in ("score_histogram", "pass_rates", "answer_shares", "misconceptions"):
        assert (out / f"{chart}.svg").stat().st_size > 0
    assert "dropped-minus-sign" in (out / "report.html").read_text()
