"""Every knob of a grading run and its default, in one place.

:class:`Settings` is what the instructor asks for (``mlmcourse grade``'s arguments); the
constants below are the engine's own choices. What a sandbox may see and use is not here but
in :mod:`~mlmcourse.grading.sandbox.policy`, built from these settings.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_TIMEOUT = 120.0
"""Seconds of wall-clock time per notebook (every process of the submission included)."""
DEFAULT_JOBS = os.cpu_count() or 1
"""Submissions graded in parallel: one job slot (a warm worker and its zygote) per CPU."""
CPU_SECONDS_MARGIN = 10
"""CPU seconds a sandbox may use beyond its wall-clock timeout (its processes together are
limited to one CPU, so this only ends a run that escaped the timeout)."""
QUEUED = 2
"""Tasks a worker holds at once: the one it grades and the next."""
BATCH = 64
"""Most results stored in one gradebook transaction."""
WORKER_REPLACEMENTS_PER_JOB = 4
"""How many times the workers of a run may die and be replaced, per job slot (plus as many
again): past that, the remaining submissions are ``failed`` rather than retried forever."""


@dataclass(frozen=True)
class Settings:
    """What the instructor asked for: grade ``assignment`` of the course folder ``course``
    from ``submissions`` (a folder or an LMS zip) into ``out``, ``jobs`` at a time, each
    notebook within ``timeout`` seconds, sandboxed unless ``sandbox`` is false, the students
    named as ``roster`` maps their LMS ids (when given)."""

    assignment: str
    submissions: Path
    out: Path
    course: Path
    jobs: int = DEFAULT_JOBS
    timeout: float = DEFAULT_TIMEOUT
    sandbox: bool = True
    roster: dict[str, str] | None = None
    """LMS id -> student id (see :func:`~mlmcourse.grading.inputs.lms.read_roster`)."""
    cluster: str | None = None
    """The Dask scheduler (``tls://HOST:PORT``) whose workers grade, sandboxed there; ``None``
    grades on this machine."""
    certs: Path | None = None
    """The folder of the cluster's certificates (``mlmcourse cluster certs``)."""
    insecure_loopback: bool = False
    """Accept a plain ``tcp://`` cluster on a loopback address (for tests: see
    :mod:`~mlmcourse.grading.cluster.address`)."""
    explain: Callable[[str], str] | None = None
    """The course's sentence for a misconception code, for feedback and the report
    (``mlmcourse grade`` passes :func:`mlmcourse.checks.explain`); the engine holds none."""
