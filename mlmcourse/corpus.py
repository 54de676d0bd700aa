"""The course corpus: a few thousand short, lowercase English sentences shipped with the package.

The sentences were generated from hand-written templates by ``scripts/make_corpus.py`` and are
stored one per line, words and punctuation separated by spaces, in ``mlmcourse/data/corpus.txt``.
"""

from __future__ import annotations

import functools
import random
from importlib.resources import files


def load_corpus() -> list[str]:
    """Return the shipped corpus, one sentence per item (e.g. ``"the cat sat on the mat ."``)."""
    return list(_shipped_sentences())


@functools.cache
def _shipped_sentences() -> tuple[str, ...]:
    """The shipped corpus, read once per process."""
    text = files("mlmcourse").joinpath("data", "corpus.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def split_corpus(
    sentences: list[str] | None = None, test_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[str]]:
    """Split sentences into ``(train, test)``, deterministically for a given ``seed``.

    The split is by distinct sentence: every copy of a sentence lands on the same side, so no
    test sentence is ever seen in training. Both parts keep the order of ``sentences``.

    Args:
        sentences: the sentences to split; ``None`` means the shipped corpus.
        test_fraction: the share of distinct sentences held out, in ``(0, 1)``.
        seed: the seed of the shuffle that chooses the held-out sentences.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(
            f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}; "
            "e.g. 0.1 holds out a tenth of the sentences."
        )
    if sentences is None:
        sentences = load_corpus()
    distinct = list(dict.fromkeys(sentences))
    if len(distinct) < 2:
        raise ValueError(
            f"need at least 2 distinct sentences to split, got {len(distinct)}; "
            "pass more sentences."
        )
    random.Random(seed).shuffle(distinct)
    n_test = min(max(1, round(test_fraction * len(distinct))), len(distinct) - 1)
    held_out = set(distinct[:n_test])
    train = [s for s in sentences if s not in held_out]
    test = [s for s in sentences if s in held_out]
    return train, test
