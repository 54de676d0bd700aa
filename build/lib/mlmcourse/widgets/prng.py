"""The seeded masking draws of :class:`~mlmcourse.widgets.MaskingSampler`, mirrored from its
browser front end (``masking_sampler.js``) step for step, so a seed gives the same fates in
Python and in the static book.

The generator is mulberry32 (32-bit state, floats in ``[0, 1)``). Each token of ``x`` uses three
draws per resample, whatever the probabilities: ``u`` (selected into ``A(x)`` when
``u < mlm_probability``), ``v`` (``[MASK]`` when ``v < mask_prob``, else a random word when
``v < mask_prob + random_prob``, else unchanged) and ``w`` (which random word).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mlmcourse.masking import IGNORE_INDEX, Fate

_MASK32 = 0xFFFFFFFF
_SPECIAL = re.compile(r"^\[[A-Z]+\]$")


def mulberry32(seed: int) -> Iterator[float]:
    """Yield the floats in ``[0, 1)`` of mulberry32 seeded with ``seed`` (as JS ``seed >>> 0``)."""
    a = seed & _MASK32
    while True:
        a = (a + 0x6D2B79F5) & _MASK32
        t = ((a ^ (a >> 15)) * (1 | a)) & _MASK32
        t = ((t + (((t ^ (t >> 7)) * (61 | t)) & _MASK32)) & _MASK32) ^ t
        yield ((t ^ (t >> 14)) & _MASK32) / 4294967296


def is_special(token: str) -> bool:
    """``[CLS]``, ``[SEP]``, ``[MASK]``, ``[PAD]``, ``[UNK]``...: never selected into ``A(x)``."""
    return bool(_SPECIAL.match(token))


@dataclass(frozen=True)
class Resample:
    """One corruption of ``x``: the fate of every position and the draw ``w`` picking its word."""

    fates: list[Fate]
    picks: list[float]


def sample_fates(
    tokens: Sequence[str],
    mlm_probability: float,
    mask_prob: float,
    random_prob: float,
    seed: int,
    draws: int,
) -> list[Resample]:
    """The ``draws`` successive resamples of ``tokens`` from one generator seeded with ``seed``."""
    rng = mulberry32(seed)
    out = []
    for _ in range(draws):
        fates, picks = [], []
        for token in tokens:
            u, v, w = next(rng), next(rng), next(rng)
            fate = Fate.NOT_SELECTED
            if not is_special(token) and u < mlm_probability:
                if v < mask_prob:
                    fate = Fate.MASKED
                elif v < mask_prob + random_prob:
                    fate = Fate.RANDOM
                else:
                    fate = Fate.UNCHANGED
            fates.append(fate)
            picks.append(w)
        out.append(Resample(fates, picks))
    return out


def corrupt(
    tokens: Sequence[str], resample: Resample, pool: Sequence[str]
) -> tuple[list[str], list[str]]:
    """``x̄`` and the labels (the true token on ``A(x)``, ``"-100"`` elsewhere) of a resample."""
    corrupted, labels = [], []
    for token, fate, w in zip(tokens, resample.fates, resample.picks, strict=True):
        if fate == Fate.MASKED:
            corrupted.append("[MASK]")
        elif fate == Fate.RANDOM:
            corrupted.append(pool[int(w * len(pool))])
        else:
            corrupted.append(token)
        labels.append(str(IGNORE_INDEX) if fate == Fate.NOT_SELECTED else token)
    return corrupted, labels
