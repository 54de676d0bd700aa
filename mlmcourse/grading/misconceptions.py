"""The named misconceptions a wrong answer or a common coding mistake maps to.

Test cells of the exercises raise :class:`Misconception` with a catalogue id; the grader reads
``exc.code`` (or, in plain nbgrader, the ``[code]`` prefix of the message) to count which
misconceptions a class holds. Feedback sentences explain the mistake without giving the answer.
"""

from __future__ import annotations

# id -> feedback sentence (filled in with the exercises)
CATALOGUE: dict[str, str] = {
    "dropped-minus-sign": (
        "The loss is the negative log-probability of the true token: without the minus sign it is "
        "never positive and minimising it would push the true token's probability down."
    ),
}


class Misconception(AssertionError):
    """A test failure caused by a named misconception; ``str(exc)`` is ``"[code] sentence"``."""

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in CATALOGUE:
            raise KeyError(f"unknown misconception {code!r}; add it to CATALOGUE")
        self.code = code
        message = f"[{code}] {CATALOGUE[code]}"
        super().__init__(f"{message} {detail}".strip())
