"""MaskingSampler: corrupt ``x`` into ``x̄`` again and again, and count the fates.

Sliders set the selection probability (about 15%) and the shares of the selected positions that
become ``[MASK]`` (80%), a random word (10%) or stay unchanged (the rest); "Resample" draws new
fates from a seeded PRNG in the browser. This class mirrors the same draws
(:mod:`mlmcourse.widgets.prng`) in ``fates``, ``corrupted``, ``labels`` and ``counts``.
"""

from __future__ import annotations

import anywidget
import traitlets

from mlmcourse.masking import Fate
from mlmcourse.widgets._assets import CSS, esm
from mlmcourse.widgets.prng import corrupt, is_special, sample_fates


class MaskingSampler(anywidget.AnyWidget):
    """Seeded masking of one sentence, resampled on demand, with running counts of the fates.

    ``fates`` holds one :class:`mlmcourse.masking.Fate` value per token (0 not selected,
    1 ``[MASK]``, 2 random word, 3 unchanged) for the latest resample; ``draws`` counts the
    resamples made so far (the counts are over all of them).
    Display it as the last expression of a cell.
    """

    _esm = esm("masking_sampler.js")
    _css = CSS

    tokens = traitlets.List(traitlets.Unicode()).tag(sync=True)
    mlm_probability = traitlets.Float(0.15).tag(sync=True)
    mask_prob = traitlets.Float(0.8).tag(sync=True)
    random_prob = traitlets.Float(0.1).tag(sync=True)
    seed = traitlets.Int(0).tag(sync=True)
    draws = traitlets.Int(1).tag(sync=True)
    replacements = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """The words a position can be replaced by when its fate is "random"."""
    fates = traitlets.List(traitlets.Int()).tag(sync=True)
    corrupted = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """``x̄`` of the latest resample (output)."""
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    """The true token on ``A(x)`` and ``"-100"`` elsewhere (output)."""
    counts = traitlets.Dict().tag(sync=True)
    """Over all resamples: eligible (non-special) tokens, selected, masked, random, unchanged."""

    def __init__(
        self,
        tokens: list[str],
        mlm_probability: float = 0.15,
        mask_prob: float = 0.8,
        random_prob: float = 0.1,
        seed: int = 0,
        **kwargs: object,
    ) -> None:
        tokens = list(tokens)
        if not any(not is_special(t) for t in tokens):
            raise ValueError("tokens has no ordinary word; give a sentence such as 'the cat sat'.")
        kwargs.setdefault("replacements", sorted({t for t in tokens if not is_special(t)}))
        super().__init__(
            tokens=tokens,
            mlm_probability=mlm_probability,
            mask_prob=mask_prob,
            random_prob=random_prob,
            seed=seed,
            **kwargs,
        )
        self._recompute()

    @traitlets.validate("mlm_probability", "mask_prob", "random_prob")
    def _valid_probability(self, proposal: dict) -> float:
        value = float(proposal["value"])
        if not 0.0 <= value <= 1.0:
            raise traitlets.TraitError(
                f"{proposal['trait'].name}={value} is not a probability; use a value in [0, 1]."
            )
        return value

    @traitlets.observe("tokens", "mlm_probability", "mask_prob", "random_prob", "seed", "draws")
    def _on_input(self, _change: dict) -> None:
        self._recompute()

    def resample(self, n: int = 1) -> None:
        """Draw ``n`` more corruptions (what the "Resample" button does)."""
        self.draws += n

    def _recompute(self) -> None:
        resamples = sample_fates(
            self.tokens,
            self.mlm_probability,
            self.mask_prob,
            self.random_prob,
            self.seed,
            max(1, self.draws),
        )
        latest = resamples[-1]
        corrupted, labels = corrupt(self.tokens, latest, self.replacements)
        eligible = sum(not is_special(t) for t in self.tokens) * len(resamples)
        tally = {fate: 0 for fate in Fate}
        for r in resamples:
            for fate in r.fates:
                tally[fate] += 1
        self.fates = [int(f) for f in latest.fates]
        self.corrupted = corrupted
        self.labels = labels
        self.counts = {
            "eligible": eligible,
            "selected": tally[Fate.MASKED] + tally[Fate.RANDOM] + tally[Fate.UNCHANGED],
            "masked": tally[Fate.MASKED],
            "random": tally[Fate.RANDOM],
            "unchanged": tally[Fate.UNCHANGED],
        }
